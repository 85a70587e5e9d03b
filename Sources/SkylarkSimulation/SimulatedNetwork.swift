import Foundation
import SkylarkCrypto
import SkylarkOverlay
import SkylarkWire

/// The overlay cores in an in-process network with a virtual clock: thousands of supernodes and
/// clients, message latency, loss (as TCP retransmission delay), NAT (clients are reachable only
/// through the link they opened to their supernode) and churn (supernodes crashing, leaving and
/// joining). Single-threaded and seeded, so a run is reproducible.
///
/// The code under test is exactly what real nodes run — `SupernodeCore` and `ClientSession`,
/// real signatures included; only the sockets are replaced by the event queue.
public final class SimulatedNetwork {
    public struct Configuration: Sendable {
        public var supernodes = 100
        public var clients = 500
        /// One-way latency between two nodes is drawn (per pair, fixed) from this range, seconds.
        public var latency: ClosedRange<Double> = 0.005...0.080
        /// Probability that a message is lost once and retransmitted (TCP: costs one more RTO).
        public var lossRate = 0.0
        public var retransmissionDelay = 0.2
        /// Time until a crashed supernode's clients notice (the kernel closing the socket).
        public var crashDetection = 0.2
        /// Time a dial to a dead supernode takes to fail.
        public var dialFailure = 0.5
        public var seed: UInt64 = 1
        public var dht = DHTCore.Configuration()
        public var session = ClientSession.Configuration()
        public var rsaBits = 2048
        public init() {}
    }

    public struct Supernode {
        public var core: SupernodeCore
        public let identity: LocalIdentity
        public let peer: PeerIdentity
        public var alive = true
        var scheduledTimer: Double?
    }

    public struct Client {
        public var session: ClientSession
        public let identity: LocalIdentity
        public let peer: PeerIdentity
        public var attachedTo: Int?
        public var online = true
        var scheduledTimer: Double?
    }

    public struct SearchRecord: Sendable {
        public var target: String
        public var found: Bool
        public var hops: Int
        public var latency: Double
    }

    enum Event {
        case supernodeTimer(Int)
        case clientTimer(Int)
        case peerMessage(to: Int, from: Int, OvLinkMessage)
        case peerUnreachable(at: Int, peer: NodeID)
        case clientToSupernode(client: Int, supernode: Int, OvLinkMessage)
        case supernodeToClient(supernode: Int, client: Int, OvLinkMessage)
        case clientLinkDown(Int)
        case clientAttach(Int)
        case custom(() -> Void)
    }

    public let configuration: Configuration
    public private(set) var now: Double = 1_800_000_000
    public private(set) var supernodes: [Supernode] = []
    public private(set) var clients: [Client] = []
    public private(set) var searches: [SearchRecord] = []
    public private(set) var messagesDelivered = 0
    private var queue = EventQueue()
    private var indexByNodeID: [NodeID: Int] = [:]
    private var clientIndexByName: [String: Int] = [:]
    private var random: SplitMix64
    private let loginKey: RSA.PrivateKey
    public let verifier: Verifier
    private var serial: UInt64 = 0
    private var pendingSearches: [Int: [UInt64: (target: String, startedAt: Double)]] = [:]

    public init(configuration: Configuration) throws {
        self.configuration = configuration
        self.random = SplitMix64(seed: configuration.seed)
        self.loginKey = try RSA.PrivateKey(bits: configuration.rsaBits)
        self.verifier = Verifier(loginKey: loginKey.publicKey, cacheCapacity: 1_000_000)
    }

    // MARK: - Building the network

    /// Creates and joins `count` supernodes one after another, each through a few random
    /// existing ones (like nodes starting from a host cache).
    public func addSupernodes(_ count: Int, spacing: Double = 0.05) throws {
        for _ in 0..<count {
            let index = try makeSupernode()
            let seeds = randomAliveSupernodes(3, excluding: index).map { supernodes[$0].core.contact }
            supernodes[index].core.join(seeds: seeds, now: now)
            drainSupernode(index)
            run(for: spacing)
        }
    }

