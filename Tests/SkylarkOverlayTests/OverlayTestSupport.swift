import Foundation
import SkylarkCrypto
import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkOverlay

// Shared fixtures for the overlay tests (users with credentials live in SkylarkTestSupport): an
// in-memory link pair that shuttles bytes between two `SecureLink`s, and small helpers on actions.

/// A fresh verifier trusting `TestKeys.login` (fresh cache each time).
func makeVerifier(clockSkew: Int64 = 300) -> Verifier {
    Verifier(loginKey: TestKeys.login.publicKey, clockSkew: clockSkew)
}

// MARK: - Actions

extension SecureLink.Action {
    var sentBytes: [UInt8]? { if case let .send(bytes) = self { return bytes }; return nil }
    var closeError: SecureLink.LinkError? { if case let .close(error) = self { return error }; return nil }
    var establishedPeer: (peer: PeerIdentity?, purpose: OvLinkPurpose)? {
        if case let .established(peer, purpose) = self { return (peer, purpose) }
        return nil
    }
    var upgradedPeer: PeerIdentity? { if case let .upgraded(peer) = self { return peer }; return nil }
    var linkMessage: OvLinkMessage? { if case let .message(message) = self { return message }; return nil }
    var dialBackNonce: [UInt8]? { if case let .dialBack(nonce) = self { return nonce }; return nil }
}

extension SecureLink.LinkError {
    var isHandshake: Bool { if case .handshake = self { return true }; return false }
    var isRefusedByPeer: Bool { if case .refusedByPeer = self { return true }; return false }
    var isWire: Bool { if case .wire = self { return true }; return false }
    var reason: String {
        switch self {
        case let .handshake(why), let .refusedByPeer(why), let .wire(why), let .protocolViolation(why): return why
        case .decryption, .dialBackComplete: return ""
        }
    }
}

// MARK: - Link pair

/// Two links joined by an in-memory wire. Every `.send` of one side is fed to the other, whole or
/// one byte at a time; every other action is recorded per side. Bytes each side put on the wire
/// are kept, frame by frame, so tests can replay or tamper with them.
struct LinkPair {
    enum Side: Sendable { case initiator, responder }

    var initiator: SecureLink
    var responder: SecureLink
    var byteAtATime: Bool
    var now: Double
    /// Non-send actions, in order, per side.
    private(set) var initiatorEvents: [SecureLink.Action] = []
    private(set) var responderEvents: [SecureLink.Action] = []
    /// Each `.send` payload, in order, per sending side.
    private(set) var initiatorWire: [[UInt8]] = []
    private(set) var responderWire: [[UInt8]] = []
    /// When false, bytes are recorded but not delivered (to capture a side's output only).
    var deliver = true

    init(initiator: SecureLink, responder: SecureLink, byteAtATime: Bool = false, now: Double = testNow) {
        self.initiator = initiator
        self.responder = responder
        self.byteAtATime = byteAtATime
        self.now = now
    }

    /// A pair with the usual verifier on both sides.
    init(
        initiator identity: LocalIdentity, purpose: OvLinkPurpose = .peer, dialBackNonce: [UInt8] = [], expectedPeer: NodeID? = nil,
        responder responderIdentity: LocalIdentity, responderIsSupernode: Bool = false,
        byteAtATime: Bool = false, now: Double = testNow,
        initiatorVerifier: Verifier = makeVerifier(), responderVerifier: Verifier = makeVerifier()
    ) throws {
        let initiator = try SecureLink(
            role: .initiator(purpose: purpose, dialBackNonce: dialBackNonce, expectedPeer: expectedPeer),
            identity: identity, verifier: initiatorVerifier)
        let responder = try SecureLink(
            role: .responder(isSupernode: responderIsSupernode), identity: responderIdentity,
            verifier: responderVerifier)
        self.init(initiator: initiator, responder: responder, byteAtATime: byteAtATime, now: now)
    }

    /// Starts both sides and runs the exchange until neither has anything more to send.
    mutating func handshake() {
        let responderActions = responder.start()
        process(responderActions, from: .responder)
        let initiatorActions = initiator.start()
        process(initiatorActions, from: .initiator)
    }

    /// Feeds raw bytes to one side (as if the other side had sent them) and runs what follows.
    mutating func inject(_ bytes: [UInt8], to side: Side) {
        let actions = feed(bytes, to: side)
        process(actions, from: side)
    }

