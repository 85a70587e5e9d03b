import Foundation
import SkylarkNode
import SkylarkOverlay

/// The lines the control commands print for the node's answers (returned, not printed, so tests can read them).
public enum ControlReport {
    public static func status(_ status: ControlResults.Status) -> [String] {
        var lines = [
            "name:        \(status.name)  (node id \(status.nodeID.prefix(16)))",
            "role:        \(status.role) — \(status.roleReason)",
            "supernode:   \(status.supernode ?? "-")",
            "login:       \(status.loginPath)",
            "NAT type:    \(status.natType)\(status.publicEndpoint.map { ", public UDP \($0)" } ?? "")",
            "presence:    \(status.presence)",
            "listening:   \(status.listen.joined(separator: ", ")); advertised \(status.advertised.joined(separator: ", "))",
        ]
        if let clients = status.attachedClients {
            lines.append("serving:     \(clients) client(s), \(status.dhtContacts ?? 0) DHT contact(s), \(status.storedRecords ?? 0) record(s)")
        }
        lines.append("host cache:  \(status.hostCacheEntries) supernode(s), last refreshed over \(status.hostCacheRefresh)")
        return lines + buddies(status.buddies)
    }

    public static func buddies(_ buddies: [ControlResults.BuddyEntry]) -> [String] {
        if buddies.isEmpty { return ["buddies:     none"] }
        return ["buddies:"]
            + buddies.map { buddy in
                let name = buddy.name.padding(toLength: 20, withPad: " ", startingAt: 0)
                switch buddy.state {
                case "confirmed": return "  \(name) \(buddy.presence)\(buddy.supernode.map { " (via \($0))" } ?? "")"
                case "incoming": return "  \(name) wants to be your buddy — skylark buddy accept \(buddy.name)"
                default: return "  \(name) request sent, waiting for consent"
                }
            }
    }

    public static func done(_ done: ControlResults.Done) -> [String] { [done.done] }

    public static func audio(_ audio: ControlResults.Audio) -> [String] {
        ["microphone \(audio.muted ? "muted" : "on"), speaker volume \(audio.volumePercent) %"]
    }

    public static func search(_ result: ControlResults.Search) -> [String] {
        guard result.found else { return ["\(result.name): not found (offline or no such user)"] }
        var line = "\(result.name): \(result.status) via supernode \(result.supernode ?? "?")"
        if let nat = result.natType, nat != .unknown { line += ", NAT \(nat)" }
        if let endpoint = result.publicEndpoint, !endpoint.isEmpty { line += ", public UDP \(endpoint)" }
        line += " (\(result.hops) DHT hop(s))"
        return [line]
    }

    public static func message(_ result: ControlResults.Message) -> [String] {
        switch result.state {
        case "delivered": return ["delivered to \(result.to)"]
        case "stored": return ["\(result.to) is offline: stored on \(result.replicas ?? 0) supernode(s), delivered at their next login"]
        default: return ["queued: will be sent as soon as a supernode accepts it"]
        }
    }

    public static func inbox(_ result: ControlResults.Inbox) -> [String] {
        let formatter = ISO8601DateFormatter()
        var lines = result.messages.isEmpty ? ["no messages"] : []
        for message in result.messages {
            lines.append("\(formatter.string(from: Date(timeIntervalSince1970: message.sentAt)))  \(message.from): \(message.text)")
        }
        if !result.outbox.isEmpty { lines.append("sent:") }
        for message in result.outbox {
            var state = message.state
            if let replicas = message.replicas { state += " on \(replicas) supernode(s)" }
            if message.receipt == true { state += ", receipt" }
            lines.append("  to \(message.to): \(state)")
        }
        return lines
    }

    public static func calls(_ calls: [ControlResults.Call]) -> [String] {
        calls.isEmpty ? ["no calls"] : calls.flatMap(call)
    }

    public static func call(_ call: ControlResults.Call) -> [String] {
        var lines = ["call \(call.id.prefix(8)) \(call.direction) \(call.peer): \(call.state)\(call.ended.map { " (\($0))" } ?? "")"]
        if let detail = call.pathDetail { lines.append("  path: \(detail)") }
        if call.state == "active" || call.packetsReceived != nil {
            lines.append(
                "  rtt \(number(call.rttMilliseconds, " ms"))  loss \(number(call.lossPercent, " %"))  jitter \(number(call.jitterMilliseconds, " ms"))  bitrate \(number(call.bitrateKbps, " kb/s"))  setup \(number(call.setupMilliseconds, " ms"))"
            )
        }
        if let encoding = call.encoding, call.state != "ended" {
            lines.append(
                "  opus \(number(encoding.opusKbps, " kb/s")) in \(encoding.packetMilliseconds) ms packets, FEC for \(encoding.fecLossPercent) % loss: \(encoding.reason)"
            )
        }
        return lines
    }

    public static func callOrConference(_ result: CallOrConference) -> [String] {
        switch result {
        case let .call(call): return self.call(call)
        case let .conference(conference): return self.conference(conference)
        }
    }

    public static func conferences(_ conferences: [ControlResults.Conference]) -> [String] {
        conferences.isEmpty ? ["no conferences"] : conferences.flatMap(conference)
    }

    public static func conference(_ conference: ControlResults.Conference) -> [String] {
        let ended = conference.ended.map { " (\($0))" } ?? ""
        let role = conference.participating ? "" : ", mixing for others"
        var lines = ["conference \(conference.id.prefix(8)) of \(conference.initiator): \(conference.state)\(ended)\(role)"]
        if let mixer = conference.mixer {
            lines.append("  mixer: \(mixer)\(conference.weMix ? " (this node)" : "") — \(conference.mixerReason ?? "-")")
        }
        if !conference.members.isEmpty { lines.append("  members: \(conference.members.joined(separator: ", "))") }
        if !conference.invited.isEmpty { lines.append("  invited: \(conference.invited.joined(separator: ", "))") }
        if conference.mixerHistory.count > 1 { lines.append("  mixers so far: \(conference.mixerHistory.map(\.name).joined(separator: " → "))") }
        if let leg = conference.leg {
            lines.append(
                "  leg to \(leg.peer): \(leg.pathDetail ?? "connecting"); rtt \(number(leg.rttMilliseconds, " ms"))  loss \(number(leg.lossPercent, " %"))  jitter \(number(leg.jitterMilliseconds, " ms"))"
            )
        }
        for leg in conference.legs {
            lines.append("  leg from \(leg.participant): \(leg.path ?? "connecting"); \(leg.packetsReceived) packets in, \(leg.packetsSent) out")
        }
        if let mixing = conference.mixing {
            lines.append("  mixing: \(mixing.ticks) ticks, \(mixing.decodes) decodes, \(mixing.encodes) encodes (\(mixing.sharedEncodes) shared by listeners)")
        }
        return lines
    }

    private static func number(_ value: Double?, _ unit: String) -> String {
        value.map { String(format: "%.1f%@", $0, unit) } ?? "-"
    }
}