    /// Creates `count` clients, each attaching to a random supernode and publishing its presence.
    public func addClients(_ count: Int, spacing: Double = 0.01) throws {
        for _ in 0..<count {
            let index = try makeClient()
            schedule(.clientAttach(index), after: 0)
            run(for: spacing)
        }
    }

    /// Makes every pair in `pairs` buddies (request + accept), as users would.
    public func befriend(_ pairs: [(Int, Int)]) {
        for (a, b) in pairs {
            try? clients[a].session.addBuddy(clients[b].identity.name!, text: "", now: now)
            drainClient(a)
        }
        run(for: 5)
        for (_, b) in pairs {
            for name in clients[b].session.state.buddies.values.filter({ $0.state == .incoming }).map(\.name) {
                try? clients[b].session.acceptBuddy(name, now: now)
            }
            drainClient(b)
        }
    }

    // MARK: - Running

    public func run(for duration: Double) {
        run(until: now + duration)
    }

    public func run(until end: Double) {
        while let (time, event) = queue.popIfDue(before: end) {
            now = max(now, time)
            handle(event)
        }
        now = max(now, end)
    }

    // MARK: - Actions on the network

    /// A client searches for `name`; recorded in `searches` when it answers.
    public func search(from client: Int, for name: String) {
        guard clients[client].online, let token = try? clients[client].session.search(name, now: now) else { return }
        pendingSearches[client, default: [:]][token] = (name, now)
        drainClient(client)
    }

    /// Runs a command on a client's session (at the current virtual time) and sends what it says.
    public func withSession<T>(_ client: Int, _ body: (inout ClientSession, Double) throws -> T) rethrows -> T {
        defer { drainClient(client) }
        return try body(&clients[client].session, now)
    }

    public func sendMessage(from client: Int, to name: String, text: String) throws -> String {
        let id = try clients[client].session.sendMessage(to: name, text: text, now: now)
        drainClient(client)
        return id
    }

    /// Kills a supernode without warning.
    public func crash(supernode index: Int) {
        guard supernodes[index].alive else { return }
        supernodes[index].alive = false
        for client in clients.indices where clients[client].attachedTo == index {
            schedule(.clientLinkDown(client), after: configuration.crashDetection)
        }
    }

    /// A supernode leaves gracefully: hands over its clients and its records first.
    public func leave(supernode index: Int) {
        guard supernodes[index].alive else { return }
        supernodes[index].core.depart(now: now)
        drainSupernode(index)
        crash(supernode: index)
    }

    /// A client goes offline: signs off (graceful) or just drops (its supernode notices).
    public func disconnect(client index: Int, graceful: Bool) {
        guard clients[index].online else { return }
        if graceful {
            clients[index].session.signOff(now: now)
            drainClient(index)
            run(for: 0.5)
        }
        clients[index].online = false
        if let supernode = clients[index].attachedTo, supernodes[supernode].alive {
            supernodes[supernode].core.linkClosed(clientLink(index), now: now)
            drainSupernode(supernode)
        }
        clients[index].attachedTo = nil
        clients[index].session.linkDown(now: now)
        drainClient(index)
    }

    public func reconnect(client index: Int) {
        guard !clients[index].online else { return }
        clients[index].online = true
        schedule(.clientAttach(index), after: 0)
    }

    public func aliveSupernodeCount() -> Int { supernodes.filter(\.alive).count }

    public func client(named name: String) -> Int? { clientIndexByName[name] }

    public func clearSearches() { searches = [] }

    // MARK: - Internals

    private func makeIdentity(_ name: String) throws -> LocalIdentity {
        let key = try Ed25519.PrivateKey()
        serial += 1
        let signed = try Credential.issue(name: name, userPublicKey: try key.publicKey().rawRepresentation(), issuedAt: Int64(now) - 60,
                                          lifetime: 30 * 86400, serial: serial, signer: loginKey)
        return try LocalIdentity(key: key, credential: try verifier.credential(signed, now: now))
    }

