import Foundation
import SkylarkCrypto
import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkOverlay

/// A few DHT cores wired together in memory: each `.send` is handed to the target core's
/// `handleRequest` and its answer straight back to the sender's `handleResponse`.
struct DHTNetwork {
    var cores: [NodeID: DHTCore] = [:]
    private(set) var order: [NodeID] = []
    var now: Double = testNow
    /// Nodes that never answer anything (their requests are dropped).
    var silent: Set<NodeID> = []
    /// Nodes that answer lookups but never answer a Store.
    var droppingStores: Set<NodeID> = []
    /// Rewrites the answer of a node before it reaches the asker (a lying node).
    var tamper: ((_ answerer: NodeID, _ answer: inout OvLinkMessage) -> Void)?
    /// Finished operations, per node.
    private(set) var reports: [NodeID: [DHTCore.Action]] = [:]
    private(set) var delivered: [(from: NodeID, to: NodeID, message: OvLinkMessage)] = []
    private(set) var dropped: [(from: NodeID, to: NodeID, message: OvLinkMessage)] = []

    static func makeCore(_ id: NodeID, index: Int, configuration: DHTCore.Configuration, now: Double = testNow) -> DHTCore {
        DHTCore(
            ownContact: testContact(id, name: "sn\(index)"), validator: OverlayRecordValidator(verifier: makeVerifier()),
            configuration: configuration, seed: UInt64(index) + 1, now: Moment(now))
    }

    init(ids: [NodeID], configuration: DHTCore.Configuration = .init()) {
        for (index, id) in ids.enumerated() {
            cores[id] = Self.makeCore(id, index: index, configuration: configuration)
            order.append(id)
        }
    }

    func contact(_ id: NodeID) -> Contact { cores[id]!.ownContact }

    /// `store` at node `id` (kept out of `#expect`/`#require`, whose expansion cannot mutate).
    mutating func store(_ record: OvDHTRecord, at id: NodeID) -> DHTCore.OperationID? {
        cores[id]!.store(record, now: Moment(now))
    }

    /// A request handed straight to node `id`, as if `sender` had sent it.
    mutating func request(_ message: OvLinkMessage, at id: NodeID, from sender: NodeID) -> OvLinkMessage? {
        cores[id]!.handleRequest(message, from: sender, now: Moment(now))
    }

    /// Delivers messages until no core has anything left to say.
    mutating func run() {
        var progress = true
        var steps = 0
        while progress {
            progress = false
            for id in order {
                while let action = cores[id]!.poll() {
                    progress = true
                    steps += 1
                    precondition(steps < 1_000_000, "the DHT cores keep talking")
                    handle(action, from: id)
                }
            }
        }
    }

    private mutating func handle(_ action: DHTCore.Action, from sender: NodeID) {
        guard case let .send(to: contact, message: message) = action else {
            reports[sender, default: []].append(action)
            return
        }
        let target = contact.nodeID
        let isStore: Bool
        if case .store? = message.body { isStore = true } else { isStore = false }
        guard cores[target] != nil, !silent.contains(target), !(isStore && droppingStores.contains(target)) else {
            dropped.append((sender, target, message))
            return
        }
        delivered.append((sender, target, message))
        guard var answer = cores[target]!.handleRequest(message, from: sender, now: Moment(now)) else { return }
        tamper?(target, &answer)
        cores[sender]!.handleResponse(answer, from: target, now: Moment(now))
    }

    func lookup(_ operation: DHTCore.OperationID, at id: NodeID) -> DHTCore.LookupOutcome? {
        for case let .lookupFinished(finished, outcome) in reports[id] ?? [] where finished == operation { return outcome }
        return nil
    }

    func storeReplicas(_ operation: DHTCore.OperationID, at id: NodeID) -> Int? {
        for case let .storeFinished(finished, replicas: replicas) in reports[id] ?? [] where finished == operation { return replicas }
        return nil
    }

    func holders(of key: NodeID) -> Set<NodeID> {
        Set(order.filter { !cores[$0]!.localRecords(for: key, now: Moment(now)).isEmpty })
    }

