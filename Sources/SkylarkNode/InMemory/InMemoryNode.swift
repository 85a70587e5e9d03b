import Foundation
import Logging
import SkylarkCrypto
import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire

/// A node of the in-memory network: a real `Reactor` with its own state folder and inbox, whose
/// I/O is a `MemoryTransport`. Tests talk to it through the control protocol, as `skylark` does.
public final class InMemoryNode: @unchecked Sendable {
    public let name: String
    public let configuration: NodeConfiguration
    public let reachability: InMemoryNetwork.Reachability
    /// Its own address (behind a NAT: the private one).
    let address: String
    /// Where the rest of the network sees it come from.
    let publicAddress: String
    let inbox = NodeInbox()
    let verifier: Verifier
    let transport: MemoryTransport
    unowned let network: InMemoryNetwork
    let clock: VirtualClock
    private var reactor: Reactor!
    public private(set) var isRunning = true
    private var nextPort = 40_000
    /// Symmetric NAT: the far end each outside port was opened toward, and its socket.
    private var symmetricMappings: [Int: (target: HostPort, socket: Int)] = [:]
    private var symmetricPorts: [String: Int] = [:]
    /// Port-restricted NAT: the addresses this node has sent to, per socket (they may answer).
    private var contacted: [Int: Set<HostPort>] = [:]

    /// Each node's choices come from its own seeded stream, fixed by its name (FNV-1a).
    static func seed(for name: String) -> UInt64 {
        name.utf8.reduce(0xCBF2_9CE4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
    }

    init(configuration: NodeConfiguration, reachability: InMemoryNetwork.Reachability, network: InMemoryNetwork, ids: LinkIDs, logger: Logger) throws {
        name = configuration.name
        self.configuration = configuration
        self.reachability = reachability
        self.network = network
        clock = VirtualClock(network)
        let listen = configuration.listen.first ?? HostPort(host: "0.0.0.0", port: NodeConfiguration.defaultPort)
        address = listen.host
        switch reachability {
        case .public: publicAddress = listen.host
        case let .nat(outside, _), let .udpBlocked(outside): publicAddress = outside
        }
        let files = NodeStateFiles(directory: configuration.stateDirectory)
        try StateFiles.makePrivateDirectory(files.directory)
        let identity = try LocalIdentity(key: try files.client.loadOrCreateIdentity(), credential: nil)
        verifier = Verifier(loginKey: configuration.profile.loginKey)
        // The alternate UDP port answers "reply from another port" NAT probes, as a real node's does.
        transport = MemoryTransport(
            identity: identity, ids: ids, relayTable: RelayTable(limits: configuration.relayLimits),
            udpPorts: [listen.port, listen.port + 1])
        var logger = logger
        logger[metadataKey: "node.name"] = "\(configuration.name)"
        reactor = Reactor(
            configuration: configuration, files: files, identity: identity, verifier: verifier, io: transport,
            clock: clock, random: SplitMix64(seed: Self.seed(for: configuration.name)), listening: configuration.listen, sink: inbox, logger: logger,
            console: false)
        reactor.console.silent = true
        transport.node = self
    }

    func start() { reactor.start(now: clock.now()) }

    /// Steps this node's wall clock (as NTP or a user setting the time would); its monotonic clock
    /// runs on unchanged.
    public func stepWallClock(by seconds: Double) { clock.wallOffset += seconds }

    func post(_ event: NodeEvent) {
        guard isRunning else { return }
        inbox.yield(event)
    }

    /// Handles every event waiting; true if there were any.
    func drain() -> Bool {
        guard isRunning else { return false }
        var handled = false
        while isRunning, let event = inbox.poll() {
            handled = true
            if reactor.process(event) { die() }
        }
        return handled
    }

    /// Gone at once: every link drops (the far ends see the connection close).
    func die() {
        guard isRunning else { return }
        isRunning = false
        for link in transport.links.values { network.closeLink(link, reason: .nodeStopping) }
        transport.links.removeAll()
        transport.mediaRunning = false
    }

    // MARK: Control, as `skylark` uses it

    /// Sends a control request and runs the network until the node answers (at most 15 s of
    /// virtual time); the answer's JSON line, or nil.
    public func control(_ request: ControlRequest) -> String? {
        let answer = AnswerBox()
        post(.control(request, ControlReply { answer.value = $0 }))
        network.drainAll()
        network.run(within: 15) { answer.value != nil || !self.isRunning }
        return answer.value
    }

    /// A control request's typed result; nil when the node refused it or did not answer.
    public func result<Result: Codable & Sendable>(_ type: Result.Type, _ request: ControlRequest) -> Result? {
        guard let line = control(request),
            let answer = try? JSONDecoder().decode(ControlAnswer<Result>.self, from: Data(line.utf8)), answer.ok
        else { return nil }
        return answer.result
    }

    public func status() -> ControlResults.Status? { result(ControlResults.Status.self, ControlRequest(command: .status)) }

    // MARK: The NAT in front of it

    func ephemeralPort() -> Int {
        nextPort += 1
        return nextPort
    }

    /// Whether a TCP connection to `endpoint` reaches this node's listener.
    func accepts(tcp endpoint: HostPort) -> Bool {
        guard case .public = reachability else { return false }
        return configuration.listen.contains { $0.port == endpoint.port }
    }

    /// The source address a datagram from `socket` to `target` has outside; nil if it cannot leave.
    func outboundUDP(socket: Int, to target: HostPort) -> HostPort? {
        guard socket >= 0, socket < transport.udpPorts.count else { return nil }
        switch reachability {
        case .public:
            return HostPort(host: address, port: transport.udpPorts[socket])
        case .udpBlocked:
            return nil
        case .nat(_, symmetric: false):
            contacted[socket, default: []].insert(target)
            return HostPort(host: publicAddress, port: transport.udpPorts[socket])
        case .nat(_, symmetric: true):
            let key = "\(socket)>\(target)"
            if let port = symmetricPorts[key] { return HostPort(host: publicAddress, port: port) }
            let port = 50_000 + symmetricMappings.count
            symmetricPorts[key] = port
            symmetricMappings[port] = (target, socket)
            return HostPort(host: publicAddress, port: port)
        }
    }

    /// The socket a datagram to `target` from `source` arrives on; nil when the NAT drops it.
    func inboundUDP(at target: HostPort, from source: HostPort) -> Int? {
        switch reachability {
        case .public:
            return transport.udpPorts.firstIndex(of: target.port)
        case .udpBlocked:
            return nil
        case .nat(_, symmetric: false):
            guard let socket = transport.udpPorts.firstIndex(of: target.port), contacted[socket]?.contains(source) == true else { return nil }
            return socket
        case .nat(_, symmetric: true):
            guard let mapping = symmetricMappings[target.port], mapping.target == source else { return nil }
            return mapping.socket
        }
    }
}

private final class AnswerBox: @unchecked Sendable {
    var value: String?
}

/// `NodeTransport` over the in-memory network.
final class MemoryTransport: NodeTransport, @unchecked Sendable {
    weak var node: InMemoryNode?
    let relayTable: RelayTable
    let udpPorts: [Int]
    private let ids: LinkIDs
    private(set) var identity: LocalIdentity
    private(set) var isSupernode = false
    var mediaRunning = false
    var links: [LinkID: MemoryLink] = [:]

