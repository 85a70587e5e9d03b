import Foundation
import SkylarkCrypto
import SkylarkTraversal
import SkylarkWire

/// One voice call, either side, as a sans-I/O core: signalling, the key agreement, and finding
/// and keeping a media path. Media itself (Opus, RTP, encryption) is the adapter's; this core
/// says which path to send it on.
///
/// - Signalling: `CallSignal`s sent as CALL envelopes, signed by the sender — so the fresh X25519
///   keys in the offer and the answer are authenticated, and the media keys derived from them are
///   known to the two callers only (relays forward ciphertext).
/// - Paths: every candidate the peer offers (its LAN addresses, its public UDP mapping, a relay
///   circuit) is checked at once with authenticated `PathCheck`s; the call starts on the first
///   that answers and moves to a better one when it answers (UDP beats relay; relay over UDP beats
///   relay over TCP). Both sides sending checks to each other's public mapping is what punches
///   port-restricted NATs.
/// - A relay is requested at once when either side's NAT makes UDP unlikely (symmetric,
///   UDP-blocked, unknown), otherwise when no UDP path works after `relayFallbackDelay`.
/// - The active path is checked every `keepaliveInterval` (every `keepaliveWithMedia` while the
///   peer's media arrives on it: media counts as an answer); after `deadAfter` without an answer it
///   is dropped for the next best, and if there is none the caller asks for a new relay circuit
///   avoiding the relays it used.
public struct CallSession: Sendable {
    public struct Configuration: Sendable {
        public var checkInterval: Double = 0.05
        public var checkLifetime: Double = 8
        public var keepaliveInterval: Double = 0.25
        /// While media arrives on the active path it proves the path as well as an answer does:
        /// a check then goes only this often (for the RTT), so a narrow link is not spent on
        /// keepalives (eight datagrams a second each way, 7 kb/s of a 24 kb/s link).
        public var keepaliveWithMedia: Double = 1
        public var deadAfter: Double = 1
        public var relayFallbackDelay: Double = 1.5
        public var ringTimeout: Double = 45
        public var connectTimeout: Double = 15
        /// End the call when its path dies and no other works, instead of asking for a new relay
        /// circuit: a conference leg moves to the next mixer faster than a circuit is rebuilt.
        public var endWhenPathLost = false
        public init() {}

        /// A conference leg: lost within 0.6 s (keepalives every 0.1 s), quick to set up,
        /// ended on path loss so the conference can move to the next mixer within 2 s.
        public static var conferenceLeg: Configuration {
            var configuration = Configuration()
            configuration.keepaliveInterval = 0.1
            // Legs keep checking ten times a second whatever the media does: the mixer's
            // failover (dead after 0.6 s) was timed so, and a conference is not a narrow link.
            configuration.keepaliveWithMedia = 0.1
            configuration.deadAfter = 0.6
            configuration.relayFallbackDelay = 0.5
            configuration.ringTimeout = 5
            configuration.connectTimeout = 5
            configuration.endWhenPathLost = true
            return configuration
        }
    }

    public enum Role: String, Sendable, Codable { case caller, callee }

    public enum PathKind: String, Sendable, Codable { case direct, punched, relayed }

    public struct Path: Sendable, Equatable {
        public var kind: PathKind
        /// Where and how to send.
        public var route: MediaRoute
        public var relays: [String]
        public var rtt: Double?

        public var endpoint: HostPort { route.endpoint }
        public var circuit: [UInt8]? { route.circuit }
        /// Relayed over our TCP link to our supernode (UDP blocked).
        public var overTCP: Bool { route.overTCP }
    }

    public enum Phase: Equatable, Sendable {
        case calling
        case ringing
        case connecting
        case active
        case ended(OvCallEndReason, String)
    }

    public enum Action: Sendable {
        /// Send to the peer as a CALL envelope.
        case signal(OvCallSignal)
        /// Send a path check: straight to `to` over UDP, or wrapped in a relay packet for `circuit`
        /// (to our supernode's UDP port, or over our TCP link when `overTCP`).
        case sendCheck(OvPathCheck, via: MediaRoute)
        /// Ask our supernode for a relay circuit toward the peer, avoiding these relays.
        case requestRelay(avoid: [String])
        /// Media should go this way from now on (nil: no path).
        case pathChanged(Path?)
        case ended(OvCallEndReason, String)
    }

