import Foundation
import SkylarkOverlay
import SkylarkSimulation
import Testing

/// The `skylark-bench overlay` churn scenario, small: a fifth of the supernodes crash or leave
/// while as many new ones join, and lookups go on throughout and after.
@Suite("Lookups under supernode churn")
struct ChurnTests {
    @Test func lookupsSucceedWhileAFifthOfTheSupernodesChurn() throws {
        let supernodes = 60
        let clients = 300
        let lookups = 300
        let window = 30.0
        let tail = 10.0
        var configuration = SimulatedNetwork.Configuration()
        configuration.seed = 5
        configuration.lossRate = 0.01
        let network = try SimulatedNetwork(configuration: configuration)
        try network.addSupernodes(supernodes)
        try network.addClients(clients)
        network.run(for: 10)

        // The plan: 12 supernodes go (half crash, half leave gracefully), 12 join, at random
        // moments of the window; lookups evenly over the window and the tail.
        enum Step { case crash(Int), leave(Int), join, lookup }
        var random = SplitMix64(seed: 17)
        func uniform() -> Double { Double(random.next() >> 11) / Double(1 << 53) }
        let begin = network.now
        let churned = supernodes / 5
        var leaving = Array(0..<supernodes)
        leaving.shuffle(using: &random)
        var plan: [(time: Double, step: Step)] = []
        for (position, index) in leaving.prefix(churned).enumerated() {
            plan.append((begin + uniform() * window, position < churned / 2 ? .crash(index) : .leave(index)))
        }
        for _ in 0..<churned { plan.append((begin + uniform() * window, .join)) }
        for index in 0..<lookups { plan.append((begin + Double(index) * (window + tail) / Double(lookups), .lookup)) }
        plan = plan.enumerated().sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }.map(\.element)

        var issued = 0
        for (time, step) in plan {
            network.run(until: time)
            switch step {
            case let .crash(index): network.crash(supernode: index)
            case let .leave(index): network.leave(supernode: index)
            case .join: try network.addSupernodes(1, spacing: 0)
            case .lookup:
                // A random attached client looks up a random other user.
                let attached = network.clients.indices.filter { network.clients[$0].session.isAttached }
                guard let from = attached.randomElement(using: &random) else { continue }
                var target = Int(random.next() % UInt64(clients))
                while target == from { target = Int(random.next() % UInt64(clients)) }
                network.search(from: from, for: "user\(target)")
                issued += 1
            }
        }
        network.run(for: 20)

        #expect(network.aliveSupernodeCount() == supernodes)
        #expect(issued >= lookups * 95 / 100)
        let found = network.searches.filter(\.found)
        let success = Double(found.count) / Double(issued)
        #expect(success >= 0.99, "found \(found.count) of \(issued) (\(network.searches.count) answered)")
        let hops = found.map(\.hops).sorted()
        let median = hops.isEmpty ? Int.max : hops[(hops.count - 1) / 2]
        let bound = log2(Double(network.aliveSupernodeCount())) / 2 + 1
        #expect(Double(median) <= bound, "median hops \(median), bound \(bound)")
        // Every client found a supernode again.
        #expect(network.clients.allSatisfy { $0.session.isAttached })
    }
}
