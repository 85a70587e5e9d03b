import ArgumentParser
import Foundation
import SkylarkOverlay
import SkylarkSimulation

/// The overlay cores (SupernodeCore with its Kademlia DHTCore, ClientSession) in the
/// deterministic simulated network: thousands of supernodes and clients on a virtual clock, with
/// latency, loss, NAT (clients reachable only through their supernode link) and supernode churn.
///
/// Phases: build (supernodes join one after another through random existing ones, then clients
/// attach and publish presence) and settle; A — stable: lookups of random online users from
/// random attached clients; B — churn: over a window of virtual time a fraction of the
/// supernodes crash or leave gracefully and as many new ones join, at random moments, while
/// lookups go on through the window and for a tail after it. Hops and latency are those the
/// cores report (`SearchAnswer.hops`: Kademlia rounds to the replica that answered) and the
/// virtual time from the client's search to its answer.
struct OverlayBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overlay",
        abstract: "Lookup hops, latency and success of the overlay cores in the simulated network, stable and under churn.")

    @Option(help: "Supernodes at the start.") var supernodes = 2000
    @Option(help: "Clients (each attaches to a random supernode and publishes its presence).") var clients = 20000
    @Option(help: "Lookups per phase (stable, churn).") var lookups = 5000
    @Option(help: "Fraction of the supernodes that leave during the churn window; as many new ones join.") var churn = 0.2
    @Option(help: "Share of the leaving supernodes that crash (the rest leave gracefully).") var crashShare = 0.5
    @Option(help: "Probability a message is lost once (costs a TCP retransmission).") var loss = 0.01
    @Option(help: "Seed of the run (the network and the workload).") var seed: UInt64 = 1
    @Option(help: "Virtual seconds of the churn window.") var churnWindow = 120.0
    @Option(help: "Virtual seconds lookups go on after the churn window.") var tail = 30.0
    @Option(help: "Lookups per virtual second in the stable phase.") var rate = 100.0
    @Option(help: "Virtual seconds to let the network settle after it is built.") var settle = 30.0
    @Option(help: "Virtual seconds between supernode joins while building.") var joinSpacing = 0.05
    @Option(help: "Virtual seconds between client attaches while building.") var attachSpacing = 0.0025
    @Option(help: "RSA key size of the simulated login server (signs every credential).") var rsaBits = 2048
    @Flag(help: "Print the report as one JSON object on stdout (progress still goes to stderr).") var json = false
    @Option(help: "Also write the JSON report to this file.") var jsonFile: String?

    func validate() throws {
        guard supernodes >= 4, clients >= 2, lookups >= 1 else { throw ValidationError("need at least 4 supernodes, 2 clients and 1 lookup") }
        guard (0...0.9).contains(churn), (0...1).contains(crashShare), (0..<1).contains(loss) else {
            throw ValidationError("churn, crash-share or loss out of range")
        }
        guard churnWindow > 0, tail >= 0, rate > 0, settle >= 0 else { throw ValidationError("times and rates must be positive") }
    }

    func run() throws {
        let started = Date()
        var configuration = SimulatedNetwork.Configuration()
        configuration.supernodes = supernodes
        configuration.clients = clients
        configuration.lossRate = loss
        configuration.seed = seed
        configuration.rsaBits = rsaBits
        let network = try SimulatedNetwork(configuration: configuration)
        let origin = network.now
        var workload = SplitMix64(seed: seed ^ 0x0BE4_C4A1_1000_0001)

        // Build: supernodes, then clients, in chunks so progress can be shown.
        progress("building: \(supernodes) supernodes (join spacing \(joinSpacing) s virtual)")
        let chunk = max(1, supernodes / 20)
        var built = 0
        while built < supernodes {
            let count = min(chunk, supernodes - built)
            try network.addSupernodes(count, spacing: joinSpacing)
            built += count
            progress(
                "  supernodes \(built)/\(supernodes)  wall \(format(Date().timeIntervalSince(started), 1)) s  virtual +\(format(network.now - origin, 1)) s  messages \(network.messagesDelivered)"
            )
        }
        progress("building: \(clients) clients (attach spacing \(attachSpacing) s virtual)")
        let clientChunk = max(1, clients / 20)
        var attached = 0
        while attached < clients {
            let count = min(clientChunk, clients - attached)
            try network.addClients(count, spacing: attachSpacing)
            attached += count
            progress(
                "  clients \(attached)/\(clients)  wall \(format(Date().timeIntervalSince(started), 1)) s  messages \(network.messagesDelivered)  rss \(format(Memory.currentMiB(), 0)) MiB"
            )
        }
        network.run(for: settle)
        let buildWall = Date().timeIntervalSince(started)
        let build = BuildReport(
            supernodes: network.aliveSupernodeCount(), clients: network.clients.count,
            attachedClients: Self.attachedCount(network), virtualSeconds: network.now - origin,
            messagesDelivered: network.messagesDelivered, wallSeconds: buildWall, peakRSSMiB: Memory.peakMiB())
        progress("built in \(format(buildWall, 1)) s wall; \(build.attachedClients) of \(build.clients) clients attached")

        // Phase A: stable.
        var phases: [PhaseReport] = []
        do {
            let phaseStart = Date()
            let messagesBefore = network.messagesDelivered
            network.clearSearches()
            let begin = network.now
            var issued = 0
            for index in 0..<lookups {
                network.run(until: begin + Double(index) / rate)
                if issueLookup(network, &workload) { issued += 1 }
            }
            network.run(for: Self.drainTime)
            let live = network.aliveSupernodeCount()
            phases.append(
                PhaseReport(
                    name: "A stable", issued: issued, records: network.searches, live: live, liveRange: live...live,
                    messages: network.messagesDelivered - messagesBefore, virtualSeconds: network.now - begin,
                    wallSeconds: Date().timeIntervalSince(phaseStart)))
            progress("phase A: \(phases.last!.summary)")
        }

        // Phase B: churn.
        do {
            let phaseStart = Date()
            let messagesBefore = network.messagesDelivered
            network.clearSearches()
            let begin = network.now
            let churnEnd = begin + churnWindow
            let churned = Int((Double(supernodes) * churn).rounded())
            var candidates = network.supernodes.indices.filter { network.supernodes[$0].alive }
            candidates.shuffle(using: &workload)
            var plan: [(time: Double, step: Step)] = []
            for (position, index) in candidates.prefix(churned).enumerated() {
                let crash = Double(position) < Double(churned) * crashShare
                plan.append((begin + uniform(&workload) * churnWindow, crash ? .crash(index) : .leave(index)))
            }
            for _ in 0..<churned { plan.append((begin + uniform(&workload) * churnWindow, .join)) }
            for index in 0..<lookups { plan.append((begin + Double(index) * (churnWindow + tail) / Double(lookups), .lookup)) }
            // Stable sort by time: ties keep the plan order, so a run is reproducible.
            plan = plan.enumerated().sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }.map(\.element)

            var issuedDuring = 0
            var issuedAfter = 0
            var live = network.aliveSupernodeCount()
            var lowest = live
            var highest = live
            var crashes = 0
            var leaves = 0
            var joins = 0
            var nextReport = begin + churnWindow / 10
            for (time, step) in plan {
                network.run(until: time)
                switch step {
                case let .crash(index):
                    network.crash(supernode: index)
                    live -= 1
                    crashes += 1
                case let .leave(index):
                    network.leave(supernode: index)
                    live -= 1
                    leaves += 1
                case .join:
                    try network.addSupernodes(1, spacing: 0)
                    live += 1
                    joins += 1
                case .lookup:
                    if issueLookup(network, &workload) {
                        if network.now < churnEnd { issuedDuring += 1 } else { issuedAfter += 1 }
                    }
                }
                lowest = min(lowest, live)
                highest = max(highest, live)
                if time >= nextReport {
                    nextReport += churnWindow / 10
                    progress(
                        "  churn +\(format(time - begin, 0)) s virtual: \(crashes) crashed, \(leaves) left, \(joins) joined, \(live) live; \(network.searches.count) lookups answered; wall \(format(Date().timeIntervalSince(started), 1)) s; rss \(format(Memory.currentMiB(), 0)) MiB"
                    )
                }
            }
            network.run(for: Self.drainTime)
            let records = network.searches
            let messages = network.messagesDelivered - messagesBefore
            let wall = Date().timeIntervalSince(phaseStart)
            let virtual = network.now - begin
            let during = records.filter { $0.startedAt < churnEnd }
            let after = records.filter { $0.startedAt >= churnEnd }
            phases.append(
                PhaseReport(
                    name: "B churn (all)", issued: issuedDuring + issuedAfter, records: records, live: live, liveRange: lowest...highest,
                    messages: messages, virtualSeconds: virtual, wallSeconds: wall))
            phases.append(
                PhaseReport(
                    name: "B1 during window", issued: issuedDuring, records: during, live: live, liveRange: lowest...highest,
                    messages: nil, virtualSeconds: nil, wallSeconds: nil))
            phases.append(
                PhaseReport(
                    name: "B2 after window", issued: issuedAfter, records: after, live: live, liveRange: live...live,
                    messages: nil, virtualSeconds: nil, wallSeconds: nil))
            progress("phase B: \(crashes) crashed, \(leaves) left, \(joins) joined; \(phases[1].summary)")
        }

        let report = Report(
            supernodes: supernodes, clients: clients, lookupsPerPhase: lookups, churn: churn, crashShare: crashShare,
            lossRate: loss, seed: seed, churnWindowSeconds: churnWindow, tailSeconds: tail,
            attachedClientsAtEnd: Self.attachedCount(network), build: build, phases: phases,
            wallSeconds: Date().timeIntervalSince(started), peakRSSMiB: Memory.peakMiB(),
            cores: ProcessInfo.processInfo.activeProcessorCount,
            deterministicHashing: ProcessInfo.processInfo.environment["SWIFT_DETERMINISTIC_HASHING"] != nil)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let encoded = try encoder.encode(report)
        if let jsonFile { try encoded.write(to: URL(fileURLWithPath: jsonFile)) }
        if json {
            print(String(decoding: encoded, as: UTF8.self))
        } else {
            print(report.table)
        }
    }

    private enum Step {
        case crash(Int)
        case leave(Int)
        case join
        case lookup
    }

    /// Long enough for every lookup to answer or time out (the session gives up after 15 s).
    static let drainTime = 20.0

    /// A lookup of a random user from a random attached client (another one). Returns
    /// false if no attached searcher was found.
    private func issueLookup(_ network: SimulatedNetwork, _ random: inout SplitMix64) -> Bool {
        let count = network.clients.count
        for _ in 0..<1000 {
            let from = Int(random.next() % UInt64(count))
            guard network.clients[from].session.isAttached else { continue }
            var target = Int(random.next() % UInt64(count))
            while target == from { target = Int(random.next() % UInt64(count)) }
            network.search(from: from, for: network.clients[target].session.name)
            return true
        }
        return false
    }

    static func attachedCount(_ network: SimulatedNetwork) -> Int {
        network.clients.reduce(0) { $0 + ($1.session.isAttached ? 1 : 0) }
    }

    private func uniform(_ random: inout SplitMix64) -> Double { Double(random.next() >> 11) / Double(1 << 53) }

    private func progress(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

private func format(_ value: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", value) }

// MARK: - Report

struct BuildReport: Codable {
    var supernodes: Int
    var clients: Int
    var attachedClients: Int
    var virtualSeconds: Double
    var messagesDelivered: Int
    var wallSeconds: Double
    var peakRSSMiB: Double
}

struct PhaseReport: Codable {
    var name: String
    /// Lookups started (from attached clients).
    var lookups: Int
    /// Answered by the searcher's supernode (found or not, or given up by the session).
    var answered: Int
    var found: Int
    /// Never answered: the searcher's link dropped (its supernode crashed or left) mid-lookup.
    var lost: Int
    /// found / lookups, in per cent.
    var successPercent: Double
    /// Over successful lookups.
    var hopsMedian: Int
    var hopsP90: Int
    var hopsP99: Int
    var hopsMax: Int
    /// Successful lookups by hop count: element i counts lookups of i hops.
    var hopsHistogram: [Int]
    var latencyMedianSeconds: Double
    var latencyP99Seconds: Double
    var liveSupernodes: Int
    var liveSupernodesMin: Int
    var liveSupernodesMax: Int
    var log2N: Double
    var halfLog2N: Double
    var messagesDelivered: Int?
    var virtualSeconds: Double?
    var wallSeconds: Double?
    var peakRSSMiB: Double

    init(
        name: String, issued: Int, records: [SimulatedNetwork.SearchRecord], live: Int, liveRange: ClosedRange<Int>,
        messages: Int?, virtualSeconds: Double?, wallSeconds: Double?
    ) {
        self.name = name
        lookups = issued
        answered = records.count
        let successes = records.filter(\.found)
        found = successes.count
        lost = max(0, issued - records.count)
        successPercent = issued == 0 ? 0 : 100 * Double(found) / Double(issued)
        let hops = successes.map(\.hops).sorted()
        hopsMedian = percentile(hops, 0.5) ?? 0
        hopsP90 = percentile(hops, 0.9) ?? 0
        hopsP99 = percentile(hops, 0.99) ?? 0
        hopsMax = hops.last ?? 0
        hopsHistogram = (0...(hops.last ?? 0)).map { value in hops.count(where: { $0 == value }) }
        let latencies = successes.map(\.latency).sorted()
        latencyMedianSeconds = percentile(latencies, 0.5) ?? 0
        latencyP99Seconds = percentile(latencies, 0.99) ?? 0
        liveSupernodes = live
        liveSupernodesMin = liveRange.lowerBound
        liveSupernodesMax = liveRange.upperBound
        log2N = log2(Double(live))
        halfLog2N = log2N / 2
        messagesDelivered = messages
        self.virtualSeconds = virtualSeconds
        self.wallSeconds = wallSeconds
        peakRSSMiB = Memory.peakMiB()
    }

    var summary: String {
        "\(lookups) lookups, \(format(successPercent, 2)) % found, \(lost) lost, hops median \(hopsMedian) p99 \(hopsP99), latency median \(format(latencyMedianSeconds * 1000, 0)) ms"
    }
}

/// Nearest-rank percentile of sorted values.
func percentile<T>(_ sorted: [T], _ p: Double) -> T? {
    guard !sorted.isEmpty else { return nil }
    let rank = Int((p * Double(sorted.count)).rounded(.up))
    return sorted[min(max(rank, 1), sorted.count) - 1]
}

struct Report: Codable {
    var supernodes: Int
    var clients: Int
    var lookupsPerPhase: Int
    var churn: Double
    var crashShare: Double
    var lossRate: Double
    var seed: UInt64
    var churnWindowSeconds: Double
    var tailSeconds: Double
    var attachedClientsAtEnd: Int
    var build: BuildReport
    var phases: [PhaseReport]
    var wallSeconds: Double
    var peakRSSMiB: Double
    var cores: Int
    /// Whether SWIFT_DETERMINISTIC_HASHING was set: only then is a rerun with the same seed identical
    /// (dictionary order in the cores decides the order of some messages).
    var deterministicHashing: Bool

    var table: String {
        var lines: [String] = []
        lines.append(
            "overlay simulation: \(supernodes) supernodes, \(clients) clients, \(lookupsPerPhase) lookups per phase, churn \(format(churn * 100, 0)) % "
                + "(\(format(crashShare * 100, 0)) % crash) over \(format(churnWindowSeconds, 0)) s + \(format(tailSeconds, 0)) s tail, loss \(format(lossRate * 100, 1)) %, seed \(seed), \(cores) cores"
        )
        lines.append(
            "build: \(build.supernodes) supernodes, \(build.attachedClients)/\(build.clients) clients attached, \(build.messagesDelivered) messages, "
                + "\(format(build.virtualSeconds, 0)) s virtual, \(format(build.wallSeconds, 1)) s wall")
        lines.append("")
        lines.append(
            "| phase | lookups | found | lost | success | hops med/p90/p99/max | latency med / p99 | N live (min–max) | log2 N | log2 N / 2 | messages | virtual s | wall s |"
        )
        lines.append("|---|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|---:|")
        for phase in phases {
            let range =
                phase.liveSupernodesMin == phase.liveSupernodesMax
                ? "\(phase.liveSupernodes)"
                : "\(phase.liveSupernodes) (\(phase.liveSupernodesMin)–\(phase.liveSupernodesMax))"
            lines.append(
                "| \(phase.name) | \(phase.lookups) | \(phase.found) | \(phase.lost) | \(format(phase.successPercent, 2)) % | "
                    + "\(phase.hopsMedian) / \(phase.hopsP90) / \(phase.hopsP99) / \(phase.hopsMax) | "
                    + "\(format(phase.latencyMedianSeconds * 1000, 0)) ms / \(format(phase.latencyP99Seconds * 1000, 0)) ms | \(range) | "
                    + "\(format(phase.log2N, 2)) | \(format(phase.halfLog2N, 2)) | \(phase.messagesDelivered.map(String.init) ?? "") | "
                    + "\(phase.virtualSeconds.map { format($0, 0) } ?? "") | \(phase.wallSeconds.map { format($0, 1) } ?? "") |")
        }
        lines.append("")
        for phase in phases {
            let histogram = phase.hopsHistogram.enumerated().filter { $0.element > 0 }.map { "\($0.offset): \($0.element)" }.joined(separator: ", ")
            lines.append("hops of successful lookups, \(phase.name): \(histogram)")
        }
        lines.append("")
        lines.append(
            "clients attached at the end: \(attachedClientsAtEnd)/\(clients); wall clock \(format(wallSeconds, 1)) s; peak RSS (VmHWM) \(format(peakRSSMiB, 0)) MiB; "
                + (deterministicHashing
                    ? "SWIFT_DETERMINISTIC_HASHING set (reproducible)" : "SWIFT_DETERMINISTIC_HASHING not set (dictionary order varies between runs)"))
        return lines.joined(separator: "\n")
    }
}

enum Memory {
    /// Peak resident set (VmHWM) of this process, MiB.
    static func peakMiB() -> Double { field("VmHWM:") }
    /// Current resident set (VmRSS), MiB.
    static func currentMiB() -> Double { field("VmRSS:") }

    private static func field(_ name: String) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }),
            let kilobytes = Double(line.dropFirst(name.count).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "")
        else { return 0 }
        return kilobytes / 1024
    }
}
