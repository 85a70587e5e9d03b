import SkylarkOverlay
import SkylarkSimulation
import SkylarkWire
import Testing

/// The overlay cores (supernodes' DHT, sessions) end to end in the simulated network.
@Suite("Overlay scenarios in the simulated network")
struct OverlayScenarioTests {
    /// `supernodeUDP`: supernodes with UDP endpoints (relay circuits need them).
    static func network(supernodes: Int = 20, clients: Int = 60, seed: UInt64 = 7, supernodeUDP: Bool = false) throws -> SimulatedNetwork {
        var configuration = SimulatedNetwork.Configuration()
        configuration.seed = seed
        configuration.supernodeUDP = supernodeUDP
        configuration.dht.requestTimeout = 1
        let network = try SimulatedNetwork(configuration: configuration)
        try network.addSupernodes(supernodes)
        try network.addClients(clients)
        network.run(for: 10)
        return network
    }

    @Test func searchFindsEveryOnlineUser() throws {
        let network = try Self.network()
        for target in 0..<network.clients.count {
            network.search(from: (target * 7 + 3) % network.clients.count, for: "user\(target)")
        }
        network.run(for: 15)
        #expect(network.searches.count == network.clients.count)
        let misses = network.searches.filter { !$0.found }.map(\.target)
        #expect(misses.isEmpty, "not found: \(misses)")
        #expect(network.searches.allSatisfy { $0.hops <= 6 })
    }

    @Test func searchForUnknownNameFindsNothing() throws {
        let network = try Self.network(supernodes: 10, clients: 10)
        network.search(from: 0, for: "nobody-here")
        network.run(for: 10)
        #expect(network.searches.count == 1)
        #expect(network.searches.first?.found == false)
    }
}

@Suite("Presence and messages in the simulated network")
struct PresenceAndMessageTests {
    /// 12 supernodes, 6 clients; 0-1, 0-2 and 3-4 are buddies.
    static func network(lossRate: Double = 0) throws -> SimulatedNetwork {
        var configuration = SimulatedNetwork.Configuration()
        configuration.seed = 11
        configuration.lossRate = lossRate
        configuration.dht.requestTimeout = 1
        let network = try SimulatedNetwork(configuration: configuration)
        try network.addSupernodes(12)
        try network.addClients(6)
        network.run(for: 5)
        network.befriend([(0, 1), (0, 2), (3, 4)])
        network.run(for: 5)
        return network
    }

    static func presence(_ network: SimulatedNetwork, of buddy: String, seenBy client: Int) -> PresenceStatus? {
        network.clients[client].session.state.buddies[buddy]?.presence
    }

    @Test func buddiesNeedConsentAndThenSeeEachOtherOnline() throws {
        let network = try Self.network()
        #expect(network.clients[0].session.state.buddies["user1"]?.state == .confirmed)
        #expect(network.clients[1].session.state.buddies["user0"]?.state == .confirmed)
        #expect(Self.presence(network, of: "user1", seenBy: 0) == .online)
        #expect(Self.presence(network, of: "user0", seenBy: 2) == .online)
        // 5 asked nobody and nobody asked 5: no buddies, no presence.
        #expect(network.clients[5].session.state.buddies.isEmpty)
        // A request without an accept stays a request.
        try network.withSession(5) { try $0.addBuddy("user4", text: "hi", now: $1) }
        network.run(for: 5)
        #expect(network.clients[5].session.state.buddies["user4"]?.state == .requested)
        #expect(network.clients[4].session.state.buddies["user5"]?.state == .incoming)
        #expect(network.clients[4].session.state.buddies["user5"]?.requestText == "hi")
        #expect(throws: ClientSession.CommandError.notABuddy("user4")) { _ = try network.sendMessage(from: 5, to: "user4", text: "x") }
    }

    @Test func gracefulSignOffReachesBuddiesAtOnce() throws {
        let network = try Self.network()
        network.disconnect(client: 1, graceful: true)
        network.run(for: 1)
        #expect(Self.presence(network, of: "user1", seenBy: 0) == .offline)
    }