    /// Every node after the first joins through the first, one after the other.
    mutating func add(_ id: NodeID, index: Int, configuration: DHTCore.Configuration = .init()) {
        cores[id] = Self.makeCore(id, index: index, configuration: configuration, now: now)
        order.append(id)
    }

    mutating func joinAll() {
        let seed = contact(order[0])
        for id in order.dropFirst() {
            cores[id]!.join(seeds: [seed], now: Moment(now))
            run()
        }
    }
}

@Suite("DHTCore")
struct DHTCoreTests {
    func ids(_ count: Int, seed: UInt64) -> [NodeID] {
        var random = SplitMix64(seed: seed)
        return (0..<count).map { _ in random.nodeID() }
    }

    func signedPresence(_ user: TestUser = Users.alice, sequence: UInt64 = 1, supernode: NodeID? = nil) throws -> OvDHTRecord {
        let signed = try SignedRecords.signPresence(presenceRecord(name: user.name, sequence: sequence, supernode: supernode), identity: user.identity)
        return try OvDHTRecord.presence(signed, name: user.name)
    }

    @Test("Joining through a seed fills the routing tables of everyone")
    func join() {
        let nodes = ids(6, seed: 100)
        var network = DHTNetwork(ids: nodes)
        #expect(nodes.allSatisfy { network.cores[$0]!.routing.count == 0 })
        network.joinAll()
        for node in nodes {
            let core = network.cores[node]!
            #expect(core.routing.count == nodes.count - 1, "\(node) knows \(core.routing.count)")
            for other in nodes where other != node { #expect(core.routing.contains(other)) }
            #expect(!core.routing.contains(node))
            #expect(core.activeOperationCount == 0, "joins are finished")
        }
        // Joins are silent: no operation reports.
        #expect(network.reports.isEmpty)
        // The learnt contacts carry the advertised endpoints.
        #expect(network.cores[nodes[3]]!.routing.contact(for: nodes[1])?.name == "sn1")
    }

    @Test("A larger overlay: each routing table knows its closest nodes after joining")
    func joinLarger() {
        let nodes = ids(24, seed: 101)
        var network = DHTNetwork(ids: nodes)
        network.joinAll()
        for node in nodes {
            let core = network.cores[node]!
            #expect(core.routing.count >= 8)
            // Its own 3 nearest nodes are in its table (the lookup of its own id found them).
            let nearest = nodes.filter { $0 != node }.sorted { $0.distance(to: node) < $1.distance(to: node) }.prefix(3)
            for near in nearest { #expect(core.routing.contains(near), "\(node) misses its neighbour \(near)") }
        }
    }

    @Test("store() reaches the replication closest nodes and reports the replica count")
    func storeReachesReplicas() throws {
        let nodes = ids(8, seed: 102)
        var configuration = DHTCore.Configuration()
        configuration.replication = 3
        var network = DHTNetwork(ids: nodes, configuration: configuration)
        network.joinAll()
        let record = try signedPresence(supernode: nodes[0])
        let key = NodeID.presenceKey(for: "alice")

        for storer in [nodes[2], nodes[5]] {
            let maybe1 = network.store(record, at: storer)
            let operation = try #require(maybe1)
            network.run()
            let replicas = try #require(network.storeReplicas(operation, at: storer))
            let others = nodes.filter { $0 != storer }.sorted { $0.distance(to: key) < $1.distance(to: key) }
            var expected = Set(others.prefix(3))
            if storer.distance(to: key) < others[2].distance(to: key) { expected.insert(storer) }
            #expect(network.holders(of: key).isSuperset(of: expected))
            #expect(replicas == expected.count)
            #expect(network.cores[storer]!.activeOperationCount == 0)
        }
        // Both stores reach the same three closest; no one else holds it.
        let closest = Set(nodes.sorted { $0.distance(to: key) < $1.distance(to: key) }.prefix(4))
        #expect(network.holders(of: key).isSubset(of: closest))
        #expect(network.holders(of: key).count >= 3)
    }

    @Test("findValue returns the stored record, from a node that does not hold it")
    func findValue() throws {
        let nodes = ids(8, seed: 103)
        var configuration = DHTCore.Configuration()
        configuration.replication = 3
        var network = DHTNetwork(ids: nodes, configuration: configuration)
        network.joinAll()
        let record = try signedPresence(supernode: nodes[0])
        let key = NodeID.presenceKey(for: "alice")
        let maybe2 = network.store(record, at: nodes[0])
        _ = try #require(maybe2)
        network.run()

        let holders = network.holders(of: key)
        let finder = try #require(nodes.first { !holders.contains($0) })
        let operation = network.cores[finder]!.findValue(key, now: Moment(network.now))
        network.run()
        let outcome = try #require(network.lookup(operation, at: finder))
        #expect(outcome.target == key)
        #expect(outcome.records == [record])
        #expect(outcome.hops >= 1)
        #expect(outcome.requests >= 1)
        #expect(network.cores[finder]!.localRecords(for: key, now: Moment(network.now)).isEmpty)

        // A newer record replaces the old one everywhere it is stored, and lookups return it.
        let newer = try signedPresence(sequence: 2, supernode: nodes[1])
        let maybe3 = network.store(newer, at: nodes[4])
        _ = try #require(maybe3)
        network.run()
        let again = network.cores[finder]!.findValue(key, now: Moment(network.now))
        network.run()
        #expect(network.lookup(again, at: finder)?.records == [newer])

        // A key nobody holds: no records, but the closest nodes are reported.
        let missing = network.cores[finder]!.findValue(NodeID.presenceKey(for: "nobody"), now: Moment(network.now))
        network.run()
        let empty = try #require(network.lookup(missing, at: finder))
        #expect(empty.records.isEmpty)
        #expect(!empty.closest.isEmpty)
    }

    @Test("collect() gathers every mailbox item")
    func collectMailbox() throws {
        let nodes = ids(6, seed: 104)
        var network = DHTNetwork(ids: nodes)
        network.joinAll()
        var stored: [OvDHTRecord] = []
        for index in 0..<3 {
            let envelope = try SignedRecords.makeEnvelope(
                kind: .message, to: "bob", payload: [UInt8(index)], identity: Users.alice.identity,
                now: network.now)
            let record = try OvDHTRecord.mailboxItem(envelope)
            stored.append(record)
            let maybe4 = network.store(record, at: nodes[index])
            _ = try #require(maybe4)
            network.run()
        }
        let operation = network.cores[nodes[5]]!.collect(NodeID.mailboxKey(for: "bob"), now: Moment(network.now))
        network.run()
        let outcome = try #require(network.lookup(operation, at: nodes[5]))
        #expect(Set(outcome.records.map(\.value)) == Set(stored.map(\.value)))
        #expect(outcome.records.count == 3)
    }

    @Test("A record the validator refuses is stored nowhere")
    func refusedRecord() throws {
        let nodes = ids(5, seed: 105)
        var network = DHTNetwork(ids: nodes)
        network.joinAll()
        let key = NodeID.presenceKey(for: "alice")
        var tampered = try signedPresence()
        tampered.value = flipping(tampered.value, bit: 200)
        var misplaced = try signedPresence()
        misplaced.key = Data(NodeID.presenceKey(for: "bob").bytes)

        for bad in [tampered, misplaced] {
            let operation = network.store(bad, at: nodes[0])
            #expect(operation == nil)
            network.run()
            // Sent straight to another node (a malicious peer): refused, not stored.
            var request = OvLinkMessage()
            request.id = 77
            var store = OvStore()
            store.record = bad
            request.store = store
            let maybe5 = network.request(request, at: nodes[1], from: nodes[0])
            let answer = try #require(maybe5)
            #expect(answer.id == 77)
            #expect(answer.refused.code == .invalid)
        }
        #expect(network.holders(of: key).isEmpty)
        #expect(network.holders(of: NodeID.presenceKey(for: "bob")).isEmpty)
        #expect(nodes.allSatisfy { network.cores[$0]!.store.count == 0 })
        #expect(
            network.delivered.allSatisfy { entry in
                if case .store? = entry.message.body { return false }
                return true
            }, "no Store request was ever sent for a refused record")

        // Control: the genuine record is accepted by the same path.
        var request = OvLinkMessage()
        request.id = 78
        var store = OvStore()
        store.record = try signedPresence()
        request.store = store
        let maybe6 = network.request(request, at: nodes[1], from: nodes[0])
        let answer = try #require(maybe6)
        if case .stored? = answer.body {} else { Issue.record("expected Stored, got \(String(describing: answer.body))") }
        #expect(network.holders(of: key) == [nodes[1]])
    }

    @Test("handleUnreachable fails a lookup's request at once and the lookup still finishes")
    func unreachable() throws {
        let nodes = ids(4, seed: 106)
        let (a, b, c, dead) = (nodes[0], nodes[1], nodes[2], nodes[3])
        var network = DHTNetwork(ids: nodes)
        network.silent = [dead]
        for other in [b, c, dead] { network.cores[a]!.learn(network.contact(other), now: Moment(network.now)) }
        network.run()

        let target = NodeID(bytes: Array(repeating: 0x77, count: 20))
        let operation = network.cores[a]!.findNodes(target, now: Moment(network.now))
        network.run()
        #expect(network.lookup(operation, at: a) == nil, "still waiting for the dead node")
        #expect(network.cores[a]!.activeOperationCount == 1)
        #expect(network.dropped.contains { $0.to == dead })

        network.cores[a]!.handleUnreachable(dead, now: Moment(network.now))
        network.run()
        let outcome = try #require(network.lookup(operation, at: a))
        #expect(Set(outcome.closest.map(\.nodeID)) == [b, c])
        #expect(outcome.requests == 3)
        #expect(network.cores[a]!.activeOperationCount == 0)
    }

    @Test("A contact that never answers: the request times out via handleTimeout(now:)")
    func requestTimeout() throws {
        let nodes = ids(2, seed: 107)
        let (a, dead) = (nodes[0], nodes[1])
        var network = DHTNetwork(ids: nodes)
        network.silent = [dead]
        network.cores[a]!.learn(network.contact(dead), now: Moment(network.now))
        let start = network.now
        let operation = network.cores[a]!.findValue(NodeID.presenceKey(for: "alice"), now: Moment(start))
        network.run()
        let timeout = network.cores[a]!.configuration.requestTimeout
        #expect(network.cores[a]!.nextDeadline == start + timeout)

        network.cores[a]!.handleTimeout(now: Moment(start + timeout - 0.1))
        network.run()
        #expect(network.lookup(operation, at: a) == nil)

        network.cores[a]!.handleTimeout(now: Moment(start + timeout))
        network.run()
        let outcome = try #require(network.lookup(operation, at: a))
        #expect(outcome.records.isEmpty)
        #expect(outcome.closest.isEmpty)
        #expect(outcome.elapsed == timeout)
        // One failure is forgiven; a second unanswered request drops the contact.
        #expect(network.cores[a]!.routing.contains(dead))
        let second = network.cores[a]!.findNodes(dead, now: Moment(start + 10))
        network.run()
        network.cores[a]!.handleTimeout(now: Moment(start + 10 + timeout))
        network.run()
        #expect(network.lookup(second, at: a) != nil)
        #expect(!network.cores[a]!.routing.contains(dead))
    }

    @Test("A store whose replica never acknowledges finishes at the delivery timeout, counting the others")
    func storeDeliveryTimeout() throws {
        let nodes = ids(3, seed: 108)
        var network = DHTNetwork(ids: nodes)
        network.joinAll()
        let (a, mute, c) = (nodes[0], nodes[1], nodes[2])
        network.droppingStores = [mute]
        let record = try signedPresence()
        let key = NodeID.presenceKey(for: "alice")
        let maybe7 = network.store(record, at: a)
        let operation = try #require(maybe7)
        network.run()
        #expect(network.storeReplicas(operation, at: a) == nil, "waiting for the mute replica")
        #expect(network.holders(of: key) == [a, c])

        network.cores[a]!.handleTimeout(now: Moment(network.now + 1))
        network.run()
        #expect(network.storeReplicas(operation, at: a) == nil)
        network.cores[a]!.handleTimeout(now: Moment(network.now + network.cores[a]!.configuration.requestTimeout))
        network.run()
        // Kept here (fewer replicas than `replication`) and at c.
        #expect(network.storeReplicas(operation, at: a) == 2)
    }

    @Test("A lone node stores locally and finds its own records")
    func loneNode() throws {
        let id = ids(1, seed: 109)[0]
        var network = DHTNetwork(ids: [id])
        let record = try signedPresence()
        let maybe8 = network.store(record, at: id)
        let operation = try #require(maybe8)
        network.run()
        #expect(network.storeReplicas(operation, at: id) == 1)
        let lookup = network.cores[id]!.findValue(NodeID.presenceKey(for: "alice"), now: Moment(network.now))
        network.run()
        #expect(network.lookup(lookup, at: id)?.records == [record])
    }

    @Test("Records served by a lying node are checked: forged or misplaced ones are ignored")
    func lyingReplica() throws {
        let nodes = ids(5, seed: 110)
        var network = DHTNetwork(ids: nodes)
        network.joinAll()
        let key = NodeID.presenceKey(for: "alice")
        var forged = try signedPresence(sequence: 99)
        forged.value = flipping(forged.value, bit: 300)
        let wrongKey = try signedPresence(Users.bob, sequence: 5)  // valid, but Bob's record
        network.tamper = { _, answer in
            guard case .values? = answer.body else { return }
            answer.values.records = [forged, wrongKey]
        }
        let finder = nodes[3]
        let operation = network.cores[finder]!.findValue(key, now: Moment(network.now))
        network.run()
        let outcome = try #require(network.lookup(operation, at: finder))
        #expect(outcome.records.isEmpty)

        // Control: a genuine record slipped in the same way is accepted.
        let genuine = try signedPresence(sequence: 1)
        network.tamper = { _, answer in
            guard case .values? = answer.body else { return }
            answer.values.records = [forged, genuine]
        }
        let again = network.cores[finder]!.findValue(key, now: Moment(network.now))
        network.run()
        #expect(network.lookup(again, at: finder)?.records == [genuine])
    }

    @Test("An answer from another node than the one asked is ignored")
    func spoofedAnswer() throws {
        let nodes = ids(3, seed: 111)
        let (a, b, c) = (nodes[0], nodes[1], nodes[2])
        var network = DHTNetwork(ids: nodes)
        network.silent = [b, c]
        network.cores[a]!.learn(network.contact(b), now: Moment(network.now))
        let operation = network.cores[a]!.findValue(NodeID.presenceKey(for: "alice"), now: Moment(network.now))
        network.run()
        let request = try #require(network.dropped.first { $0.to == b }?.message)
        var answer = OvLinkMessage()
        answer.id = request.id
        answer.values = OvValues()
        answer.values.records = [try signedPresence()]
        // c answers in b's place: ignored.
        network.cores[a]!.handleResponse(answer, from: c, now: Moment(network.now))
        network.run()
        #expect(network.lookup(operation, at: a) == nil)
        // b's own answer completes the lookup.
        network.cores[a]!.handleResponse(answer, from: b, now: Moment(network.now))
        network.run()
        #expect(network.lookup(operation, at: a)?.records.count == 1)
        // A second copy of the same answer changes nothing.
        network.cores[a]!.handleResponse(answer, from: b, now: Moment(network.now))
        network.run()
        #expect(network.reports[a]?.count == 1)
    }

    @Test("Unpublish only by the record's supernode; ClearMailbox only by the owner")
    func unpublishAndClear() throws {
        let nodes = ids(3, seed: 112)
        let (holder, attached, stranger) = (nodes[0], nodes[1], nodes[2])
        var network = DHTNetwork(ids: nodes)
        let presence = try signedPresence(sequence: 4, supernode: attached)
        let envelope = try SignedRecords.makeEnvelope(kind: .message, to: "bob", payload: [1], identity: Users.alice.identity, now: network.now)
        for record in [presence, try OvDHTRecord.mailboxItem(envelope)] {
            var message = OvLinkMessage()
            message.store.record = record
            let stored = network.request(message, at: holder, from: stranger)
            if case .stored? = stored?.body {} else { Issue.record("expected Stored, got \(String(describing: stored?.body))") }
        }
        let presenceKey = NodeID.presenceKey(for: "alice")
        let mailboxKey = NodeID.mailboxKey(for: "bob")

        func unpublish(sequence: UInt64) -> OvLinkMessage {
            var message = OvLinkMessage()
            message.id = 5
            message.unpublish.key = Data(presenceKey.bytes)
            message.unpublish.name = "alice"
            message.unpublish.sequence = sequence
            return message
        }
        #expect(network.request(unpublish(sequence: 4), at: holder, from: stranger)?.refused.code == .invalid)
        #expect(network.request(unpublish(sequence: 3), at: holder, from: attached)?.refused.code == .invalid)
        #expect(network.cores[holder]!.localRecords(for: presenceKey, now: Moment(network.now)).count == 1)
        let withdrawn = network.request(unpublish(sequence: 4), at: holder, from: attached)
        if case .ack? = withdrawn?.body {} else { Issue.record("expected Ack, got \(String(describing: withdrawn?.body))") }
        #expect(network.cores[holder]!.localRecords(for: presenceKey, now: Moment(network.now)).isEmpty)

        var byAlice = OvLinkMessage()
        byAlice.mailboxClear = try SignedRecords.makeMailboxClear(ids: [Array(envelope.id)], identity: Users.alice.identity, now: network.now)
        byAlice.mailboxClear.name = "bob"
        #expect(network.request(byAlice, at: holder, from: stranger)?.refused.code == .invalid)
        #expect(network.cores[holder]!.localRecords(for: mailboxKey, now: Moment(network.now)).count == 1)
        var byBob = OvLinkMessage()
        byBob.mailboxClear = try SignedRecords.makeMailboxClear(ids: [Array(envelope.id)], identity: Users.bob.identity, now: network.now)
        let cleared = network.request(byBob, at: holder, from: stranger)
        if case .ack? = cleared?.body {} else { Issue.record("expected Ack, got \(String(describing: cleared?.body))") }
        #expect(network.cores[holder]!.localRecords(for: mailboxKey, now: Moment(network.now)).isEmpty)
        // The delivered envelope cannot be stored again.
        var again = OvLinkMessage()
        again.store.record = try OvDHTRecord.mailboxItem(envelope)
        #expect(network.request(again, at: holder, from: stranger)?.refused.code == .invalid)
    }

    @Test("A newly met node closer to a mailbox key is handed its items")
    func repairToCloserNode() throws {
        let nodes = ids(4, seed: 113)
        var network = DHTNetwork(ids: nodes)
        network.joinAll()
        let envelope = try SignedRecords.makeEnvelope(kind: .message, to: "bob", payload: [7], identity: Users.alice.identity, now: network.now)
        let record = try OvDHTRecord.mailboxItem(envelope)
        let key = NodeID.mailboxKey(for: "bob")
        let maybe = network.store(record, at: nodes[0])
        _ = try #require(maybe)
        network.run()
        #expect(network.holders(of: key) == Set(nodes))

        // A supernode whose id differs from the key in the last bit only: closer than anyone.
        let newcomer = NodeID(high: key.high, middle: key.middle, low: key.low ^ 1)
        network.add(newcomer, index: 9)
        network.cores[newcomer]!.join(seeds: [network.contact(nodes[0])], now: Moment(network.now))
        network.run()
        #expect(network.holders(of: key).contains(newcomer))
        #expect(network.cores[newcomer]!.localRecords(for: key, now: Moment(network.now)) == [record])
    }

    @Test("Maintenance via handleTimeout purges expired records")
    func maintenanceExpiry() throws {
        let id = ids(1, seed: 114)[0]
        var network = DHTNetwork(ids: [id])
        let maybe = network.store(try signedPresence(), at: id)
        _ = try #require(maybe)
        network.run()
        #expect(network.cores[id]!.store.count == 1)
        // The record lives 600 s; maintenance runs at least every refresh/4.
        let deadline = try #require(network.cores[id]!.nextDeadline)
        #expect(deadline <= network.now + 300)
        var now = network.now
        for _ in 0..<100 where now < network.now + 700 {
            now = max(now + 1, network.cores[id]!.nextDeadline ?? now + 60)
            network.cores[id]!.handleTimeout(now: Moment(now))
            if now < network.now + 600 { #expect(network.cores[id]!.store.count == 1) }
        }
        #expect(now >= network.now + 700)
        #expect(network.cores[id]!.store.count == 0)
    }
}