    private struct Pair: Sendable {
        var route: MediaRoute
        var kind: PathKind
        var relays: [String]
        var createdAt: Double
        var nextCheck: Double
        var pending: [UInt64: Double] = [:]
        var succeeded = false
        var failed = false
        var lastAnswer: Double?
        var lastMedia: Double?
        var lastCheckSent: Double?
        var rtt: Double?

        var endpoint: HostPort { route.endpoint }
        var circuit: [UInt8]? { route.circuit }

        var priority: Int {
            switch (kind, route.overTCP) {
            case (.direct, _), (.punched, _): return 3
            case (.relayed, false): return 2
            case (.relayed, true): return 1
            }
        }

        func sameRoute(as other: Pair) -> Bool { route.sameWay(as: other.route) }
    }

    /// What both sides agreed on once the offer was answered.
    private struct Keys {
        /// The call's secret (media keys are derived from it).
        var sharedSecret: [UInt8]
        /// Authenticates path checks.
        var checkKey: [UInt8]
        var peerSSRC: UInt32
    }

    /// Each phase with the data only it has.
    private enum State {
        /// We offered; the answer is due by `deadline` (the ring timeout).
        case calling(deadline: Double)
        /// An offer rings here until the user answers or `deadline` passes.
        case ringing(peerEphemeral: [UInt8], peerSSRC: UInt32, deadline: Double)
        /// Keys agreed; a path must work by `deadline` (the connect timeout).
        case connecting(Keys, deadline: Double)
        /// A path worked; `path` is nil while a lost one is being replaced.
        case active(Keys, path: Path?, connectedAt: Double)
        case ended(OvCallEndReason, String)
    }

    public let configuration: Configuration
    public let callID: [UInt8]
    public let role: Role
    public let peer: String
    public let ssrc: UInt32
    public private(set) var startedAt: Double
    private var state: State
    private let ephemeral: X25519.PrivateKey
    private let ephemeralPublic: [UInt8]
    private var ownCandidates: [OvMediaCandidate]
    private let ownNAT: NATType
    private var peerNAT: NATType
    private var peerCandidates: [OvMediaCandidate] = []
    private var ownRelay: OvMediaCandidate?
    private var usedRelays: [String] = []
    private var relayRequested = false
    private var pairs: [Pair] = []
    private var actions: [Action] = []
    private var nextTransaction: UInt64 = 1
    /// Until a relay path works, UDP pairs are held back (see `relayFirst`).
    private var relayFirst = false

    /// Starts a call to `peer`. `peerNAT` is the type in the peer's presence, if known.
    /// `relayFirst`: start on a relay circuit and only then look for a UDP path (and move to it)
    /// — a diagnostic that exercises switching paths mid-call.
    public init(
        calling peer: String, callID: [UInt8] = SecureRandom.bytes(16), candidates: [OvMediaCandidate], natType: NATType,
        peerNAT: NATType, ssrc: UInt32, relayFirst: Bool = false, configuration: Configuration = .init(), now: Double
    ) throws {
        self.configuration = configuration
        self.callID = callID
        self.role = .caller
        self.peer = peer
        self.ssrc = ssrc
        self.state = .calling(deadline: now + configuration.ringTimeout)
        self.startedAt = now
        self.ephemeral = try X25519.PrivateKey()
        self.ephemeralPublic = try ephemeral.publicKey()
        self.ownCandidates = candidates
        self.ownNAT = natType
        self.peerNAT = peerNAT
        var offer = OvCallOffer()
        offer.ephemeralKey = Data(ephemeralPublic)
        offer.candidates = candidates
        offer.natType = natType.rawValue
        offer.ssrc = ssrc
        self.relayFirst = relayFirst
        var signal = OvCallSignal()
        signal.callID = Data(callID)
        signal.offer = offer
        actions.append(.signal(signal))
        if relayFirst || Self.needsRelay(natType) || Self.needsRelay(peerNAT) { requestRelay() }
    }