    @Test func droppedLinkIsConfirmedBeforeShowingOffline() throws {
        let network = try Self.network()
        network.disconnect(client: 1, graceful: false)
        // Within the supernode's grace period and the watcher's confirmation, still online.
        network.run(for: 1)
        #expect(Self.presence(network, of: "user1", seenBy: 0) == .online)
        network.run(for: 6)
        #expect(Self.presence(network, of: "user1", seenBy: 0) == .offline)
        // Coming back is seen too.
        network.reconnect(client: 1)
        network.run(for: 3)
        #expect(Self.presence(network, of: "user1", seenBy: 0) == .online)
    }

    @Test func aQuickReattachNeverShowsOffline() throws {
        let network = try Self.network()
        var seenOffline = false
        network.disconnect(client: 1, graceful: false)
        network.reconnect(client: 1)
        for _ in 0..<40 {
            network.run(for: 0.25)
            if Self.presence(network, of: "user1", seenBy: 0) != .online { seenOffline = true }
        }
        #expect(!seenOffline)
    }

    @Test func noFlappingUnderFivePercentLoss() throws {
        let network = try Self.network(lossRate: 0.05)
        var flaps = 0
        for _ in 0..<240 {
            network.run(for: 0.5)
            if Self.presence(network, of: "user1", seenBy: 0) != .online { flaps += 1 }
            if Self.presence(network, of: "user0", seenBy: 2) != .online { flaps += 1 }
        }
        #expect(flaps == 0)
    }

    @Test func messageToAnOnlineBuddyIsDeliveredWithReceipt() throws {
        let network = try Self.network()
        let id = try network.sendMessage(from: 0, to: "user1", text: "hello bob")
        network.run(for: 3)
        #expect(network.clients[1].session.state.inbox.map(\.text) == ["hello bob"])
        #expect(network.clients[1].session.state.inbox.first?.from == "user0")
        let state = network.clients[0].session.state.outbox.first { $0.id == id }?.state
        guard case .delivered(_, let receipt)? = state else { Issue.record("not delivered: \(String(describing: state))"); return }
        #expect(receipt)
    }

    @Test func offlineMessageIsStoredTwiceAndSurvivesASupernodeCrash() throws {
        let network = try Self.network()
        network.disconnect(client: 1, graceful: true)
        network.run(for: 2)
        let id = try network.sendMessage(from: 0, to: "user1", text: "while you were out")
        network.run(for: 5)
        let state = network.clients[0].session.state.outbox.first { $0.id == id }?.state
        guard case let .stored(replicas)? = state else { Issue.record("not stored: \(String(describing: state))"); return }
        #expect(replicas >= 2)
        // Kill the supernode closest to the mailbox key: another replica still has it.
        let key = NodeID.mailboxKey(for: "user1")
        let holders = network.supernodes.indices.filter { !network.supernodes[$0].core.dht.localRecords(for: key, now: Moment(network.now)).isEmpty }
        #expect(holders.count >= 2)
        network.crash(supernode: holders[0])
        network.run(for: 2)
        network.reconnect(client: 1)
        network.run(for: 5)
        #expect(network.clients[1].session.state.inbox.map(\.text) == ["while you were out"])
        let after = network.clients[0].session.state.outbox.first { $0.id == id }?.state
        guard case .delivered(_, true)? = after else { Issue.record("no receipt: \(String(describing: after))"); return }
        // Delivered mail is cleared from the replicas.
        network.run(for: 3)
        let left = network.supernodes.indices.filter {
            network.supernodes[$0].alive && !network.supernodes[$0].core.dht.localRecords(for: key, now: Moment(network.now)).isEmpty
        }
        #expect(left.isEmpty)
    }

    @Test func clientsOfACrashedSupernodeComeBack() throws {
        let network = try Self.network()
        guard let supernode = network.clients[1].attachedTo else { Issue.record("not attached"); return }
        network.crash(supernode: supernode)
        network.run(for: 5)
        #expect(network.clients[1].attachedTo != nil && network.clients[1].attachedTo != supernode)
        #expect(Self.presence(network, of: "user1", seenBy: 0) == .online)
        network.search(from: 2, for: "user1")
        network.run(for: 3)
        #expect(network.searches.last?.found == true)
    }
}
