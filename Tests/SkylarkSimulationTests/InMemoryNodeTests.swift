import Foundation
import SkylarkNode
import SkylarkOverlay
import SkylarkSimulation
import SkylarkWire
import Testing

/// Real node runtimes together in memory (`InMemoryLab`): the reactor's own policy — bootstrap,
/// login direct or relayed, attach, presence, messages — with no socket and no root, in virtual
/// time. `swift test --filter InMemory` runs these.
@Suite struct InMemoryNodeTests {
    @Test(.timeLimit(.minutes(2)))
    func inMemoryLoginAndAttach() throws {
        let lab = try InMemoryLab(supernodes: 3)
        defer { lab.shutdown() }
        let supernodes = try lab.startSupernodes()
        let alice = try lab.startClient("alice", address: "203.0.113.40")
        let status = try #require(alice.status())
        #expect(status.role == "client")
        #expect(status.loginPath == "direct")
        #expect(status.presence == "online")
        let attachedTo = try #require(status.supernode?.split(separator: " ").first.map(String.init))
        #expect(supernodes.map(\.name).contains(attachedTo))
        // The supernodes found each other: every one knows the other two.
        #expect(lab.network.run(within: 20) { supernodes.allSatisfy { ($0.status()?.dhtContacts ?? 0) >= 2 } })
    }

    @Test(.timeLimit(.minutes(2)))
    func inMemoryLoginRelayedThroughASupernodeWhenTheLoginServerIsUnreachable() throws {
        let lab = try InMemoryLab(supernodes: 2)
        defer { lab.shutdown() }
        try lab.startSupernodes()
        lab.network.loginBlocked.insert("dave")
        let dave = try lab.startClient("dave", address: "192.168.4.2", reachability: .udpBlocked(publicAddress: "203.0.113.104"))
        let status = try #require(dave.status())
        #expect(status.loginPath.hasPrefix("via supernode"))
        #expect(status.hostCacheRefresh == "tcp")
    }

    @Test(.timeLimit(.minutes(2)))
    func inMemoryBuddyRequestAndPresenceBothWays() throws {
        let lab = try InMemoryLab(supernodes: 3)
        defer { lab.shutdown() }
        try lab.startSupernodes()
        let alice = try lab.startClient("alice", address: "192.168.1.2", reachability: .nat(publicAddress: "203.0.113.101", symmetric: false))
        let bob = try lab.startClient("bob", address: "192.168.2.2", reachability: .nat(publicAddress: "203.0.113.102", symmetric: true))
        // A request is not consent: no presence before bob accepts.
        #expect(alice.result(ControlResults.Done.self, ControlRequest(command: .buddyAdd, name: "bob")) != nil)
        #expect(lab.network.run(within: 10) { buddies(bob).contains { $0.name == "alice" } })
        #expect(presence(of: "bob", at: alice) != "online")
        #expect(bob.result(ControlResults.Done.self, ControlRequest(command: .buddyAccept, name: "alice")) != nil)
        #expect(lab.network.run(within: 10) { presence(of: "bob", at: alice) == "online" && presence(of: "alice", at: bob) == "online" })
        // Away and back, then signing off, reach the other side within 3 s.
        #expect(alice.result(ControlResults.Done.self, ControlRequest(command: .presence, text: "away")) != nil)
        #expect(lab.network.run(within: 3) { presence(of: "alice", at: bob) == "away" })
        #expect(alice.result(ControlResults.Done.self, ControlRequest(command: .presence, text: "online")) != nil)
        #expect(lab.network.run(within: 3) { presence(of: "alice", at: bob) == "online" })
        lab.network.stop(bob)
        #expect(lab.network.run(within: 3) { presence(of: "bob", at: alice) == "offline" })
    }

    @Test(.timeLimit(.minutes(2)))
    func inMemoryMessagesOnlineAndDeliveredOffline() throws {
        let lab = try InMemoryLab(supernodes: 3)
        defer { lab.shutdown() }
        try lab.startSupernodes()
        let alice = try lab.startClient("alice", address: "203.0.113.40")
        var carol = try lab.startClient("carol", address: "192.168.3.2", reachability: .udpBlocked(publicAddress: "203.0.113.103"))
        befriend(alice, carol, in: lab)

        let online = try #require(alice.result(ControlResults.Message.self, ControlRequest(command: .message, name: "carol", text: "hello carol")))
        #expect(online.state == "delivered")
        #expect(lab.network.run(within: 5) { inbox(carol)?.messages.contains { $0.from == "alice" && $0.text == "hello carol" } == true })

        // Offline: stored on at least two supernodes, delivered at the next login, with a receipt.
        lab.network.stop(carol)
        #expect(lab.network.run(within: 10) { presence(of: "carol", at: alice) == "offline" })
        let stored = try #require(alice.result(ControlResults.Message.self, ControlRequest(command: .message, name: "carol", text: "while you were out")))
        #expect(stored.state == "stored")
        #expect((stored.replicas ?? 0) >= 2)
        carol = try lab.network.start("carol", password: InMemoryLab.password("carol"), address: "192.168.3.2",
                                      reachability: .udpBlocked(publicAddress: "203.0.113.103"), supernode: .never)
        #expect(lab.network.run(within: 30) { inbox(carol)?.messages.contains { $0.text == "while you were out" } == true })
        #expect(lab.network.run(within: 10) {
            inbox(alice)?.outbox.contains { $0.to == "carol" && $0.state == "delivered" && $0.receipt == true } == true
        })
    }
}

func buddies(_ node: InMemoryNode) -> [ControlResults.BuddyEntry] {
    node.result([ControlResults.BuddyEntry].self, ControlRequest(command: .buddyList)) ?? []
}

func presence(of name: String, at node: InMemoryNode) -> String? {
    buddies(node).first { $0.name == name }?.presence
}

func inbox(_ node: InMemoryNode) -> ControlResults.Inbox? {
    node.result(ControlResults.Inbox.self, ControlRequest(command: .inbox))
}

/// Makes two buddies: a asks, b consents; both then see each other online.
func befriend(_ a: InMemoryNode, _ b: InMemoryNode, in lab: InMemoryLab) {
    #expect(a.result(ControlResults.Done.self, ControlRequest(command: .buddyAdd, name: b.name)) != nil)
    #expect(lab.network.run(within: 10) { buddies(b).contains { $0.name == a.name } })
    #expect(b.result(ControlResults.Done.self, ControlRequest(command: .buddyAccept, name: a.name)) != nil)
    #expect(lab.network.run(within: 10) { presence(of: b.name, at: a) == "online" && presence(of: a.name, at: b) == "online" })
}