    /// An incoming call: rings until `answer`, `decline` or the ring timeout.
    public init(
        offer: OvCallOffer, callID: [UInt8], from peer: String, candidates: [OvMediaCandidate], natType: NATType,
        ssrc: UInt32, configuration: Configuration = .init(), now: Double
    ) throws {
        self.configuration = configuration
        self.callID = callID
        self.role = .callee
        self.peer = peer
        self.ssrc = ssrc
        self.state = .ringing(peerEphemeral: Array(offer.ephemeralKey), peerSSRC: offer.ssrc, deadline: now + configuration.ringTimeout)
        self.startedAt = now
        self.ephemeral = try X25519.PrivateKey()
        self.ephemeralPublic = try ephemeral.publicKey()
        self.ownCandidates = candidates
        self.ownNAT = natType
        self.peerNAT = NATType(reported: offer.natType)
        addPeerCandidates(offer.candidates, now: now)
    }

    public mutating func poll() -> Action? {
        actions.isEmpty ? nil : actions.removeFirst()
    }

    public var phase: Phase {
        switch state {
        case .calling: return .calling
        case .ringing: return .ringing
        case .connecting: return .connecting
        case .active: return .active
        case let .ended(reason, detail): return .ended(reason, detail)
        }
    }

    /// Where media goes now (only while active).
    public var path: Path? {
        if case let .active(_, path, _) = state { return path }
        return nil
    }

    /// The call's secret, once both sides agreed on it.
    public var sharedSecret: [UInt8]? { keys?.sharedSecret }

    /// The peer's RTP SSRC, once its offer or answer said.
    public var peerSSRC: UInt32? {
        switch state {
        case let .ringing(_, peerSSRC, _): return peerSSRC
        case let .connecting(keys, _), let .active(keys, _, _): return keys.peerSSRC
        case .calling, .ended: return nil
        }
    }

    public var connectedAt: Double? {
        if case let .active(_, _, connectedAt) = state { return connectedAt }
        return nil
    }

    public var isEnded: Bool {
        if case .ended = state { return true }
        return false
    }

    private var keys: Keys? {
        switch state {
        case let .connecting(keys, _), let .active(keys, _, _): return keys
        case .calling, .ringing, .ended: return nil
        }
    }

    /// The deadline of the phase (ring or connect timeout); none once active.
    private var phaseDeadline: Double {
        switch state {
        case let .calling(deadline), let .ringing(_, _, deadline), let .connecting(_, deadline): return deadline
        case .active, .ended: return .infinity
        }
    }

    private mutating func setPath(_ newPath: Path?) {
        if case let .active(keys, _, connectedAt) = state { state = .active(keys, path: newPath, connectedAt: connectedAt) }
    }

    public var nextDeadline: Double? {
        guard !isEnded else { return nil }
        var deadline = phaseDeadline
        for pair in pairs where !pair.failed { deadline = min(deadline, pair.nextCheck) }
        if phase == .active || phase == .connecting, let path, let pair = pairs.first(where: { $0.endpoint == path.endpoint && $0.circuit == path.circuit }),
            let last = pair.lastAnswer
        {
            deadline = min(deadline, last + configuration.deadAfter)
        }
        return deadline
    }

    // MARK: - User actions

    public mutating func answer(now: Double) {
        guard case let .ringing(peerEphemeral, peerSSRC, _) = state else { return }
        let keys: Keys
        do {
            keys = try agree(peerEphemeral: peerEphemeral, peerSSRC: peerSSRC)
        } catch {
            return end(.failed, "key agreement failed", notify: true)
        }
        var answer = OvCallAnswer()
        answer.ephemeralKey = Data(ephemeralPublic)
        answer.candidates = ownCandidates
        answer.natType = ownNAT.rawValue
        answer.ssrc = ssrc
        var signal = OvCallSignal()
        signal.callID = Data(callID)
        signal.answer = answer
        actions.append(.signal(signal))
        state = .connecting(keys, deadline: now + configuration.connectTimeout)
        schedulePairs(now: now)
    }

    public mutating func decline() {
        guard phase == .ringing else { return }
        end(.declined, "declined", notify: true)
    }

    public mutating func hangUp() {
        guard !isEnded else { return }
        end(phase == .calling ? .noAnswer : .hangup, "hung up", notify: true)
    }

    // MARK: - Inputs

