import SkylarkTestSupport
import Testing

@testable import SkylarkMedia

/// Drives a `JitterBuffer` with a simulated network: packet n is sent at n × 20 ms and arrives
/// at `arrival(n)` (nil = lost); the adapter ticks every 20 ms starting at `tickPhase`.
/// Arrivals and ticks are processed in time order (an arrival at the same instant first).
struct JitterSimulation {
    var buffer = JitterBuffer()
    var firstSequence: UInt16 = 1_000
    var firstTimestamp: UInt32 = 123_456
    var tickPhase = 0.007
    var insertions: [(n: Int, result: JitterBuffer.Insertion)] = []
    var playouts: [JitterBuffer.Playout?] = []

    static func payload(_ n: Int) -> [UInt8] { [UInt8(truncatingIfNeeded: n), UInt8(truncatingIfNeeded: n >> 8), UInt8(truncatingIfNeeded: n >> 16), 0xA5] }
    static func number(_ payload: [UInt8]) -> Int { Int(payload[0]) | Int(payload[1]) << 8 | Int(payload[2]) << 16 }

    /// Runs arrivals (time, packet number) and ticks up to `until` seconds.
    mutating func run(_ arrivals: [(time: Double, n: Int)], from start: Double = 0, until end: Double) {
        var pending = arrivals.sorted { $0.time < $1.time }[...]
        var tick = (((start - tickPhase) / 0.020).rounded(.up)) * 0.020 + tickPhase
        while tick < end {
            while let next = pending.first, next.time <= tick {
                pending.removeFirst()
                deliver(next.n, at: next.time)
            }
            playouts.append(buffer.next(now: tick))
            tick += 0.020
        }
        for arrival in pending where arrival.time < end { deliver(arrival.n, at: arrival.time) }
    }

    mutating func deliver(_ n: Int, at time: Double) {
        let result = buffer.insert(
            sequence: UInt16(truncatingIfNeeded: Int(firstSequence) + n),
            timestamp: UInt32(truncatingIfNeeded: Int(firstTimestamp) + n * 960),
            payload: Self.payload(n), arrival: time)
        insertions.append((n, result))
    }

    /// Playouts as readable tokens: "n" for a frame, "fec n" for FEC from packet n, "plc", "-" for nil.
    var tokens: [String] {
        playouts.map { playout in
            switch playout {
            case nil: return "-"
            case let .frame(payload)?: return "\(Self.number(payload))"
            case let .fec(payload)?: return "fec \(Self.number(payload))"
            case .conceal?: return "plc"
            }
        }
    }

    /// Slots played from FEC or concealment before the last frame (what follows the end of a
    /// stream is not loss).
    var gapsBeforeEnd: Int {
        let tokens = self.tokens
        guard let last = tokens.lastIndex(where: { Int($0) != nil }) else { return 0 }
        return tokens[..<last].filter { $0 == "plc" || $0.hasPrefix("fec") }.count
    }

    /// The packet numbers played as frames, in order.
    var framesPlayed: [Int] {
        playouts.compactMap { if case let .frame(payload)? = $0 { return Self.number(payload) } else { return nil } }
    }
}

/// Steady arrivals: packet n at n × 20 ms + `latency`.
func steady(_ range: Range<Int>, latency: Double = 0.030) -> [(time: Double, n: Int)] {
    range.map { (Double($0) * 0.020 + latency, $0) }
}

@Suite("Jitter buffer")
struct JitterBufferTests {
    @Test("Nothing to play before the first packet, then buffering, then every frame in order")
    func inOrder() {
        var simulation = JitterSimulation()
        #expect(simulation.buffer.next(now: 0) == nil)
        simulation.run(steady(0..<100), until: 2.06)
        let tokens = simulation.tokens
        let firstPlayed = tokens.firstIndex { $0 != "-" } ?? 0
        #expect(firstPlayed >= 1 && firstPlayed <= 3, "\(tokens.prefix(5))")
        #expect(simulation.framesPlayed == Array(0..<100))
        let stats = simulation.buffer.statistics
        #expect(stats.received == 100)
        #expect(stats.lost == 0 && stats.late == 0 && stats.duplicates == 0 && stats.discarded == 0 && stats.concealed == 0)
        #expect(stats.jitterMs < 0.01)
        #expect(abs(stats.targetDelayMs - 20) < 0.001)
        #expect(stats.currentDelayMs >= 19.9 && stats.currentDelayMs < 45, "\(stats.currentDelayMs)")
    }

    @Test("Reordered packets are played in sequence order")
    func reordered() {
        var simulation = JitterSimulation()
        var arrivals = steady(0..<60)
        // Packets 10, 25 and 40 each arrive 12 ms late, after their successor.
        for n in [10, 25, 40] { arrivals[n].time += 0.012 }
        simulation.run(arrivals, until: 1.3)
        #expect(simulation.framesPlayed == Array(0..<60))
        #expect(simulation.gapsBeforeEnd == 0)
        #expect(simulation.buffer.statistics.late == 0)
    }

