import Foundation
import SkylarkCrypto
import SkylarkNode
import SkylarkOverlay
import SkylarkSimulation
import Testing

/// Presence and stored messages with real node runtimes when links drop, nodes crash and the
/// network loses packets: what a buddy sees, and when.
@Suite struct InMemoryPresenceTests {
    /// 5 supernodes; alice is buddies with bob and with carol.
    static func lab(lossRate: Double = 0) throws -> (InMemoryLab, supernodes: [InMemoryNode], alice: InMemoryNode, bob: InMemoryNode, carol: InMemoryNode) {
        let lab = try InMemoryLab(supernodes: 5)
        lab.network.lossRate = lossRate
        let supernodes = try lab.startSupernodes()
        let alice = try lab.startClient("alice", address: "198.51.100.10")
        let bob = try lab.startClient("bob", address: "198.51.100.11")
        let carol = try lab.startClient("carol", address: "198.51.100.12")
        befriend(alice, bob, in: lab)
        befriend(alice, carol, in: lab)
        return (lab, supernodes, alice, bob, carol)
    }

    /// Starts `name` again on its state folder (after a crash or a stop).
    static func restart(_ name: String, address: String, in lab: InMemoryLab) throws -> InMemoryNode {
        try lab.network.start(name, password: InMemoryLab.password(name), address: address, supernode: .never)
    }

    @Test(.timeLimit(.minutes(2)))
    func inMemoryACrashIsConfirmedBeforeShowingOfflineAndTheReturnIsSeen() throws {
        let (lab, _, alice, bob, _) = try Self.lab()
        defer { lab.shutdown() }
        lab.network.kill(bob)
        // Within the supernode's grace period and the watcher's confirmation, still online...
        lab.network.run(for: 1)
        #expect(presence(of: "bob", at: alice) == "online")
        // ...then offline, and back online when bob starts again.
        #expect(lab.network.run(within: 8) { presence(of: "bob", at: alice) == "offline" })
        _ = try Self.restart("bob", address: "198.51.100.11", in: lab)
        #expect(lab.network.run(within: 5) { presence(of: "bob", at: alice) == "online" })
    }

    @Test(.timeLimit(.minutes(2)))
    func inMemoryAQuickReattachNeverShowsOffline() throws {
        let (lab, _, alice, bob, _) = try Self.lab()
        defer { lab.shutdown() }
        let supernode = bob.status()?.supernode
        // Bob's connection to his supernode drops; his node dials again at once.
        lab.network.dropLinks(of: bob)
        var seen: [String] = []
        for _ in 0..<40 {
            lab.network.run(for: 0.25)
            seen.append(presence(of: "bob", at: alice) ?? "-")
        }
        #expect(seen.allSatisfy { $0 == "online" }, "alice saw \(seen)")
        #expect(bob.status()?.presence == "online")
        #expect(supernode != nil)
    }

    @Test(.timeLimit(.minutes(3)))
    func inMemoryNoFlappingUnderFivePercentLoss() throws {
        let (lab, _, alice, bob, carol) = try Self.lab(lossRate: 0.05)
        defer { lab.shutdown() }
        var flaps: [String] = []
        for step in 0..<240 {
            lab.network.run(for: 0.5)
            if presence(of: "bob", at: alice) != "online" { flaps.append("bob at alice, step \(step)") }
            if presence(of: "alice", at: carol) != "online" { flaps.append("alice at carol, step \(step)") }
        }
        #expect(flaps.isEmpty, "\(flaps)")
        // The loss was real (46 writes retransmitted in this seeded run): links kept working
        // through the retransmissions.
        #expect(lab.network.retransmissions >= 30, "\(lab.network.retransmissions) retransmissions")
        #expect(bob.status()?.presence == "online")
    }

    @Test(.timeLimit(.minutes(2)))
    func inMemoryAnOfflineMessageSurvivesTheCrashOfTheSupernodeClosestToTheMailbox() throws {
        let (lab, supernodes, alice, bob, _) = try Self.lab()
        defer { lab.shutdown() }
        lab.network.stop(bob)
        #expect(lab.network.run(within: 5) { presence(of: "bob", at: alice) == "offline" })
        let stored = try #require(alice.result(ControlResults.Message.self, ControlRequest(command: .message, name: "bob", text: "while you were out")))
        #expect(stored.state == "stored")
        #expect((stored.replicas ?? 0) >= 2)
        // The supernode closest to bob's mailbox key holds a copy; it crashes.
        let key = NodeID.mailboxKey(for: "bob")
        let closest = try #require(
            supernodes.min { a, b in
                Self.nodeID(a).distance(to: key) < Self.nodeID(b).distance(to: key)
            })
        lab.network.kill(closest)
        lab.network.run(for: 2)
        let bobAgain = try Self.restart("bob", address: "198.51.100.11", in: lab)
        #expect(lab.network.run(within: 30) { inbox(bobAgain)?.messages.map(\.text) == ["while you were out"] })
        #expect(
            lab.network.run(within: 10) {
                inbox(alice)?.outbox.contains { $0.id == stored.id && $0.state == "delivered" && $0.receipt == true } == true
            })
    }

    static func nodeID(_ node: InMemoryNode) -> NodeID {
        NodeID(bytes: [UInt8](hexString: node.status()?.nodeID ?? "") ?? [])
    }
}
