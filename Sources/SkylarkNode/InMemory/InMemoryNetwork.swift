import Foundation
import Logging
import SkylarkCrypto
import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire

/// Several real node runtimes — the same `Reactor`, cores and routing that `skylark run` uses —
/// over a virtual network with a virtual clock: no sockets, no root, no waiting. Links run the
/// real `SecureLink` handshake and encryption in memory; datagrams cross simple NAT models; a
/// login service answers logins as bytes. Time moves only when the network is run, and jumps
/// from one scheduled delivery or tick to the next, so a minute of network life takes as long as
/// its work does.
///
/// One thread drives it (the caller's); nothing here is safe to touch from two at once.
public final class InMemoryNetwork: @unchecked Sendable {
    /// Answers a framed login request with the framed answer (a login server's whole job).
    public typealias LoginService = @Sendable (_ request: [UInt8], _ from: HostPort, _ now: Double) -> [UInt8]

    /// How a node reaches the network.
    public enum Reachability: Sendable, Equatable {
        /// Its own public address: anyone may dial it and send it datagrams.
        case `public`
        /// Behind a NAT with this public address; unsolicited input is dropped. `symmetric`: a
        /// new UDP mapping (port) per destination, so hole punching cannot predict it.
        case nat(publicAddress: String, symmetric: Bool)
        /// Behind a firewall that passes outgoing TCP only (no UDP at all).
        case udpBlocked(publicAddress: String)
    }

    public let profile: VerifiedProfile
    /// One-way delay of every link and datagram, in seconds.
    public var latency: Double
    /// Share of link writes that are lost once and retransmitted (TCP: they arrive one
    /// `retransmissionDelay` late, and so does everything written on that link after them).
    public var lossRate = 0.0
    public var retransmissionDelay = 0.2
    /// Link writes that were lost and retransmitted so far.
    public private(set) var retransmissions = 0
    /// Draws the losses; seeded, so a lossy run repeats.
    private var lossRandom = SplitMix64(seed: 0x105_5E5)
    /// The network's time: what the nodes' wall clocks read unless one is stepped.
    public private(set) var now: Double
    let startTime: Double
    /// Nodes that cannot reach the login server directly (they log in through a supernode).
    public var loginBlocked: Set<String> = []
    let login: LoginService
    let directory: String
    let logger: Logger

    var nodes: [InMemoryNode] = []
    private var schedule = Schedule()
    private let ids = LinkIDs()
    private var nextTick: Double

    /// `directory`: where the nodes keep their state folders (removed by `shutdown()`).
    public init(
        profile: VerifiedProfile, login: @escaping LoginService, directory: String, latency: Double = 0.01,
        startTime: Double = 1_750_000_000, logger: Logger = Logger(label: "skylark.memory") { _ in SwiftLogNoOpLogHandler() }
    ) {
        self.profile = profile
        self.login = login
        self.directory = directory
        self.latency = latency
        self.logger = logger
        now = startTime
        self.startTime = startTime
        nextTick = startTime
    }

    /// Starts a node (as `skylark run NAME` would) at `address`; it logs in and attaches as the
    /// network runs. `configure` adjusts its configuration first.
    @discardableResult
    public func start(
        _ name: String, password: String, address: String, port: Int = NodeConfiguration.defaultPort,
        reachability: Reachability = .public, supernode: PromotionPolicy.Mode,
        configure: (inout NodeConfiguration) -> Void = { _ in }
    ) throws -> InMemoryNode {
        var configuration = NodeConfiguration(
            name: name, password: password, profile: profile,
            stateDirectory: "\(directory)/\(name)", listen: [HostPort(host: address, port: port)],
            supernodeMode: supernode)
        configure(&configuration)
        let node = try InMemoryNode(configuration: configuration, reachability: reachability, network: self, ids: ids, logger: logger)
        nodes.append(node)
        node.start()
        drainAll()
        return node
    }

    public func node(_ name: String) -> InMemoryNode? { nodes.first { $0.name == name && $0.isRunning } }