    @Test("A lost packet is rebuilt from its successor's FEC; two in a row: concealment, then FEC")
    func loss() {
        var simulation = JitterSimulation()
        let arrivals = steady(0..<60).filter { ![20, 30, 31].contains($0.n) }
        simulation.run(arrivals, until: 1.25)
        let played = simulation.tokens.filter { $0 != "-" }
        #expect(
            Array(played.prefix(60))
                == (0..<60).map { n -> String in
                    switch n {
                    case 20: return "fec 21"
                    case 30: return "plc"
                    case 31: return "fec 32"
                    default: return "\(n)"
                    }
                })
        let stats = simulation.buffer.statistics
        #expect(stats.lost == 3)
        #expect(stats.recoveredByFEC == 2)
        #expect(stats.concealed == 1)
    }

    @Test("Duplicates are dropped, whether still buffered or already played")
    func duplicates() {
        var simulation = JitterSimulation()
        var arrivals = steady(0..<40)
        arrivals.append((arrivals[5].time + 0.003, 5))  // while still buffered
        arrivals.append((arrivals[30].time, 2))  // long after it was played
        simulation.run(arrivals, until: 0.9)
        #expect(simulation.framesPlayed == Array(0..<40))
        #expect(simulation.insertions.filter { $0.result == .duplicate }.count == 2)
        #expect(simulation.buffer.statistics.duplicates == 2)
        #expect(simulation.buffer.statistics.received == 40)
    }

    @Test("A late packet is dropped, and the delay grows at once to cover it")
    func latePacket() {
        var simulation = JitterSimulation()
        var arrivals = steady(0..<150)
        arrivals[40].time += 0.100
        simulation.run(arrivals, until: 1.3)
        #expect(simulation.insertions.first { $0.n == 40 }?.result == .late)
        let stats = simulation.buffer.statistics
        #expect(stats.late == 1)
        #expect(stats.lost == 1)
        #expect(stats.recoveredByFEC == 1)  // slot 40 was played from 41's FEC
        // The target jumped to cover the 100 ms excess, and the buffer stretched (concealment
        // without consuming slots) to reach it.
        #expect(stats.targetDelayMs > 100, "\(stats)")
        // Stretching stops within a frame of the target: 3 frames of concealment for 80 ms more.
        #expect(stats.concealed >= 3, "\(stats)")
        #expect(stats.currentDelayMs > 90, "\(stats)")
        #expect(simulation.framesPlayed == Array(0..<40) + Array(41..<simulation.framesPlayed.last! + 1))
        // Later the target shrinks and the buffer skips a frame now and then to follow it;
        // nothing else goes missing.
        simulation.run(arrivals.filter { $0.time >= 1.3 }, from: 1.3, until: 3.1)
        let later = simulation.buffer.statistics
        #expect(later.targetDelayMs < stats.targetDelayMs)
        let played = simulation.framesPlayed
        #expect(played == played.sorted())
        #expect(Set(0..<played.last!).subtracting(played).count == 1 + later.discarded)
    }

    @Test("Sequence numbers and timestamps wrap around without a glitch")
    func wrapAround() {
        var simulation = JitterSimulation()
        simulation.firstSequence = 65_500
        simulation.firstTimestamp = UInt32.max - 960 * 50
        simulation.run(steady(0..<200), until: 4.06)
        #expect(simulation.framesPlayed == Array(0..<200))
        let stats = simulation.buffer.statistics
        #expect(stats.lost == 0 && stats.late == 0 && stats.discarded == 0)
    }

    @Test("The delay adapts up under jitter, then back down slowly when the path calms")
    func adaptation() {
        var simulation = JitterSimulation()
        var random = SeededGenerator(seed: 2024)
        // 12 s with 0-80 ms of uniform jitter, then 30 s with none.
        let jittery = (0..<600).map { n in (time: Double(n) * 0.020 + 0.030 + Double.random(in: 0...0.080, using: &random), n: n) }
        simulation.run(jittery, until: 12.0)
        let loud = simulation.buffer.statistics
        #expect(loud.jitterMs > 15, "\(loud)")
        #expect(loud.targetDelayMs > 60, "\(loud)")
        #expect(loud.currentDelayMs > 50, "\(loud)")
        let lateAfterAdapting = loud.late
        simulation.run(jittery.filter { $0.time >= 12.0 } + steady(600..<2_100), from: 12.0, until: 42.0)
        let calm = simulation.buffer.statistics
        #expect(calm.jitterMs < 1, "\(calm)")
        #expect(calm.targetDelayMs < 30, "\(calm)")
        // The delay settles inside the band: at most 2.5 frames (50 ms) above the target.
        #expect(calm.currentDelayMs < calm.targetDelayMs + 50 + 1, "\(calm)")
        #expect(calm.currentDelayMs < loud.currentDelayMs, "\(calm)")
        // Shrinking is done by skipping frames, a few at a time, never by losing them.
        #expect(calm.late == lateAfterAdapting)
        #expect(calm.discarded > 0)
        // Overall, most of the jittery packets were in time.
        #expect(Double(loud.late) / 600 < 0.10, "\(loud)")
    }

    @Test("One stray packet far ahead is ignored; a confirmed jump restarts the stream")
    func discontinuity() throws {
        var simulation = JitterSimulation()
        simulation.run(steady(0..<20), until: 0.415)
        simulation.deliver(5_000, at: 0.415)
        #expect(simulation.insertions.last?.result == .discontinuity)
        simulation.run(steady(20..<30), from: 0.415, until: 0.65)
        // The sender restarts with new numbers: two packets confirm it.
        simulation.deliver(9_000, at: 0.65)
        simulation.deliver(9_001, at: 0.66)
        #expect(simulation.insertions.suffix(2).map(\.result) == [.discontinuity, .restarted])
        simulation.run(steady(9_002..<9_010, latency: 0.030 - 8_970 * 0.020), from: 0.66, until: 0.9)
        let played = simulation.framesPlayed
        let restart = try #require(played.firstIndex(of: 9_000))
        #expect(Array(played[restart...]) == Array(9_000..<(9_000 + played.count - restart)))
        #expect(played.count - restart >= 8)
        #expect(Array(played[..<restart]) == Array(0..<30))
        #expect(simulation.gapsBeforeEnd == 0)
    }

    @Test("After a long silence the buffer stops concealing and buffers afresh")
    func outage() {
        var simulation = JitterSimulation()
        simulation.run(steady(0..<20) + steady(100..<120), until: 2.5)
        let tokens = simulation.tokens
        // At most 0.5 s of concealment, then nil until the stream returns, then frames again.
        let silence = tokens[tokens.firstIndex(of: "19")!..<tokens.firstIndex(of: "100")!]
        #expect(silence.filter { $0 == "plc" }.count == 25)
        #expect(silence.suffix(10).allSatisfy { $0 == "-" })
        #expect(simulation.framesPlayed == Array(0..<20) + Array(100..<120))
    }

    @Test("60 ms packets (an adapting sender's) play one a pull, a lost one from FEC, none late or stretched")
    func sixtyMillisecondPackets() {
        var buffer = JitterBuffer()
        var played: [String] = []
        // Packet n carries 60 ms from n × 60 ms and arrives 30 ± 10 ms later; packet 20 is lost.
        // Playout pulls one packet's worth every 60 ms (it has three frames to play from each).
        var next = 0
        var now = 0.005
        while now < 6 {
            while next < 100, Double(next) * 0.060 + 0.030 + (next % 2 == 0 ? 0.010 : -0.010) <= now {
                if next != 20 {
                    buffer.insert(sequence: UInt16(next), timestamp: UInt32(next * 2_880), payload: [UInt8(next)], arrival: now)
                }
                next += 1
            }
            switch buffer.next(now: now) {
            case let .frame(payload)?: played.append("\(payload[0])")
            case let .fec(payload)?: played.append("fec \(payload[0])")
            case .conceal?: played.append("plc")
            case nil: played.append("-")
            }
            now += 0.060
        }
        let heard = played.drop { $0 == "-" }
        #expect(Array(heard.prefix(22)) == (0..<20).map { "\($0)" } + ["fec 21", "21"], "\(played)")
        #expect(buffer.statistics.late == 0)
        #expect(buffer.statistics.discarded == 0)
        #expect(buffer.statistics.concealed == 0, "a 60 ms stream placed as if 20 ms would look late and be stretched or skipped")
    }

    @Test("A pause the sender does not number (DTX) is concealed, and the next talk spurt plays whole, none of it late")
    func talkSpurtAfterAnUnnumberedPause() {
        var buffer = JitterBuffer()
        var played: [Int] = []
        // Packets 0-19 cover 0-0.4 s; the sender is silent until 1.4 s, then sends packets 20-39
        // (the next numbers) with media time from 1.4 s. Each arrives 30 ms after it is due.
        func mediaTime(_ n: Int) -> Double { n < 20 ? Double(n) * 0.02 : 1.4 + Double(n - 20) * 0.02 }
        var next = 0
        var now = 0.005
        while now < 2.5 {
            while next < 40, mediaTime(next) + 0.030 <= now {
                buffer.insert(sequence: UInt16(next), timestamp: UInt32((mediaTime(next) * 48_000).rounded()), payload: [UInt8(next)], arrival: now)
                next += 1
            }
            if case let .frame(payload)? = buffer.next(now: now) { played.append(Int(payload[0])) }
            now += 0.020
        }
        #expect(played == Array(0..<40), "\(played)")
        #expect(buffer.statistics.late == 0)
    }
}