    public mutating func handleSignal(_ signal: OvCallSignal, now: Double) {
        guard Array(signal.callID) == callID, !isEnded else { return }
        switch signal.body {
        case let .answer(answer)?:
            guard role == .caller, phase == .calling else { return }
            let keys: Keys
            do {
                keys = try agree(peerEphemeral: Array(answer.ephemeralKey), peerSSRC: answer.ssrc)
            } catch {
                return end(.failed, "key agreement failed", notify: true)
            }
            peerNAT = NATType(reported: answer.natType)
            state = .connecting(keys, deadline: now + configuration.connectTimeout)
            addPeerCandidates(answer.candidates, now: now)
            if let ownRelay { sendCandidates([ownRelay]) }
            schedulePairs(now: now)
            if !relayRequested && ownRelay == nil && (Self.needsRelay(ownNAT) || Self.needsRelay(peerNAT)) { requestRelay() }
        case let .candidates(candidates)?:
            addPeerCandidates(candidates.candidates, now: now)
        case let .end(end)?:
            self.end(end.reason, end.detail.isEmpty ? "ended by \(peer)" : end.detail, notify: false)
        case .offer?, nil:
            return
        }
    }

    /// A path check (or its answer) that arrived by `route` — over UDP from its endpoint, or out
    /// of a relay circuit.
    public mutating func handleCheck(_ check: OvPathCheck, arrivedVia route: MediaRoute, now: Double) {
        let source = route.endpoint
        guard Array(check.callID) == callID, let checkKey = keys?.checkKey, constantTimeEquals(Self.tag(check, key: checkKey), Array(check.tag)) else { return }
        if check.response {
            guard let index = pairs.firstIndex(where: { $0.pending[check.transaction] != nil }) else { return }
            let sentAt = pairs[index].pending.removeValue(forKey: check.transaction)!
            let rtt = now - sentAt
            pairs[index].rtt = pairs[index].rtt.map { 0.8 * $0 + 0.2 * rtt } ?? rtt
            pairs[index].lastAnswer = now
            pairs[index].failed = false
            if !pairs[index].succeeded {
                pairs[index].succeeded = true
                pairs[index].nextCheck = now + configuration.keepaliveInterval
            }
            choosePath(now: now)
        } else {
            // Answer on the way it came. A check arriving from an address we did not know (the
            // peer's mapping toward us, behind its NAT) becomes a candidate of its own.
            var answer = OvPathCheck()
            answer.callID = check.callID
            answer.transaction = check.transaction
            answer.response = true
            answer.seenFrom = source.description
            answer.tag = Data(Self.tag(answer, key: checkKey))
            actions.append(.sendCheck(answer, via: route))
            if !route.isRelayed, !pairs.contains(where: { $0.circuit == nil && $0.endpoint == source }) {
                pairs.append(Pair(route: .udp(source), kind: udpKind(), relays: [], createdAt: now, nextCheck: now))
            }
        }
    }

    /// Our supernode set up a circuit toward the peer's supernode.
    public mutating func relayGranted(_ granted: OvRelayGranted, ownEnd: HostPort, overTCP: Bool, now: Double) {
        guard !isEnded, let far = HostPort(granted.farEndpoint) else { return }
        relayRequested = false
        usedRelays = granted.relays
        // We send into our end; the peer sends into the far end.
        pairs.append(
            Pair(
                route: MediaRoute(endpoint: ownEnd, circuit: Array(granted.legID), overTCP: overTCP), kind: .relayed, relays: granted.relays,
                createdAt: now, nextCheck: now))
        var candidate = OvMediaCandidate()
        candidate.kind = .relay
        candidate.endpoint = far.description
        candidate.circuitID = granted.farLegID
        candidate.relays = granted.relays
        ownRelay = candidate
        if phase != .calling { sendCandidates([candidate]) }
        schedulePairs(now: now)
    }

    public mutating func relayRefused(_ reason: String, now: Double) {
        relayRequested = false
        if path == nil && pairs.allSatisfy({ !$0.succeeded }) && phase == .connecting && pairs.allSatisfy(\.failed) {
            end(.failed, "no path: \(reason)", notify: true)
        }
    }

    /// Media arrived on the current path: as good as a check answer for keeping it alive.
    public mutating func mediaArrived(now: Double) {
        guard let path, let index = pairs.firstIndex(where: { $0.endpoint == path.endpoint && $0.circuit == path.circuit }) else { return }
        pairs[index].lastAnswer = now
        pairs[index].lastMedia = now
    }