    /// Runs the network for `seconds` of virtual time.
    public func run(for seconds: Double) {
        let end = now + seconds
        _ = run(until: end) { false }
    }

    /// Runs until `condition` holds (checked after every step) or `seconds` of virtual time have
    /// passed; says whether it held.
    @discardableResult
    public func run(within seconds: Double, until condition: () -> Bool) -> Bool {
        run(until: now + seconds, condition)
    }

    private func run(until end: Double, _ condition: () -> Bool) -> Bool {
        if condition() { return true }
        while true {
            let nextDelivery = schedule.nextTime ?? .infinity
            let next = min(nextDelivery, nextTick, nextMediaTick)
            guard next <= end else {
                advance(to: end)
                return condition()
            }
            advance(to: next)
            if next == nextDelivery {
                while let due = schedule.popDue(at: now) { due() }
            }
            if next >= nextTick {
                nextTick = now + 0.1
                for node in nodes where node.isRunning { node.post(.tick) }
            }
            if next >= nextMediaTick {
                for node in nodes where node.isRunning && node.transport.mediaRunning { node.post(.mediaTick) }
                nextMediaTick = now + 0.02
            }
            drainAll()
            if condition() { return true }
        }
    }

    /// When the next 20 ms media tick is due; infinity while no node has audio.
    private var nextMediaTick: Double = .infinity

    /// A node asked for the media clock: ticks every 20 ms from now while any node wants them.
    func mediaClockWanted() {
        if nextMediaTick == .infinity || nextMediaTick < now { nextMediaTick = now + 0.02 }
    }

    private func advance(to time: Double) {
        if time > now { now = time }
        if !nodes.contains(where: { $0.isRunning && $0.transport.mediaRunning }) { nextMediaTick = .infinity }
    }

    /// Every event waiting at every node, handled, until all are quiet.
    func drainAll() {
        var progressed = true
        while progressed {
            progressed = false
            for node in nodes where node.drain() { progressed = true }
        }
    }

    func after(_ delay: Double, _ action: @escaping () -> Void) { schedule.add(at: now + delay, action) }

    /// The node at a public address (its own, or its NAT's), if any.
    func node(at host: String) -> InMemoryNode? {
        // A NATed node's own (private) address is not reachable from the rest of the network.
        nodes.first { $0.isRunning && $0.publicAddress == host }
    }

    /// Stops a node gracefully (SIGTERM): it signs off and hands its clients over.
    public func stop(_ node: InMemoryNode) {
        node.post(.shutdown)
        drainAll()
        run(within: 5) { !node.isRunning }
        if node.isRunning { kill(node) }
    }

    /// Ends a node at once, as `kill -9` would: its links drop, nothing is said.
    public func kill(_ node: InMemoryNode) {
        node.die()
        drainAll()
    }

