import Foundation
import SkylarkNode
import SkylarkOverlay
import SkylarkSimulation
import SkylarkWire
import Testing

/// The overlay at network scale with real node runtimes (`InMemoryLab`): searches across 20
/// supernodes' DHT, clients finding a new supernode when theirs crashes, and lookups while a fifth
/// of the supernodes churn. The reactor's own routing, reattach and bootstrap are under test here,
/// not a copy of them.
@Suite struct InMemoryOverlayTests {
    static let supernodes = 20
    static let clients = 60

    static func lab() throws -> (InMemoryLab, supernodes: [InMemoryNode], clients: [InMemoryNode]) {
        let lab = try InMemoryLab(supernodes: supernodes)
        let started = try lab.startSupernodes()
        let clients = try lab.startClients((0..<clients).map { "user\($0)" }) { "198.51.100.\(10 + $0)" }
        return (lab, started, clients)
    }

    static func search(_ name: String, from node: InMemoryNode) -> ControlResults.Search? {
        node.result(ControlResults.Search.self, ControlRequest(command: .search, name: name))
    }

    static func supernodeName(of node: InMemoryNode) -> String? {
        node.status()?.supernode?.split(separator: " ").first.map(String.init)
    }

    @Test(.timeLimit(.minutes(3)))
    func inMemorySearchFindsEveryOnlineUserAndNoOneElse() throws {
        let (lab, _, clients) = try Self.lab()
        defer { lab.shutdown() }
        var misses: [String] = []
        var hops: [Int] = []
        for target in clients.indices {
            let from = clients[(target * 7 + 3) % clients.count]
            guard let answer = Self.search("user\(target)", from: from), answer.found else {
                misses.append("user\(target)")
                continue
            }
            hops.append(answer.hops)
            #expect(answer.status == "online")
        }
        #expect(misses.isEmpty, "not found: \(misses)")
        #expect(hops.allSatisfy { $0 <= 6 }, "hops \(hops)")
        let nobody = try #require(Self.search("nobody-here", from: clients[0]))
        #expect(!nobody.found)
    }

    @Test(.timeLimit(.minutes(3)))
    func inMemoryClientsOfACrashedSupernodeComeBackAndAreFound() throws {
        let (lab, supernodes, clients) = try Self.lab()
        defer { lab.shutdown() }
        let victimName = try #require(Self.supernodeName(of: clients[1]))
        let victim = try #require(supernodes.first { $0.name == victimName })
        let orphans = clients.filter { Self.supernodeName(of: $0) == victimName }
        lab.network.kill(victim)
        // Each is attached to another supernode (and online) within 10 s and, once it has
        // published its presence again, is found by others.
        #expect(
            lab.network.run(within: 10) {
                orphans.allSatisfy { node in
                    let status = node.status()
                    return status?.presence == "online" && status?.supernode.map { !$0.hasPrefix(victimName + " ") } == true
                }
            })
        lab.network.run(for: 5)
        for orphan in orphans {
            let seeker = clients.first { $0 !== orphan }!
            #expect(Self.search(orphan.name, from: seeker)?.found == true, "\(orphan.name) not found after reattaching")
        }
    }

    @Test(.timeLimit(.minutes(5)))
    func inMemoryLookupsSucceedWhileAFifthOfTheSupernodesChurn() throws {
        let (lab, supernodes, clients) = try Self.lab()
        defer { lab.shutdown() }
        // 4 supernodes go (2 crash, 2 leave gracefully) and 4 new ones join, at random moments of a
        // 30 s window; 60 lookups evenly over the window and a 10 s tail.
        enum Step { case crash(Int), leave(Int), join(Int), lookup }
        var random = SplitMix64(seed: 17)
        func uniform() -> Double { Double(random.next() >> 11) / Double(1 << 53) }
        let begin = lab.network.now
        let window = 30.0
        let tail = 10.0
        let churned = Self.supernodes / 5
        var leaving = Array(supernodes.indices)
        leaving.shuffle(using: &random)
        var plan: [(time: Double, step: Step)] = []
        for (position, index) in leaving.prefix(churned).enumerated() {
            plan.append((begin + uniform() * window, position < churned / 2 ? .crash(index) : .leave(index)))
        }
        for index in 0..<churned { plan.append((begin + uniform() * window, .join(index))) }
        let lookups = 60
        for index in 0..<lookups { plan.append((begin + Double(index) * (window + tail) / Double(lookups), .lookup)) }
        plan = plan.enumerated().sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }.map(\.element)

        var issued = 0
        var found: [Int] = []
        var failed: [String] = []
        for (time, step) in plan {
            if time > lab.network.now { lab.network.run(for: time - lab.network.now) }
            switch step {
            case let .crash(index): lab.network.kill(supernodes[index])
            case let .leave(index): lab.network.stop(supernodes[index])
            case let .join(index): try lab.startExtraSupernode("joiner\(index)", address: "203.0.113.\(150 + index)")
            case .lookup:
                let from = clients[Int(random.next() % UInt64(clients.count))]
                var target = Int(random.next() % UInt64(clients.count))
                while clients[target] === from { target = Int(random.next() % UInt64(clients.count)) }
                issued += 1
                if let answer = Self.search("user\(target)", from: from), answer.found {
                    found.append(answer.hops)
                } else {
                    failed.append("\(from.name) -> user\(target) at +\(Int(lab.network.now - begin)) s")
                }
            }
        }
        #expect(issued == lookups)
        #expect(Double(found.count) / Double(issued) >= 0.95, "found \(found.count) of \(issued); failed: \(failed)")
        // Every client is attached to a supernode that is still up.
        #expect(
            lab.network.run(within: 20) {
                clients.allSatisfy { client in Self.supernodeName(of: client).flatMap { lab.network.node($0) } != nil }
            })
    }
}