    public mutating func handleTimeout(now: Double) {
        guard !isEnded else { return }
        switch phase {
        case .calling, .ringing:
            if now >= phaseDeadline { return end(.noAnswer, "no answer", notify: true) }
        case .connecting:
            if now >= phaseDeadline { return end(.failed, "no media path could be found", notify: true) }
        default:
            break
        }
        guard phase == .connecting || phase == .active else { return }
        for index in pairs.indices where !pairs[index].failed {
            // A working path that stopped answering is dead.
            if pairs[index].succeeded, let last = pairs[index].lastAnswer, now - last >= configuration.deadAfter {
                pairs[index].failed = true
                pairs[index].succeeded = false
                continue
            }
            if heldBack(index) { continue }
            if !pairs[index].succeeded, now - pairs[index].createdAt >= configuration.checkLifetime {
                pairs[index].failed = true
                continue
            }
            if now >= pairs[index].nextCheck {
                if let media = pairs[index].lastMedia, now - media < configuration.keepaliveInterval, let sent = pairs[index].lastCheckSent,
                    now - sent < configuration.keepaliveWithMedia
                {
                    pairs[index].nextCheck = now + configuration.keepaliveInterval
                } else {
                    sendCheck(index, now: now)
                }
            }
        }
        choosePath(now: now)
        if role == .caller, !relayRequested, ownRelay == nil, path == nil, now - startedAt >= configuration.relayFallbackDelay, phase == .connecting {
            requestRelay()
        }
    }

    // MARK: - Internals

    private func agree(peerEphemeral: [UInt8], peerSSRC: UInt32) throws -> Keys {
        let shared = try ephemeral.sharedSecret(with: peerEphemeral)
        let (callerKey, calleeKey) = role == .caller ? (ephemeralPublic, peerEphemeral) : (peerEphemeral, ephemeralPublic)
        let material = try HKDF.sha256(
            inputKeyMaterial: shared, salt: callID, info: Array("skylark-call-v1".utf8) + callerKey + calleeKey,
            outputByteCount: 64)
        return Keys(sharedSecret: Array(material[0..<32]), checkKey: Array(material[32..<64]), peerSSRC: peerSSRC)
    }

    private mutating func addPeerCandidates(_ candidates: [OvMediaCandidate], now: Double) {
        for candidate in candidates.prefix(16) {
            guard let endpoint = HostPort(candidate.endpoint) else { continue }
            peerCandidates.append(candidate)
            switch candidate.kind {
            case .host, .reflexive:
                // Nothing to send over UDP when ours is blocked.
                guard !Self.udpBlocked(ownNAT) else { continue }
                guard !pairs.contains(where: { $0.circuit == nil && $0.endpoint == endpoint }) else { continue }
                pairs.append(Pair(route: .udp(endpoint), kind: udpKind(), relays: [], createdAt: now, nextCheck: now))
            case .relay:
                // The peer's relay ends at our supernode side: we send into it there.
                let circuit = Array(candidate.circuitID)
                guard circuit.count == 16, !pairs.contains(where: { $0.circuit == circuit }) else { continue }
                pairs.append(
                    Pair(
                        route: MediaRoute(endpoint: endpoint, circuit: circuit, overTCP: Self.relayOverTCP(ownNAT)), kind: .relayed,
                        relays: candidate.relays, createdAt: now, nextCheck: now))
            case .UNRECOGNIZED:
                continue
            }
        }
    }

    private mutating func schedulePairs(now: Double) {
        guard phase == .connecting || phase == .active else { return }
        for index in pairs.indices where !pairs[index].failed && pairs[index].nextCheck <= now && !heldBack(index) { sendCheck(index, now: now) }
    }

    /// A UDP pair waiting for the relay (relay-first calls), with its lifetime not yet running.
    private mutating func heldBack(_ index: Int) -> Bool {
        guard relayFirst, pairs[index].circuit == nil else { return false }
        if pairs.contains(where: { $0.circuit != nil && $0.succeeded }) {
            relayFirst = false
            for other in pairs.indices where pairs[other].circuit == nil { pairs[other].createdAt = pairs[other].nextCheck }
            return false
        }
        return true
    }

    private mutating func sendCheck(_ index: Int, now: Double) {
        guard let checkKey = keys?.checkKey else { return }
        var check = OvPathCheck()
        check.callID = Data(callID)
        check.transaction = nextTransaction
        nextTransaction += 1
        check.tag = Data(Self.tag(check, key: checkKey))
        pairs[index].pending[check.transaction] = now
        pairs[index].lastCheckSent = now
        if pairs[index].pending.count > 64 { pairs[index].pending.removeAll() }
        pairs[index].nextCheck = now + (pairs[index].succeeded ? configuration.keepaliveInterval : configuration.checkInterval)
        actions.append(.sendCheck(check, via: pairs[index].route))
    }