    /// Stops every node and removes the state folders.
    public func shutdown() {
        for node in nodes where node.isRunning { node.die() }
        nodes.removeAll()
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: Links

    /// Opens a link from `node` to the first endpoint that accepts it.
    func dial(from node: InMemoryNode, id: LinkID, endpoints: [HostPort], role: SecureLink.Role) {
        after(latency) { [self] in
            for endpoint in endpoints {
                guard let target = self.node(at: endpoint.host), target !== node, target.accepts(tcp: endpoint) else { continue }
                do {
                    try connect(node, id: id, to: target, endpoint: endpoint, role: role)
                    return
                } catch {
                    continue
                }
            }
            node.post(.dialFailed(id, reason: endpoints.isEmpty ? "no address to dial" : endpoints.map { "\($0): connection refused" }.joined(separator: "; ")))
        }
    }

    private func connect(_ node: InMemoryNode, id: LinkID, to target: InMemoryNode, endpoint: HostPort, role: SecureLink.Role) throws {
        // Behind a NAT the far end sees the NAT's address; the node itself its own.
        let port = node.ephemeralPort()
        let dialler = MemoryLink(
            id: id, node: node, link: try SecureLink(role: role, identity: node.transport.identity, verifier: node.verifier),
            remote: endpoint, local: HostPort(host: node.address, port: port))
        let responder = MemoryLink(
            id: ids.make(), node: target,
            link: try SecureLink(
                role: .responder(isSupernode: target.transport.isSupernode),
                identity: target.transport.identity, verifier: target.verifier),
            remote: HostPort(host: node.publicAddress, port: port), local: endpoint)
        dialler.other = responder
        responder.other = dialler
        node.transport.links[dialler.id] = dialler
        target.transport.links[responder.id] = responder
        dialler.start()
        responder.start()
    }

    /// Bytes written on a link reach the other end after the link's delay, in order: a lost write
    /// holds back the ones behind it, as TCP's retransmission does.
    func carry(_ bytes: [UInt8], from link: MemoryLink) {
        guard let other = link.other else { return }
        var arrival = now + latency
        if lossRate > 0, Double(lossRandom.next() >> 11) / Double(1 << 53) < lossRate {
            arrival += retransmissionDelay
            retransmissions += 1
        }
        arrival = max(arrival, link.lastArrival)
        link.lastArrival = arrival
        after(arrival - now) {
            guard !other.closed, other.node.isRunning else { return }
            other.receive(bytes, now: other.node.clock.now().wall)
        }
    }

    /// A network blip at `node`: every TCP link it has drops (both ends see the connection
    /// close); the node keeps running and reconnects as it would.
    public func dropLinks(of node: InMemoryNode) {
        for link in Array(node.transport.links.values) { closeLink(link, reason: .connectionClosed) }
        drainAll()
    }

    func closeLink(_ link: MemoryLink, reason: LinkCloseReason) {
        guard !link.closed else { return }
        link.closed = true
        link.node.transport.links[link.id] = nil
        link.node.post(.linkClosed(link.id, reason: reason))
        if let other = link.other, !other.closed {
            after(latency) { self.closeLink(other, reason: .connectionClosed) }
        }
    }

    // MARK: Datagrams

    /// One datagram from `node`'s UDP socket to `target`, through both sides' NATs.
    func sendDatagram(_ bytes: [UInt8], from node: InMemoryNode, socket: Int, to target: HostPort) {
        guard let source = node.outboundUDP(socket: socket, to: target) else { return }
        after(latency) { [self] in
            guard let receiver = self.node(at: target.host), let arrivingOn = receiver.inboundUDP(at: target, from: source) else { return }
            receiver.transport.received(bytes, from: source, socket: arrivingOn)
        }
    }
}

/// A node's clocks in the virtual network. The monotonic reading starts near zero, as a host's
/// does after boot, so a deadline mistakenly compared with wall time shows at once; the wall
/// reading is the network's time plus the node's own offset (a clock set wrong, then stepped).
final class VirtualClock: NodeClock, @unchecked Sendable {
    unowned let network: InMemoryNetwork
    var wallOffset: Double = 0
    init(_ network: InMemoryNetwork) { self.network = network }
    func now() -> Moment {
        Moment(monotonic: network.now - network.startTime + Self.bootedBefore, wall: network.now + wallOffset)
    }
    /// How long before the network started the node's host "booted".
    static let bootedBefore: Double = 3_600
}

/// What is due when, in order (ties in the order they were added).
private struct Schedule {
    private var heap: [(time: Double, order: UInt64, action: () -> Void)] = []
    private var added: UInt64 = 0

    var nextTime: Double? { heap.first?.time }

    mutating func add(at time: Double, _ action: @escaping () -> Void) {
        added += 1
        heap.append((time, added, action))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.before(heap[child], heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func popDue(at time: Double) -> (() -> Void)? {
        guard let first = heap.first, first.time <= time else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var smallest = parent
                if left < heap.count, Self.before(heap[left], heap[smallest]) { smallest = left }
                if right < heap.count, Self.before(heap[right], heap[smallest]) { smallest = right }
                guard smallest != parent else { break }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first.action
    }

    private static func before(_ a: (time: Double, order: UInt64, action: () -> Void), _ b: (time: Double, order: UInt64, action: () -> Void)) -> Bool {
        a.time < b.time || (a.time == b.time && a.order < b.order)
    }
}