    private func makeSupernode() throws -> Int {
        let index = supernodes.count
        let identity = try makeIdentity("sn\(index)")
        let nodeID = identity.nodeID!
        let contact = Contact(nodeID: nodeID, name: identity.name!, endpoints: [HostPort(host: "sn\(index).sim", port: 7100)], udpEndpoint: nil)
        var coreConfiguration = SupernodeCore.Configuration()
        coreConfiguration.dht = configuration.dht
        let core = SupernodeCore(identity: identity, verifier: verifier, contact: contact, configuration: coreConfiguration, seed: random.next(), now: now)
        supernodes.append(Supernode(core: core, identity: identity, peer: PeerIdentity(credential: identity.credential!)))
        indexByNodeID[nodeID] = index
        return index
    }

    private func makeClient() throws -> Int {
        let index = clients.count
        let identity = try makeIdentity("user\(index)")
        let session = try ClientSession(identity: identity, verifier: verifier, messageKey: try X25519.PrivateKey(), state: SessionState(),
                                        configuration: configuration.session)
        clients.append(Client(session: session, identity: identity, peer: PeerIdentity(credential: identity.credential!)))
        clientIndexByName[identity.name!] = index
        return index
    }

    private func randomAliveSupernodes(_ count: Int, excluding: Int? = nil) -> [Int] {
        let alive = supernodes.indices.filter { supernodes[$0].alive && $0 != excluding }
        guard !alive.isEmpty else { return [] }
        return (0..<min(count, alive.count)).map { _ in alive[Int(random.next() % UInt64(alive.count))] }
    }

    private func clientLink(_ client: Int) -> LinkID { (1 << 32) + UInt64(client) }
    private func peerLink(_ supernode: Int) -> LinkID { UInt64(supernode) + 1 }

    /// Fixed per pair, so a route has a stable delay.
    private func latency(_ a: Int, _ b: Int) -> Double {
        var mix = SplitMix64(seed: UInt64(min(a, b)) << 32 | UInt64(max(a, b)) ^ configuration.seed)
        let unit = Double(mix.next() >> 11) / Double(1 << 53)
        let delay = configuration.latency.lowerBound + unit * (configuration.latency.upperBound - configuration.latency.lowerBound)
        if configuration.lossRate > 0, Double(random.next() >> 11) / Double(1 << 53) < configuration.lossRate {
            return delay + configuration.retransmissionDelay
        }
        return delay
    }

    private func schedule(_ event: Event, after delay: Double) {
        queue.push(time: now + delay, event)
    }

    private func handle(_ event: Event) {
        switch event {
        case let .supernodeTimer(index):
            guard supernodes[index].alive, let scheduled = supernodes[index].scheduledTimer, scheduled <= now else { return }
            supernodes[index].scheduledTimer = nil
            supernodes[index].core.handleTimeout(now: now)
            drainSupernode(index)
        case let .clientTimer(index):
            guard clients[index].online, let scheduled = clients[index].scheduledTimer, scheduled <= now else { return }
            clients[index].scheduledTimer = nil
            clients[index].session.handleTimeout(now: now)
            drainClient(index)
        case let .peerMessage(to, from, message):
            guard supernodes[to].alive else { return }
            messagesDelivered += 1
            supernodes[to].core.handlePeerMessage(message, link: peerLink(from), from: supernodes[from].peer, now: now)
            drainSupernode(to)
        case let .peerUnreachable(at, peer):
            guard supernodes[at].alive else { return }
            supernodes[at].core.peerUnreachable(peer, now: now)
            drainSupernode(at)
        case let .clientToSupernode(client, supernode, message):
            guard supernodes[supernode].alive, clients[client].online, clients[client].attachedTo == supernode else { return }
            messagesDelivered += 1
            supernodes[supernode].core.handleClientMessage(message, link: clientLink(client), peer: clients[client].peer,
                                                            observedEndpoint: "client\(client).sim:40000", now: now)
            drainSupernode(supernode)
        case let .supernodeToClient(supernode, client, message):
            guard clients[client].online, clients[client].attachedTo == supernode else { return }
            messagesDelivered += 1
            clients[client].session.handleMessage(message, now: now)
            drainClient(client)
            if case let .handover(handover)? = message.body, !handover.supernodes.isEmpty {
                detachClient(client)
                schedule(.clientAttach(client), after: 0.1)
            }
        case let .clientLinkDown(client):
            guard clients[client].attachedTo != nil else { return }
            detachClient(client)
            schedule(.clientAttach(client), after: 0.5)
        case let .clientAttach(client):
            guard clients[client].online, clients[client].attachedTo == nil, let supernode = randomAliveSupernodes(1).first else {
                if clients[client].online && clients[client].attachedTo == nil { schedule(.clientAttach(client), after: 1) }
                return
            }
            clients[client].attachedTo = supernode
            clients[client].session.linkUp(now: now)
            drainClient(client)
        case let .custom(body):
            body()
        }
    }

