import SkylarkTraversal
import SkylarkWire

/// Orders the candidates for mixing a conference, best first: the first is the mixer, the rest
/// the failover order every participant holds (so when the mixer goes, everyone moves to the
/// same next one without a vote). Pure: capabilities in, ranking out.
///
/// 1. Room first: a candidate that cannot take the whole conference (CPU, uplink or its own
///    admission limit) ranks behind every one that can.
/// 2. Reachability: a public supernode, then a node with an open or full-cone mapping, then
///    port-restricted, then symmetric; UDP-blocked and unknown last. Every other participant
///    has to reach the mixer, so a public mixer saves relays and hole punching for all of them.
/// 3. At equal reachability a participant beats a node outside the conference: one stream less
///    on the network, and one party fewer who hears the conference.
/// 4. Then room (in whole conferences' worth, so near-equal machines tie), then name.
public enum MixerElection {
    /// CPU one participant costs a mixer, in cores: one Opus decode and one encode per 20 ms
    /// (≈0.5 ms of a core at complexity 5) with margin for mixing, crypto and the network.
    public static let coresPerParticipant = 0.04
    /// Uplink one participant costs a mixer: 32 kb/s of Opus plus RTP, AES-GCM tag, UDP and IP
    /// headers at 50 packets/s (≈ 54 kb/s), rounded up for relay headers.
    public static let kbpsPerParticipant = 64.0

    /// How many participants `capability` could mix.
    public static func room(of capability: OvMixerCapability) -> Int {
        let byCPU = capability.idleCores / coresPerParticipant
        let byUplink = Double(capability.upstreamKbps) / kbpsPerParticipant
        let own = capability.room == 0 ? Double.infinity : Double(capability.room)
        let room = min(byCPU, byUplink, own)
        return room.isFinite ? max(0, Int(room)) : 0
    }

    /// 3 public supernode, 2 open/full cone, 1 port-restricted, 0 symmetric, −1 unreachable.
    public static func reachability(of capability: OvMixerCapability) -> Int {
        if capability.supernode { return 3 }
        switch NATType(reported: capability.natType) {
        case .open, .fullCone: return 2
        case .restricted, .portRestricted: return 1
        case .symmetric: return 0
        case .udpBlocked, .unknown: return -1
        }
    }

    public static func rank(_ capabilities: [OvMixerCapability], participants: Set<String>, conferenceSize: Int) -> [OvMixerCandidate] {
        let size = max(conferenceSize, 1)
        struct Scored {
            var capability: OvMixerCapability
            var fits: Bool
            var reach: Int
            var participant: Bool
            var roomBucket: Int
            var room: Int
        }
        var seen = Set<String>()
        let scored = capabilities.compactMap { capability -> Scored? in
            guard !capability.name.isEmpty, seen.insert(capability.name).inserted else { return nil }
            let room = room(of: capability)
            return Scored(
                capability: capability, fits: room >= size, reach: reachability(of: capability),
                participant: participants.contains(capability.name), roomBucket: min(room / size, 4), room: room)
        }
        let ordered = scored.sorted { a, b in
            if a.fits != b.fits { return a.fits }
            if a.reach != b.reach { return a.reach > b.reach }
            if a.participant != b.participant { return a.participant }
            if a.roomBucket != b.roomBucket { return a.roomBucket > b.roomBucket }
            return a.capability.name < b.capability.name
        }
        return ordered.map { entry in
            var candidate = OvMixerCandidate()
            candidate.name = entry.capability.name
            candidate.capability = entry.capability
            candidate.reason = reason(entry.capability, room: entry.room, fits: entry.fits, participant: entry.participant)
            return candidate
        }
    }

    static func reason(_ capability: OvMixerCapability, room: Int, fits: Bool, participant: Bool) -> String {
        let reach: String
        if capability.supernode {
            reach = "public supernode"
        } else {
            switch NATType(reported: capability.natType) {
            case .open: reach = "public address"
            case .unknown: reach = "unknown reachability"
            case let nat: reach = "\(nat) NAT"
            }
        }
        let cores = (capability.idleCores * 10).rounded() / 10
        var text =
            "\(reach), \(participant ? "in the conference" : "outside the conference"), \(cores) idle cores, \(capability.upstreamKbps) kb/s up: room for \(room)"
        if !fits { text += " (too little for this conference)" }
        return text
    }
}