    /// Seals `message` on `side` and delivers it to the other side.
    mutating func send(_ message: OvLinkMessage, from side: Side) throws {
        let bytes: [UInt8]
        switch side {
        case .initiator: bytes = try initiator.seal(message)
        case .responder: bytes = try responder.seal(message)
        }
        process([.send(bytes)], from: side)
    }

    func events(_ side: Side) -> [SecureLink.Action] { side == .initiator ? initiatorEvents : responderEvents }
    func wire(_ side: Side) -> [[UInt8]] { side == .initiator ? initiatorWire : responderWire }
    func closes(_ side: Side) -> [SecureLink.LinkError] { events(side).compactMap(\.closeError) }
    func messages(_ side: Side) -> [OvLinkMessage] { events(side).compactMap(\.linkMessage) }
    func established(_ side: Side) -> [(peer: PeerIdentity?, purpose: OvLinkPurpose)] { events(side).compactMap(\.establishedPeer) }
    func upgrades(_ side: Side) -> [PeerIdentity] { events(side).compactMap(\.upgradedPeer) }

    mutating func clearEvents() {
        initiatorEvents = []
        responderEvents = []
    }

    private mutating func feed(_ bytes: [UInt8], to side: Side) -> [SecureLink.Action] {
        var out: [SecureLink.Action] = []
        let chunks: [[UInt8]] = byteAtATime ? bytes.map { [$0] } : [bytes]
        for chunk in chunks {
            switch side {
            case .initiator: out += initiator.receive(chunk, now: now)
            case .responder: out += responder.receive(chunk, now: now)
            }
        }
        return out
    }

    /// Breadth-first: a side's sends are delivered to the other side, whose answers are queued.
    private mutating func process(_ actions: [SecureLink.Action], from side: Side) {
        var queue: [(Side, [SecureLink.Action])] = [(side, actions)]
        while !queue.isEmpty {
            let (from, batch) = queue.removeFirst()
            let to: Side = from == .initiator ? .responder : .initiator
            for action in batch {
                if let bytes = action.sentBytes {
                    if from == .initiator { initiatorWire.append(bytes) } else { responderWire.append(bytes) }
                    if deliver { queue.append((to, feed(bytes, to: to))) }
                } else if from == .initiator {
                    initiatorEvents.append(action)
                } else {
                    responderEvents.append(action)
                }
            }
        }
    }
}

// MARK: - Messages and records

func pingMessage(id: UInt64) -> OvLinkMessage {
    var message = OvLinkMessage()
    message.id = id
    message.ping = OvPing()
    return message
}

func searchMessage(id: UInt64, name: String) -> OvLinkMessage {
    var message = OvLinkMessage()
    message.id = id
    var search = OvSearch()
    search.name = name
    message.search = search
    return message
}

func testContact(_ id: NodeID, name: String = "sn", port: Int = 7100) -> Contact {
    Contact(nodeID: id, name: name, endpoints: [HostPort(host: "192.0.2.\(Int(id.low % 250) + 1)", port: port)], udpEndpoint: nil)
}

/// A presence record for `name`, published at `publishedAt` (seconds) and living `lifetime` seconds.
func presenceRecord(
    name: String, sequence: UInt64 = 1, publishedAt: Double = testNow, lifetime: Double = 600,
    supernode: NodeID? = nil
) -> OvPresenceRecord {
    var record = OvPresenceRecord()
    record.name = name
    record.sequence = sequence
    record.publishedAtMs = Int64(publishedAt * 1000)
    record.expiresAtMs = Int64((publishedAt + lifetime) * 1000)
    record.status = .online
    if let supernode { record.supernode = testContact(supernode).message }
    record.publicEndpoint = "198.51.100.7:40000"
    record.messageKey = Data(repeating: 7, count: 32)
    return record
}

/// Runs `body` and returns the record error it threw, or nil if it succeeded. (Untyped `throws`:
/// typed-throws closures do not survive the `#expect` macro expansion.)
func recordError<T>(_ body: () throws -> T, sourceLocation: SourceLocation = #_sourceLocation) -> RecordError? {
    do {
        _ = try body()
        return nil
    } catch let error as RecordError {
        return error
    } catch {
        Issue.record("expected a RecordError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

extension RecordError {
    var isMalformed: Bool { if case .malformed = self { return true }; return false }
}

/// Deterministic random ids and bytes for the DHT tests.
extension SplitMix64 {
    mutating func nodeID() -> NodeID {
        NodeID(high: next(), middle: next(), low: UInt32(truncatingIfNeeded: next()))
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) }
    }
}