    private func detachClient(_ client: Int) {
        clients[client].attachedTo = nil
        clients[client].session.linkDown(now: now)
        drainClient(client)
    }

    private func drainSupernode(_ index: Int) {
        while let action = supernodes[index].core.poll() {
            switch action {
            case let .send(link, message):
                if link >= 1 << 32 {
                    let client = Int(link - (1 << 32))
                    schedule(.supernodeToClient(supernode: index, client: client, message), after: latency(index, 1_000_000 + client))
                } else if link != .local {
                    let peer = Int(link - 1)
                    schedule(.peerMessage(to: peer, from: index, message), after: latency(index, peer))
                }
            case let .sendToNode(contact, message):
                guard let target = indexByNodeID[contact.nodeID], supernodes[target].alive else {
                    schedule(.peerUnreachable(at: index, peer: contact.nodeID), after: configuration.dialFailure)
                    continue
                }
                schedule(.peerMessage(to: target, from: index, message), after: latency(index, target))
            case let .closeLink(link):
                if link >= 1 << 32 { schedule(.clientLinkDown(Int(link - (1 << 32))), after: 0) }
            case .relayLogin, .dialBack, .sendProbe, .log:
                continue
            }
        }
        if let deadline = supernodes[index].core.nextDeadline, supernodes[index].scheduledTimer.map({ deadline < $0 }) ?? true {
            supernodes[index].scheduledTimer = deadline
            queue.push(time: max(deadline, now), .supernodeTimer(index))
        }
    }

    private func drainClient(_ index: Int) {
        while let action = clients[index].session.poll() {
            switch action {
            case let .send(message):
                guard let supernode = clients[index].attachedTo else { continue }
                schedule(.clientToSupernode(client: index, supernode: supernode, message), after: latency(supernode, 1_000_000 + index))
            case let .event(event):
                if case let .searchFinished(token, answer) = event, let started = pendingSearches[index]?.removeValue(forKey: token) {
                    searches.append(SearchRecord(target: started.target, found: answer.found, hops: answer.hops, latency: now - started.startedAt))
                }
            case .saveState:
                continue
            }
        }
        if let deadline = clients[index].session.nextDeadline, clients[index].scheduledTimer.map({ deadline < $0 }) ?? true {
            clients[index].scheduledTimer = deadline
            queue.push(time: max(deadline, now), .clientTimer(index))
        }
    }
}

/// A binary min-heap of events by time; ties keep insertion order, so runs are deterministic.
struct EventQueue {
    private var heap: [(time: Double, sequence: UInt64, event: SimulatedNetwork.Event)] = []
    private var sequence: UInt64 = 0

    var count: Int { heap.count }

    mutating func push(time: Double, _ event: SimulatedNetwork.Event) {
        sequence += 1
        heap.append((time, sequence, event))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard less(child, parent) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func popIfDue(before end: Double) -> (Double, SimulatedNetwork.Event)? {
        guard let first = heap.first, first.time <= end else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < heap.count && less(left, smallest) { smallest = left }
                if right < heap.count && less(right, smallest) { smallest = right }
                if smallest == parent { break }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return (first.time, first.event)
    }

    private func less(_ a: Int, _ b: Int) -> Bool {
        heap[a].time < heap[b].time || (heap[a].time == heap[b].time && heap[a].sequence < heap[b].sequence)
    }
}
