import Foundation
import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire

/// All that the node runtime does to the world, and nothing more: the one narrow interface
/// between the reactor and I/O. `NIOTransport` implements it with sockets; an in-memory
/// network can implement it too. What comes back (links up and down, messages, datagrams,
/// finished logins) arrives as `NodeEvent`s in the runtime's inbox.
protocol NodeTransport: AnyObject, Sendable {
    /// A new link id, unique for the life of the process.
    func makeLinkID() -> LinkID
    /// Connects to the first endpoint that answers and runs the handshake as `role`;
    /// `.linkEstablished`, `.linkClosed` (the handshake failed) or `.dialFailed` follows.
    func dial(_ id: LinkID, endpoints: [HostPort], role: SecureLink.Role, connectTimeout: Double)
    /// Seals and sends one message on an established link (nothing if it is gone).
    func send(_ message: OvLinkMessage, on link: LinkID)
    func close(_ link: LinkID, reason: LinkCloseReason)
    /// Proves a new credential on an anonymous link (bound to that link's transcript).
    func authenticate(_ link: LinkID, requestID: UInt64, identity: LocalIdentity)
    /// One datagram from UDP socket `socket` (0: the main port; 1: the alternate port).
    func sendDatagram(_ bytes: [UInt8], to target: HostPort, socket: Int)
    /// A packet from this supernode's own end of a circuit it carries, routed by the circuit table.
    func relayFromLocal(_ packet: [UInt8])
    /// The circuits this node carries as a supernode; the transport forwards their packets itself.
    var relayTable: RelayTable { get }
    /// The local port of each UDP socket, in socket order.
    var udpPorts: [Int] { get }
    /// Logs in at the login server directly; `.directLoginFinished` follows.
    func loginDirect(_ request: LoginClientExchange.Request, profile: VerifiedProfile, timeout: Double)
    /// Carries a client's login request to the login server (we are its supernode);
    /// `.loginRelayDone` follows.
    func forwardLogin(_ request: [UInt8], to endpoint: HostPort, link: LinkID, requestID: UInt64)
    /// The identity new links present from now on.
    func setIdentity(_ identity: LocalIdentity)
    /// Whether inbound links are answered as a supernode.
    func setSupernode(_ isSupernode: Bool)
    /// Whether the 20 ms media clock should run (a call or conference has audio).
    func setMediaRunning(_ running: Bool)
    /// This host's first IPv4 address other than loopback (what a wildcard listener advertises
    /// before a supernode has told us how it sees us).
    func firstInterfaceAddress() -> String?
}

/// The runtime's sense of time, read once per event and passed to the cores as `now`: deadlines
/// on the monotonic reading, timestamps that leave the node on the wall one.
protocol NodeClock: Sendable {
    func now() -> Moment
}

/// The host's clocks (`CLOCK_MONOTONIC` and the time of day).
struct HostClock: NodeClock {
    func now() -> Moment { Moment.now() }
}

/// Where a control request's answer goes (one JSON line); called exactly once.
struct ControlReply: Sendable {
    private let deliver: @Sendable (String) -> Void

    init(_ deliver: @escaping @Sendable (String) -> Void) { self.deliver = deliver }

    func succeed(_ answer: String) { deliver(answer) }
}

/// A link that finished its handshake, as the reactor sees it.
struct LinkInfo: Sendable {
    var id: LinkID
    var peer: PeerIdentity?
    var purpose: OvLinkPurpose
    var remote: HostPort?
    var local: HostPort?
}

/// The node's random choices behind one concrete generator (an existential cannot be passed
/// where `some RandomNumberGenerator` is asked for): the system's in production, seeded in the
/// in-memory network.
struct NodeRandom: RandomNumberGenerator {
    private var base: any RandomNumberGenerator

    init(_ base: any RandomNumberGenerator) { self.base = base }

    mutating func next() -> UInt64 { base.next() }
}
