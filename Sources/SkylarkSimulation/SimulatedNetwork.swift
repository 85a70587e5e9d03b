import Foundation
import SkylarkCrypto
import SkylarkOverlay
import SkylarkWire

/// The overlay cores in an in-process network with a virtual clock: thousands of supernodes and
/// clients, message latency, loss (as TCP retransmission delay), NAT (clients are reachable only
/// through the link they opened to their supernode) and churn (supernodes crashing, leaving and
/// joining). Single-threaded and seeded, so a run is reproducible.
///
/// The code under test is the cores real nodes run — `SupernodeCore` and `ClientSession`, real
/// signatures included — routed by this simulation instead of a node runtime. It is the model for
/// scale: the overlay benchmark's 2,000 supernodes and 20,000 clients, where a real runtime per
/// node (`InMemoryLab`) costs too much — at 100 supernodes and 1,000 clients 9.4 times the wall
/// time per virtual second, 8.4 times the build time and 17 times the memory
/// (`skylark-bench memory-scale`, Docs/PERFORMANCE.md) — and tests of the supernode cores alone
/// (relay circuits). Behaviour — presence, messages, search, churn, calls — is tested
/// on the real runtimes in `InMemoryLab`.
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
        /// Give supernodes UDP endpoints (what relay circuits are built on); off for the overlay
        /// benchmarks, whose figures predate them.
        public var supernodeUDP = false
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
        var scheduledTimer: Double?
    }

    public struct SearchRecord: Sendable {
        public var target: String
        public var found: Bool
        public var hops: Int
        public var latency: Double
        /// Virtual time the search was started (lets a bench split its searches into periods).
        public var startedAt: Double
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
    /// Indices of the live supernodes, ascending (new supernodes get the highest index), so that
    /// picking a random live supernode does not scan — and copy — every supernode.
    private var aliveIndices: [Int] = []
    private var random: SplitMix64
    private var keyRandom: SplitMix64
    /// Circuit leg and message ids (their own stream, so adding them moved no other draw).
    private var identifierRandom: SplitMix64
    private let loginKey: RSA.PrivateKey
    public let verifier: Verifier
    private var serial: UInt64 = 0
    private var pendingSearches: [Int: [UInt64: (target: String, startedAt: Double)]] = [:]
    /// Answers to relay requests clients sent through `requestRelay`, by request id.
    public private(set) var relayAnswers: [UInt64: OvLinkMessage] = [:]
    private var pendingRelayRequests: Set<UInt64> = []
    private var nextRelayRequest: UInt64 = 1 << 60

    public init(configuration: Configuration) throws {
        self.configuration = configuration
        self.random = SplitMix64(seed: configuration.seed)
        self.keyRandom = SplitMix64(seed: configuration.seed ^ 0x1D_E271_7135)
        self.identifierRandom = SplitMix64(seed: configuration.seed ^ 0x1DE7)
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
            supernodes[index].core.join(seeds: seeds, now: Moment(now))
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
        guard let token = try? clients[client].session.search(name, now: Moment(now)) else { return }
        pendingSearches[client, default: [:]][token] = (name, now)
        drainClient(client)
    }

    /// Kills a supernode without warning.
    public func crash(supernode index: Int) {
        guard supernodes[index].alive else { return }
        supernodes[index].alive = false
        aliveIndices.remove(at: aliveIndexPosition(index))
        for client in clients.indices where clients[client].attachedTo == index {
            schedule(.clientLinkDown(client), after: configuration.crashDetection)
        }
    }

    /// A supernode leaves gracefully: hands over its clients and its records first.
    public func leave(supernode index: Int) {
        guard supernodes[index].alive else { return }
        supernodes[index].core.depart(now: Moment(now))
        drainSupernode(index)
        crash(supernode: index)
    }

    /// A client asks its supernode for a relay circuit to `callee` (as a node's runtime does when
    /// no direct path works), avoiding the supernodes in `avoid`; the answer (granted or refused)
    /// lands in `relayAnswers` under the returned request id.
    public func requestRelay(from client: Int, to callee: String, avoid: [NodeID] = []) -> UInt64? {
        guard let supernode = clients[client].attachedTo else { return nil }
        let id = nextRelayRequest
        nextRelayRequest += 1
        var message = OvLinkMessage()
        message.id = id
        message.relayRequest = OvRelayRequest()
        message.relayRequest.callee = callee
        message.relayRequest.avoid = avoid.map { Data($0.bytes) }
        pendingRelayRequests.insert(id)
        schedule(.clientToSupernode(client: client, supernode: supernode, message), after: latency(supernode, 1_000_000 + client))
        return id
    }

    /// The supernode a client is attached to, if any.
    public func supernode(of client: Int) -> Int? { clients[client].attachedTo }

    public func aliveSupernodeCount() -> Int { aliveIndices.count }

    public func clearSearches() { searches = [] }

    // MARK: - Internals

    private func makeIdentity(_ name: String) throws -> LocalIdentity {
        // Identity keys — hence node ids, hence the DHT's shape — come from the seed, so a run is
        // reproducible (with SWIFT_DETERMINISTIC_HASHING=1, which fixes dictionary order too).
        // Their own stream, so the other draws (latency, loss, picks) are unaffected.
        let key = try Ed25519.PrivateKey(rawRepresentation: (0..<4).flatMap { _ in withUnsafeBytes(of: keyRandom.next().littleEndian, Array.init) })
        serial += 1
        let signed = try Credential.issue(
            name: name, userPublicKey: try key.publicKey().rawRepresentation(), issuedAt: Int64(now) - 60,
            lifetime: 30 * 86400, serial: serial, signer: loginKey)
        return try LocalIdentity(key: key, credential: try verifier.credential(signed, now: now))
    }

    private func makeSupernode() throws -> Int {
        let index = supernodes.count
        let identity = try makeIdentity("sn\(index)")
        let nodeID = identity.nodeID!
        let udp = configuration.supernodeUDP ? HostPort(host: "sn\(index).sim", port: 7101) : nil
        let contact = Contact(nodeID: nodeID, name: identity.name!, endpoints: [HostPort(host: "sn\(index).sim", port: 7100)], udpEndpoint: udp)
        var coreConfiguration = SupernodeCore.Configuration()
        coreConfiguration.dht = configuration.dht
        let core = SupernodeCore(
            identity: identity, verifier: verifier, contact: contact, configuration: coreConfiguration, seed: random.next(), now: Moment(now),
            identifiers: SplitMix64(seed: identifierRandom.next()))
        supernodes.append(Supernode(core: core, identity: identity, peer: PeerIdentity(credential: identity.credential!)))
        aliveIndices.append(index)
        indexByNodeID[nodeID] = index
        return index
    }

    private func makeClient() throws -> Int {
        let index = clients.count
        let identity = try makeIdentity("user\(index)")
        let session = try ClientSession(
            identity: identity, verifier: verifier, messageKey: try X25519.PrivateKey(), state: SessionState(),
            configuration: configuration.session, identifiers: SplitMix64(seed: identifierRandom.next()))
        clients.append(Client(session: session, identity: identity, peer: PeerIdentity(credential: identity.credential!)))
        return index
    }

    private func randomAliveSupernodes(_ count: Int, excluding: Int? = nil) -> [Int] {
        // The same list (alive indices in ascending order, without `excluding`) and the same draws
        // as a scan of every supernode would give, without touching the supernodes themselves.
        let alive = excluding.map { excluded in aliveIndices.filter { $0 != excluded } } ?? aliveIndices
        guard !alive.isEmpty else { return [] }
        return (0..<min(count, alive.count)).map { _ in alive[Int(random.next() % UInt64(alive.count))] }
    }

    /// Where `index` (a live supernode) sits in `aliveIndices`.
    private func aliveIndexPosition(_ index: Int) -> Int {
        var low = 0
        var high = aliveIndices.count
        while low < high {
            let middle = (low + high) / 2
            if aliveIndices[middle] < index { low = middle + 1 } else { high = middle }
        }
        precondition(low < aliveIndices.count && aliveIndices[low] == index, "supernode \(index) is not in the live list")
        return low
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
            supernodes[index].core.handleTimeout(now: Moment(now))
            drainSupernode(index)
        case let .clientTimer(index):
            guard let scheduled = clients[index].scheduledTimer, scheduled <= now else { return }
            clients[index].scheduledTimer = nil
            clients[index].session.handleTimeout(now: Moment(now))
            drainClient(index)
        case let .peerMessage(to, from, message):
            guard supernodes[to].alive else { return }
            messagesDelivered += 1
            supernodes[to].core.handlePeerMessage(message, link: peerLink(from), from: supernodes[from].peer, now: Moment(now))
            drainSupernode(to)
        case let .peerUnreachable(at, peer):
            guard supernodes[at].alive else { return }
            supernodes[at].core.peerUnreachable(peer, now: Moment(now))
            drainSupernode(at)
        case let .clientToSupernode(client, supernode, message):
            guard supernodes[supernode].alive, clients[client].attachedTo == supernode else { return }
            messagesDelivered += 1
            supernodes[supernode].core.handleClientMessage(
                message, link: clientLink(client), peer: clients[client].peer,
                observedEndpoint: "client\(client).sim:40000", now: Moment(now))
            drainSupernode(supernode)
        case let .supernodeToClient(supernode, client, message):
            guard clients[client].attachedTo == supernode else { return }
            messagesDelivered += 1
            if pendingRelayRequests.remove(message.id) != nil {
                relayAnswers[message.id] = message
                return
            }
            clients[client].session.handleMessage(message, now: Moment(now))
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
            guard clients[client].attachedTo == nil, let supernode = randomAliveSupernodes(1).first else {
                if clients[client].attachedTo == nil { schedule(.clientAttach(client), after: 1) }
                return
            }
            clients[client].attachedTo = supernode
            clients[client].session.linkUp(now: Moment(now))
            drainClient(client)
        case let .custom(body):
            body()
        }
    }

    private func detachClient(_ client: Int) {
        clients[client].attachedTo = nil
        clients[client].session.linkDown(now: Moment(now))
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
        // Read through an inout access: a plain read here copied the whole Supernode (every
        // dictionary of its core retained and released) on each drain.
        if let deadline = Self.nextDeadline(of: &supernodes[index].core), supernodes[index].scheduledTimer.map({ deadline < $0 }) ?? true {
            supernodes[index].scheduledTimer = deadline
            queue.push(time: max(deadline, now), .supernodeTimer(index))
        }
    }

    private static func nextDeadline(of core: inout SupernodeCore) -> Double? { core.nextDeadline }

    private func drainClient(_ index: Int) {
        while let action = clients[index].session.poll() {
            switch action {
            case let .send(message):
                guard let supernode = clients[index].attachedTo else { continue }
                schedule(.clientToSupernode(client: index, supernode: supernode, message), after: latency(supernode, 1_000_000 + index))
            case let .event(event):
                if case let .searchFinished(token, answer) = event, let started = pendingSearches[index]?.removeValue(forKey: token) {
                    searches.append(
                        SearchRecord(
                            target: started.target, found: answer.found, hops: answer.hops, latency: now - started.startedAt,
                            startedAt: started.startedAt))
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
///
/// The heap holds only small entries (time, sequence, slot); the events themselves stay put in
/// `slots` (reused through a free list), so sifting moves 24 bytes instead of whole messages.
/// The order is the same total order on (time, sequence) as a heap of the events would give.
struct EventQueue {
    private struct Entry {
        var time: Double
        var sequence: UInt64
        var slot: Int

        @inline(__always) func precedes(_ other: Entry) -> Bool {
            time < other.time || (time == other.time && sequence < other.sequence)
        }
    }

    private var heap: [Entry] = []
    private var slots: [SimulatedNetwork.Event?] = []
    private var freeSlots: [Int] = []
    private var sequence: UInt64 = 0

    var count: Int { heap.count }

    mutating func push(time: Double, _ event: SimulatedNetwork.Event) {
        sequence += 1
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
            slots[slot] = event
        } else {
            slot = slots.count
            slots.append(event)
        }
        let entry = Entry(time: time, sequence: sequence, slot: slot)
        // Sift up with a hole: parents move down, the new entry is written once.
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entry.precedes(heap[parent]) else { break }
            heap[child] = heap[parent]
            child = parent
        }
        heap[child] = entry
    }

    mutating func popIfDue(before end: Double) -> (Double, SimulatedNetwork.Event)? {
        guard let first = heap.first, first.time <= end else { return nil }
        let event = slots[first.slot]!
        slots[first.slot] = nil
        freeSlots.append(first.slot)
        let last = heap.removeLast()
        if !heap.isEmpty {
            // Sift down with a hole: the smaller child moves up until `last` fits.
            let count = heap.count
            var parent = 0
            while true {
                let left = 2 * parent + 1
                guard left < count else { break }
                let right = left + 1
                let smaller = right < count && heap[right].precedes(heap[left]) ? right : left
                guard heap[smaller].precedes(last) else { break }
                heap[parent] = heap[smaller]
                parent = smaller
            }
            heap[parent] = last
        }
        return (first.time, event)
    }
}