    private mutating func choosePath(now: Double) {
        let best = pairs.filter { $0.succeeded && !$0.failed }.max { a, b in
            a.priority != b.priority ? a.priority < b.priority : (a.rtt ?? .infinity) > (b.rtt ?? .infinity)
        }
        let newPath = best.map { Path(kind: $0.kind, route: $0.route, relays: $0.relays, rtt: $0.rtt) }
        guard newPath?.endpoint != path?.endpoint || newPath?.circuit != path?.circuit else {
            if let newPath, var current = path {
                current.rtt = newPath.rtt
                setPath(current)
            }
            return
        }
        // Only move to a path that is better, or away from one that died.
        if let current = path, let candidate = best, let currentPair = pairs.first(where: { $0.endpoint == current.endpoint && $0.circuit == current.circuit }),
            currentPair.succeeded && !currentPair.failed && candidate.priority <= currentPair.priority
        {
            return
        }
        if case let .connecting(keys, _) = state, let newPath {
            state = .active(keys, path: newPath, connectedAt: now)
        } else {
            setPath(newPath)
        }
        if newPath == nil, phase == .active, configuration.endWhenPathLost {
            actions.append(.pathChanged(nil))
            return end(.failed, "the media path was lost", notify: true)
        } else if newPath == nil, phase == .active, role == .caller, !relayRequested {
            // The path died and nothing else works: a new circuit around the relays we used.
            ownRelay = nil
            pairs.removeAll { $0.kind == .relayed && $0.failed }
            requestRelay()
        }
        actions.append(.pathChanged(newPath))
    }

    private mutating func requestRelay() {
        relayRequested = true
        // Never our own supernode or the peer's (they are the circuit's ends), only the middle ones.
        let avoid = usedRelays.count > 2 ? Array(usedRelays.dropFirst().dropLast()) : []
        actions.append(.requestRelay(avoid: avoid))
    }

    private mutating func sendCandidates(_ candidates: [OvMediaCandidate]) {
        var signal = OvCallSignal()
        signal.callID = Data(callID)
        signal.candidates = OvCallCandidates()
        signal.candidates.candidates = candidates
        actions.append(.signal(signal))
    }

    private mutating func end(_ reason: OvCallEndReason, _ detail: String, notify: Bool) {
        guard !isEnded else { return }
        let hadPath = path != nil
        state = .ended(reason, detail)
        if notify {
            var signal = OvCallSignal()
            signal.callID = Data(callID)
            signal.end = OvCallEnd()
            signal.end.reason = reason
            signal.end.detail = detail
            actions.append(.signal(signal))
        }
        if hadPath { actions.append(.pathChanged(nil)) }
        actions.append(.ended(reason, detail))
    }

    /// Direct when either side is publicly reachable; otherwise the NATs had to be punched.
    private func udpKind() -> PathKind {
        let reachable: Set<NATType> = [.open, .fullCone]
        return reachable.contains(ownNAT) || reachable.contains(peerNAT) ? .direct : .punched
    }

    static func needsRelay(_ nat: NATType) -> Bool { nat == .symmetric || nat == .udpBlocked || nat == .unknown }

    static func udpBlocked(_ nat: NATType) -> Bool { nat == .udpBlocked }

    /// Relay packets go over the TCP link unless UDP is known to work (a client's own supernode
    /// link carries them either way).
    static func relayOverTCP(_ nat: NATType) -> Bool { nat == .udpBlocked || nat == .unknown }

    /// HMAC-SHA256 over the check's fields, truncated to 16 bytes.
    static func tag(_ check: OvPathCheck, key: [UInt8]) -> [UInt8] {
        var bytes = Array("skylark-path-check-v1".utf8) + Array(check.callID)
        bytes += (0..<8).map { UInt8(truncatingIfNeeded: check.transaction >> UInt64(56 - 8 * $0)) }
        bytes.append(check.response ? 1 : 0)
        bytes += Array(check.seenFrom.utf8)
        return Array(HMAC.sha256(key: key, message: bytes).prefix(16))
    }
}
