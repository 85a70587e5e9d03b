import SkylarkOverlay
import SkylarkSimulation
import SkylarkWire
import Testing

/// Relay circuits as the supernode cores build them, with nothing but the cores in the
/// simulated network: the caller's supernode picks two relays and the callee's supernode ends
/// the chain, every hop admits its legs, and a relay that cannot be reached is built around.
@Suite struct RelayCircuitTests {
    /// Supernodes with UDP endpoints (what circuits are built on), settled for 10 s.
    static func network(supernodes: Int, clients: Int, seed: UInt64) throws -> SimulatedNetwork {
        var configuration = SimulatedNetwork.Configuration()
        configuration.seed = seed
        configuration.supernodeUDP = true
        configuration.dht.requestTimeout = 1
        let network = try SimulatedNetwork(configuration: configuration)
        try network.addSupernodes(supernodes)
        try network.addClients(clients)
        network.run(for: 10)
        return network
    }

    /// Two clients attached to different supernodes.
    static func pair(in network: SimulatedNetwork) -> (caller: Int, callee: Int)? {
        for caller in network.clients.indices {
            for callee in network.clients.indices where callee != caller {
                if let a = network.supernode(of: caller), let b = network.supernode(of: callee), a != b { return (caller, callee) }
            }
        }
        return nil
    }

    static func circuitCount(_ network: SimulatedNetwork, named name: String) -> Int {
        network.supernodes.first { $0.identity.name == name }?.core.relays.count ?? 0
    }

    @Test func aCircuitRunsThroughFourDistinctSupernodesAndEveryHopAdmitsIt() throws {
        let network = try Self.network(supernodes: 10, clients: 8, seed: 21)
        let (caller, callee) = try #require(Self.pair(in: network))
        let id = try #require(network.requestRelay(from: caller, to: "user\(callee)"))
        network.run(for: 5)
        let answer = try #require(network.relayAnswers[id], "the caller's supernode answers")
        guard case let .relayGranted(granted)? = answer.body else {
            Issue.record("expected a circuit, got \(answer)")
            return
        }
        let callerSupernode = network.supernodes[network.supernode(of: caller)!].identity.name!
        let calleeSupernode = network.supernodes[network.supernode(of: callee)!].identity.name!
        #expect(granted.relays.count == 4, "\(granted.relays)")
        #expect(granted.relays.first == callerSupernode && granted.relays.last == calleeSupernode)
        #expect(Set(granted.relays).count == granted.relays.count, "no supernode twice: \(granted.relays)")
        #expect(granted.legID.count == 16 && granted.farLegID.count == 16 && granted.legID != granted.farLegID)
        #expect(granted.farEndpoint == "\(calleeSupernode).sim:7101", "the callee's end is its supernode's UDP port")
        for name in granted.relays { #expect(Self.circuitCount(network, named: name) == 1, "\(name) holds its hop of the circuit") }
        #expect(network.supernodes.map(\.core.relays.count).reduce(0, +) == 4, "nobody else holds a circuit")
    }

    @Test func withSeededIdentifiersARunRepeatsToTheLegID() throws {
        func grantedLeg() throws -> [UInt8]? {
            let network = try Self.network(supernodes: 6, clients: 8, seed: 33)
            let (caller, callee) = try #require(Self.pair(in: network))
            let id = try #require(network.requestRelay(from: caller, to: "user\(callee)"))
            network.run(for: 5)
            guard case let .relayGranted(granted)? = network.relayAnswers[id]?.body else { return nil }
            return Array(granted.legID)
        }
        let first = try grantedLeg()
        #expect(first != nil)
        #expect(try grantedLeg() == first, "the cores draw leg ids from the injected generator")
    }

    @Test func aCalleeWhoIsNotOnlineGetsNoCircuit() throws {
        let network = try Self.network(supernodes: 6, clients: 2, seed: 5)
        let id = try #require(network.requestRelay(from: 0, to: "nobody"))
        network.run(for: 5)
        guard case let .refused(refused)? = network.relayAnswers[id]?.body else {
            Issue.record("expected a refusal, got \(String(describing: network.relayAnswers[id]))")
            return
        }
        #expect(refused.reason == "nobody is not online")
        #expect(network.supernodes.map(\.core.relays.count).reduce(0, +) == 0, "nothing admitted for a refused circuit")
    }

    @Test func aRelayThatCannotBeReachedIsBuiltAroundAndAvoidedOnesAreNeverUsed() throws {
        // Five supernodes: the two ends, one avoided, one dead, one alive: the first attempt must
        // take the dead one (two relays are wanted, two candidates exist), the second goes around.
        let network = try Self.network(supernodes: 5, clients: 8, seed: 9)
        let (caller, callee) = try #require(Self.pair(in: network))
        let ends: Set<Int> = [network.supernode(of: caller)!, network.supernode(of: callee)!]
        let others = network.supernodes.indices.filter { !ends.contains($0) }
        let avoided = others[0]
        let crashed = others[1]
        network.crash(supernode: crashed)
        let id = try #require(network.requestRelay(from: caller, to: "user\(callee)", avoid: [network.supernodes[avoided].core.contact.nodeID]))
        network.run(for: 20)
        guard case let .relayGranted(granted)? = network.relayAnswers[id]?.body else {
            Issue.record("expected a circuit around the dead relay, got \(String(describing: network.relayAnswers[id]))")
            return
        }
        let names = granted.relays
        #expect(!names.contains(network.supernodes[avoided].identity.name!), "avoided: \(names)")
        #expect(!names.contains(network.supernodes[crashed].identity.name!), "dead: \(names)")
        #expect(Set(names).count == names.count, "no supernode twice: \(names)")
        #expect(names.count == 3 && names[1] == network.supernodes[others[2]].identity.name!, "the one relay left: \(names)")
        #expect(network.supernodes.filter(\.alive).map(\.core.relays.count).reduce(0, +) == names.count, "a failed attempt leaves no legs behind")
    }
}
