import SkylarkMedia
import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire

/// A call as the node holds it: the signalling and path core, and the media once keys and a
/// path exist.
struct CallEntry {
    var session: CallSession
    var media: CallMedia?
    /// When the user dialled or the call rang, for the setup time.
    var startedAt: Double
    var answeredAt: Double?
    var firstAudioAt: Double?
    var endedAt: Double?
    var endReason: String?
    var pathHistory: [String] = []
    /// Control requests waiting for the call to be answered or to end.
    var waiters: [ControlReply] = []
    /// Set for a conference leg (signalled inside conference messages, audio via the mixer).
    var conference: ConferenceLegInfo?

    /// Placed or answered by the user (not a conference leg).
    var isUserCall: Bool { conference == nil }
}

/// Every call of the node, user calls and conference legs, by call id: which one a command
/// means, which one a media packet belongs to, and how long an ended one is kept. The decisions
/// of each call are its `CallSession`'s; the reactor carries out their actions.
struct CallTable {
    /// Ended calls are kept this long (seconds) for `skylark calls`.
    static let retention = 60.0

    private(set) var entries: [CallID: CallEntry] = [:]

    subscript(id: CallID) -> CallEntry? {
        get { entries[id] }
        set { entries[id] = newValue }
    }

    var ids: [CallID] { Array(entries.keys) }

    /// The user's calls, oldest first.
    var userCalls: [(id: CallID, entry: CallEntry)] {
        entries.filter { $0.value.isUserCall }.sorted { $0.value.startedAt < $1.value.startedAt }.map { ($0.key, $0.value) }
    }

    /// The user call in progress, if any: there is one at a time.
    var userCallInProgress: CallEntry? {
        userCalls.first { !$0.entry.session.isEnded }?.entry
    }

    /// A user call by (a prefix of) its hex id; without one, the newest call matching `filter`.
    func resolve(_ prefix: String?, where filter: (CallEntry) -> Bool) -> CallID? {
        let matching = userCalls.filter { filter($0.entry) }
        if let prefix { return matching.first { $0.id.hex.hasPrefix(prefix.lowercased()) }?.id }
        return matching.last?.id
    }

    /// The conference legs we mix for conference `id` that are still up.
    func mixedLegs(of id: ConferenceID) -> [(id: CallID, entry: CallEntry)] {
        entries.filter { $0.value.conference?.conferenceID == id && $0.value.conference?.weMix == true && !$0.value.session.isEnded }
            .sorted { $0.key.hex < $1.key.hex }.map { ($0.key, $0.value) }
    }

    /// Which call an encrypted media packet is for: by its circuit when it came out of one, else
    /// by its source or, when the peer's address moved, by whom it decrypts for. Legs we mix are
    /// matched through the conference's mixer (`mixer`).
    func owner(ofMedia packet: [UInt8], circuit: [UInt8]?, from source: HostPort, mixer: (ConferenceID) -> MixerMedia<CallID>?) -> CallID? {
        entries.first { id, entry in
            guard let path = entry.session.path else { return false }
            if let media = entry.media {
                return circuit != nil ? path.circuit == circuit : path.endpoint == source || media.accepts(packet)
            }
            guard let leg = entry.conference, leg.weMix, let mixer = mixer(leg.conferenceID), mixer.hasLeg(id) else { return false }
            return circuit != nil ? path.circuit == circuit : path.endpoint == source || mixer.leg(for: packet) == id
        }?.key
    }

    /// Whether a call has audio flowing (the 20 ms media clock should run).
    var hasActiveMedia: Bool { entries.values.contains { $0.media != nil && !$0.session.isEnded } }

    /// Forgets calls that ended longer than `retention` ago.
    mutating func removeExpired(now: Double) {
        // Runs on every media tick: nothing is copied unless something expired.
        var expired: [CallID] = []
        for (id, entry) in entries { if let ended = entry.endedAt, now - ended > Self.retention { expired.append(id) } }
        for id in expired { entries[id] = nil }
    }

    // MARK: - Reports

    func report(_ id: CallID, now: Moment) -> ControlResults.Call? {
        entries[id].map { Self.report(id, entry: $0, now: now) }
    }

    static func report(_ id: CallID, entry: CallEntry, now: Moment) -> ControlResults.Call {
        let state: String
        switch entry.session.phase {
        case .calling: state = "calling"
        case .ringing: state = "ringing"
        case .connecting: state = "connecting"
        case .active: state = "active"
        case .ended: state = "ended"
        }
        let stats = entry.media?.statistics(now: now.monotonic)
        return ControlResults.Call(
            id: id.hex, peer: entry.session.peer, direction: entry.session.role == .caller ? "outgoing" : "incoming", state: state,
            path: entry.session.path.map { $0.kind.rawValue }, relays: entry.session.path?.relays ?? [], overTCP: entry.session.path?.overTCP ?? false,
            pathDetail: entry.session.path.map(describe), pathHistory: entry.pathHistory,
            rttMilliseconds: entry.session.path?.rtt.map { ($0 * 1000).rounded() },
            lossPercent: stats?.lossPercent, jitterMilliseconds: stats?.jitterMilliseconds, bitrateKbps: stats?.bitrateKbps,
            packetsSent: stats?.packetsSent, packetsReceived: stats?.packetsReceived,
            longestGapMilliseconds: stats?.longestGapMilliseconds.map { $0.rounded() },
            playoutDriftPPM: stats?.playoutDriftPPM.map { $0.rounded() },
            setupMilliseconds: entry.firstAudioAt.map { (($0 - entry.startedAt) * 1000).rounded() },
            startedAtMs: (now.wallTime(at: entry.startedAt) * 1000).rounded(),
            firstAudioAtMs: entry.firstAudioAt.map { (now.wallTime(at: $0) * 1000).rounded() },
            ended: entry.endReason, encoding: stats.flatMap(encoding))
    }

    static func encoding(_ stats: CallMedia.Statistics) -> ControlResults.Encoding? {
        guard let setting = stats.adaptation else { return nil }
        let driver: ControlResults.Encoding.Driver
        switch setting.reason {
        case .start: driver = .start
        case .clearPath: driver = .clearPath
        case .loss: driver = .loss
        case .throughput: driver = .throughput
        case .queueing: driver = .queueing
        case .reportsMissing: driver = .reportsMissing
        }
        return ControlResults.Encoding(
            opusKbps: Double(setting.bitrate) / 1000, packetMilliseconds: setting.framesPerPacket * 20, fecLossPercent: setting.expectedLossPercent,
            driver: driver, reason: setting.reason.description, rttMilliseconds: stats.reportRTTMilliseconds.map { $0.rounded() })
    }

    static func describe(_ path: CallSession.Path) -> String {
        switch path.kind {
        case .direct, .punched: return "\(path.kind.rawValue) UDP to \(path.endpoint)"
        case .relayed: return "relayed over \(path.overTCP ? "TCP" : "UDP") via \(path.relays.joined(separator: " > "))"
        }
    }
}
