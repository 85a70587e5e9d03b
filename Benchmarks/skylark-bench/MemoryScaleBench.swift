import ArgumentParser
import Foundation
import SkylarkNode
import SkylarkSimulation

/// What a node costs in each in-process harness, for the same network: `InMemoryLab` (real node
/// runtimes — reactor, link table, SecureLink encryption, state folders — on a virtual network)
/// against `SimulatedNetwork` (the overlay cores alone, routed by the simulation). Both build the
/// network, then run it idle with everyone attached for `--virtual` seconds; the figures are wall
/// seconds and resident memory growth. One harness per run; prints one table row:
/// | harness | supernodes + clients | build (wall s) | run (wall s per virtual s) | memory (MiB, per node) | This is why the 2,000-supernode overlay benchmark stays on the
/// cores-only simulation while behaviour tests run the real runtimes.
struct MemoryScaleBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory-scale", abstract: "Cost per node: real runtimes in memory against the cores-only simulation.")

    @Option(help: "Supernodes.") var supernodes = 10
    @Option(help: "Clients (each attaches and publishes its presence).") var clients = 50
    @Option(name: .customLong("virtual"), help: "Virtual seconds to run once everyone is attached.") var virtualSeconds = 60.0

    enum Harness: String, ExpressibleByArgument, CaseIterable {
        case lab, simulation
    }

    @Option(help: "Which harness to measure (one per process, so the memory figure is its own): lab or simulation.")
    var harness: Harness

    func run() throws {
        guard supernodes >= 1, clients >= 1, virtualSeconds > 0 else { throw ValidationError("need a supernode, a client and some time") }
        let memoryBefore = Memory.currentMiB()
        var started = Date()
        let build: Double
        let perVirtualSecond: Double
        switch harness {
        case .lab:
            let lab = try InMemoryLab(supernodes: supernodes)
            defer { lab.shutdown() }
            try lab.startSupernodes()
            try lab.startClients((0..<clients).map { "user\($0)" }) { "198.51.\(100 + $0 / 200).\(1 + $0 % 200)" }
            build = Date().timeIntervalSince(started)
            started = Date()
            lab.network.run(for: virtualSeconds)
            perVirtualSecond = Date().timeIntervalSince(started) / virtualSeconds
        case .simulation:
            var configuration = SimulatedNetwork.Configuration()
            configuration.supernodes = supernodes
            configuration.clients = clients
            let simulation = try SimulatedNetwork(configuration: configuration)
            try simulation.addSupernodes(supernodes)
            try simulation.addClients(clients)
            simulation.run(for: 5)
            build = Date().timeIntervalSince(started)
            started = Date()
            simulation.run(for: virtualSeconds)
            perVirtualSecond = Date().timeIntervalSince(started) / virtualSeconds
        }
        let memory = Memory.currentMiB() - memoryBefore
        let name = harness == .lab ? "InMemoryLab (real runtimes)" : "SimulatedNetwork (cores only)"
        print(
            "| \(name) | \(supernodes) + \(clients) | \(String(format: "%.2f", build)) | \(String(format: "%.4f", perVirtualSecond)) | \(String(format: "%.0f", memory)) (\(String(format: "%.3f", memory / Double(supernodes + clients)))) |"
        )
    }
}
