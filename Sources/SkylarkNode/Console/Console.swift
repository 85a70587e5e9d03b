import Foundation
import SkylarkWire

/// What `skylark run` shows. On a terminal: a screen redrawn every second (role, supernode,
/// buddies with presence, recent requests and messages). Otherwise: one line per event, for logs.
struct Console {
    let interactive: Bool
    /// Says nothing at all (nodes in the in-memory network).
    var silent = false
    private var recent: [String] = []
    private var lastRender: Double = 0

    init(interactive: Bool) {
        self.interactive = interactive
    }

    mutating func note(_ line: String) {
        guard !silent else { return }
        let stamp = Self.timeFormatter.string(from: Date())
        if interactive {
            recent.append("\(stamp)  \(line)")
            if recent.count > 12 { recent.removeFirst(recent.count - 12) }
        } else {
            FileHandle.standardOutput.write(Data("\(stamp) \(line)\n".utf8))
        }
    }

    mutating func render(_ reactor: Reactor, now: Moment) {
        guard interactive, now.monotonic - lastRender >= 1 else { return }
        lastRender = now.monotonic
        let status = reactor.statusReport(now: now)
        var lines: [String] = []
        lines.append("Skylark \(status.name)   role: \(status.role) (\(status.roleReason))")
        lines.append("supernode: \(status.supernode ?? "none")   login: \(status.loginPath)")
        lines.append("NAT: \(status.natType)\(status.publicEndpoint.map { "  public UDP \($0)" } ?? "")   presence: \(status.presence)")
        if let clients = status.attachedClients {
            lines.append("serving \(clients) client(s), \(status.dhtContacts ?? 0) DHT contact(s), \(status.storedRecords ?? 0) record(s)")
        }
        if reactor.hasActiveMedia {
            let audio = reactor.audioReport()
            lines.append(
                "audio: microphone \(audio.muted ? "MUTED" : "\(Int(audio.microphoneDBFS)) dBFS")   speaker \(Int(audio.speakerDBFS)) dBFS at \(audio.volumePercent) %"
            )
        }
        lines.append("")
        lines.append("buddies:")
        if status.buddies.isEmpty { lines.append("  (none — skylark buddy add NAME)") }
        for buddy in status.buddies {
            let state = buddy.state == "confirmed" ? buddy.presence : buddy.state == "incoming" ? "wants to be your buddy" : "request sent"
            lines.append("  \(buddy.name.padding(toLength: 20, withPad: " ", startingAt: 0)) \(state)")
        }
        lines.append("")
        lines.append("recent:")
        lines += recent.map { "  " + $0 }
        lines.append("")
        lines.append("(control from another shell: skylark status | buddy | search | msg | inbox)")
        FileHandle.standardOutput.write(Data(("\u{1B}[H\u{1B}[2J" + lines.joined(separator: "\n") + "\n").utf8))
    }

    mutating func finish() {
        if interactive { FileHandle.standardOutput.write(Data("\n".utf8)) }
    }

    private static let timeFormatter: DateFormatter = {
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm:ss"
        return formatter
    }()
}