    init(identity: LocalIdentity, ids: LinkIDs, relayTable: RelayTable, udpPorts: [Int]) {
        self.identity = identity
        self.ids = ids
        self.relayTable = relayTable
        self.udpPorts = udpPorts
    }

    private var network: InMemoryNetwork? { node?.network }

    func makeLinkID() -> LinkID { ids.make() }

    func dial(_ id: LinkID, endpoints: [HostPort], role: SecureLink.Role, connectTimeout: Double) {
        guard let node else { return }
        node.network.dial(from: node, id: id, endpoints: endpoints, role: role)
    }

    func send(_ message: OvLinkMessage, on link: LinkID) { links[link]?.sendMessage(message) }

    func close(_ link: LinkID, reason: LinkCloseReason) {
        guard let link = links[link] else { return }
        network?.closeLink(link, reason: reason)
    }

    func authenticate(_ link: LinkID, requestID: UInt64, identity: LocalIdentity) {
        guard let link = links[link] else { return }
        guard let message = try? link.link.authenticateMessage(requestID: requestID, identity: identity) else {
            return close(link.id, reason: .cannotAuthenticate)
        }
        link.sendMessage(message)
    }

    func sendDatagram(_ bytes: [UInt8], to target: HostPort, socket: Int) {
        guard let node else { return }
        node.network.sendDatagram(bytes, from: node, socket: socket, to: target)
    }

    func relayFromLocal(_ packet: [UInt8]) { _ = forward(packet, from: .link(.local)) }

    /// What arrives at a UDP port: relay packets of circuits carried here are forwarded at once
    /// (as `DatagramPump` does); the rest goes to the reactor.
    func received(_ bytes: [UInt8], from source: HostPort, socket: Int) {
        if DatagramKind(bytes) == .relay, forward(bytes, from: .udp(source)) { return }
        node?.post(.datagram(bytes, from: source, socket: socket))
    }

    /// Routes a relay packet by the circuit table; false when it is for this node.
    func forward(_ packet: [UInt8], from source: RelayCircuits.Endpoint) -> Bool {
        guard let node, let network, let (rewritten, endpoint) = relayTable.forward(packet, from: source, now: node.clock.now().monotonic) else { return false }
        switch endpoint {
        case let .udp(target):
            network.sendDatagram(rewritten, from: node, socket: 0, to: target)
        case .link(.local):
            node.post(.localRelayPacket(rewritten))
        case let .link(id):
            var message = OvLinkMessage()
            message.relayData = OvRelayData()
            message.relayData.packet = Data(rewritten)
            links[id]?.sendMessage(message)
        }
        return true
    }

    func loginDirect(_ request: LoginClientExchange.Request, profile: VerifiedProfile, timeout: Double) {
        guard let node, let network else { return }
        guard node.network.loginReachable(from: node) else {
            network.after(timeout) {
                node.post(.directLoginFinished(.failure(.serverUnreachable(address: profile.loginEndpoint.description, reason: "connection timed out"))))
            }
            return
        }
        network.after(3 * network.latency) {
            node.post(
                .directLoginFinished(
                    network.exchange(
                        request, profile: profile, from: HostPort(host: node.publicAddress, port: node.ephemeralPort()), clientWall: node.clock.now().wall)))
        }
    }

    func forwardLogin(_ request: [UInt8], to endpoint: HostPort, link: LinkID, requestID: UInt64) {
        guard let node, let network else { return }
        let reachable = network.loginReachable(from: node)
        network.after(3 * network.latency) {
            let answer = reachable ? network.login(request, HostPort(host: node.publicAddress, port: node.ephemeralPort()), network.now) : []
            node.post(.loginRelayDone(link: link, requestID: requestID, answer: answer.isEmpty ? nil : answer))
        }
    }

    func setIdentity(_ identity: LocalIdentity) { self.identity = identity }

    func setSupernode(_ isSupernode: Bool) { self.isSupernode = isSupernode }

    func setMediaRunning(_ running: Bool) {
        if running, !mediaRunning { network?.mediaClockWanted() }
        mediaRunning = running
    }

    func firstInterfaceAddress() -> String? { node?.address }
}

/// One end of an in-memory link: the real `SecureLink` state machine, bytes carried by the network.
final class MemoryLink: LinkActionTarget {
    let id: LinkID
    unowned let node: InMemoryNode
    var link: SecureLink
    weak var other: MemoryLink?
    let remote: HostPort
    let local: HostPort
    var closed = false
    /// When the last write on this link reaches the other end (writes never overtake).
    var lastArrival: Double = 0

    init(id: LinkID, node: InMemoryNode, link: SecureLink, remote: HostPort, local: HostPort) {
        self.id = id
        self.node = node
        self.link = link
        self.remote = remote
        self.local = local
    }

    var linkID: LinkID { id }

    func write(_ bytes: [UInt8]) { node.network.carry(bytes, from: self) }

    func established(peer: PeerIdentity?, purpose: OvLinkPurpose) {
        node.post(.linkEstablished(LinkInfo(id: id, peer: peer, purpose: purpose, remote: remote, local: local)))
    }

    func sendMessage(_ message: OvLinkMessage) {
        guard !closed, link.isEstablished else { return }
        do { write(try link.seal(message)) } catch { closeAfterFlush(.cannotSeal("\(error)")) }
    }

    func forwardRelay(_ packet: [UInt8]) -> Bool { node.transport.forward(packet, from: .link(id)) }

    func report(_ event: NodeEvent) -> Bool { node.isRunning && node.inbox.yield(event) }

    func closeAfterFlush(_ reason: LinkCloseReason) { node.network.closeLink(self, reason: reason) }

    /// Bytes from the other end.
    func receive(_ bytes: [UInt8], now: Double) { perform(link.receive(bytes, now: now)) }

    func start() { perform(link.start()) }
}

extension InMemoryNetwork {
    /// Whether `node` can open a TCP connection to the login server (a firewall that passes only
    /// 80 and 443 cannot: it logs in through its supernode).
    func loginReachable(from node: InMemoryNode) -> Bool { !loginBlocked.contains(node.name) }

    /// Runs one login exchange against the login service; the request carries the client's wall
    /// time, the service judges it by the network's.
    func exchange(
        _ request: LoginClientExchange.Request, profile: VerifiedProfile, from source: HostPort, clientWall: Double
    ) -> Result<Credential, LoginFailure> {
        do {
            var exchange = try LoginClientExchange(request, serverKey: profile.loginKey, now: clientWall)
            guard let outcome = try exchange.receive(login(exchange.requestBytes, source, now)) else { return .failure(.protocolViolation("no answer")) }
            guard case let .loggedIn(credential) = outcome else { return .failure(.protocolViolation("unexpected answer")) }
            return .success(credential)
        } catch let failure as LoginFailure {
            return .failure(failure)
        } catch {
            return .failure(.protocolViolation("cannot build the request: \(error)"))
        }
    }
}
