import Testing

@testable import SkylarkMedia

/// Receiver reports, the bitrate controller, and two calls' media adapting to a narrow path on
/// a virtual clock.
@Suite struct AdaptationTests {
    // MARK: - Reports

    @Test func aReportSurvivesTheWireAndMalformedOnesAreRefused() throws {
        let report = ReceiverReport(
            highestSequence: 0x1_0005, packetsReceived: 4_000_000_000, bytesReceived: 77, jitterMicroseconds: 12_345, sentAtMilliseconds: 99,
            echoMilliseconds: 42, heldMilliseconds: 7)
        let bytes = report.encoded()
        #expect(bytes.count == ReceiverReport.byteCount)
        #expect(try ReceiverReport(decoding: bytes) == report)
        #expect(throws: ReceiverReport.DecodingError.wrongLength(ReceiverReport.byteCount - 1)) { try ReceiverReport(decoding: Array(bytes.dropLast())) }
        var future = bytes
        future[0] = 2
        #expect(throws: ReceiverReport.DecodingError.unsupportedVersion(2)) { try ReceiverReport(decoding: future) }
    }

    @Test func receptionCountsLossBySequenceNumberAcrossTheWrap() {
        var reception = ReceptionTracker()
        #expect(reception.lossPercent == nil)
        for sequence: UInt16 in [65_534, 65_535, 1, 2, 0] { reception.record(sequence: sequence, bytes: 100) }
        reception.record(sequence: 5, bytes: 100)
        // 65 534 … 5 is eight packets; 3 and 4 never came.
        #expect(reception.packetsLost == 2)
        #expect(reception.lossPercent == 25)
        #expect(reception.bytesReceived == 600)
    }

    // MARK: - The controller

    /// Reports once a second as a far end would write them: `delivered` of the packets sent
    /// arrive, each `bytes` long; the round trip is `rtt`.
    struct FarEnd {
        var highest: UInt32 = 1_000
        var received: UInt32 = 0
        var bytes: UInt32 = 0
        var clock = 5_000.0

        mutating func report(
            after seconds: Double, sent: Int, delivered: Double, bytes packetBytes: Int, rtt: Double, queueing: Double = 0, jitter: Double = 0.001,
            now: Double
        ) -> ReceiverReport {
            highest &+= UInt32(sent)
            let arrived = UInt32((Double(sent) * delivered).rounded())
            received &+= arrived
            bytes &+= arrived * UInt32(packetBytes)
            clock += seconds
            // Our report went out rtt plus the 10 ms the far end held it before now.
            return ReceiverReport(
                highestSequence: highest, packetsReceived: received, bytesReceived: bytes, jitterMicroseconds: UInt32(jitter * 1e6),
                sentAtMilliseconds: ReceiverReport.milliseconds(clock), echoMilliseconds: ReceiverReport.milliseconds(now - rtt - 0.010),
                heldMilliseconds: 10, queueingMicroseconds: UInt32(queueing * 1e6))
        }
    }

    @Test func aCleanPathClimbsToTheMaximumInTwentyMillisecondPackets() {
        var controller = BitrateController()
        var far = FarEnd()
        #expect(controller.setting.reason == .start)
        for second in 1...20 {
            controller.handle(far.report(after: 1, sent: 50, delivered: 1, bytes: 120, rtt: 0.040, now: Double(second)), now: Double(second))
        }
        #expect(controller.setting.bitrate == 64_000)
        #expect(controller.setting.framesPerPacket == 1)
        #expect(controller.setting.reason == .clearPath)
        #expect(controller.setting.expectedLossPercent == 0, "no loss measured, no FEC bits spent")
        #expect(abs((controller.roundTripTime ?? 0) - 0.040) < 0.002, "RTT from the echo: \(controller.roundTripTime ?? -1)")
    }

    @Test func aBottleneckIsMetInOneStepWithLongerPackets() {
        var controller = BitrateController()
        var far = FarEnd()
        controller.handle(far.report(after: 1, sent: 50, delivered: 1, bytes: 120, rtt: 0.040, now: 1), now: 1)
        // 32 kb/s of Opus in 20 ms packets is 54.4 kb/s on the wire; a 24 kb/s link lets 40 % through,
        // after a queue.
        controller.handle(far.report(after: 1, sent: 50, delivered: 0.4, bytes: 96, rtt: 0.300, queueing: 0.3, now: 2), now: 2)
        let setting = controller.setting
        #expect(setting.framesPerPacket == 3, "60 ms packets: \(setting)")
        #expect(setting.bitrate <= 14_000 && setting.bitrate >= 12_000, "\(setting)")
        #expect(controller.wireRate(setting) < 24_000 * 0.9)
        guard case .throughput = setting.reason else {
            Issue.record("driven by what the far end received: \(setting.reason)")
            return
        }
        #expect(setting.expectedLossPercent >= 20, "FEC follows the loss measured: \(setting.expectedLossPercent) %")
        // The next report still covers time at the old rate: no second cut from it.
        controller.handle(far.report(after: 1, sent: 25, delivered: 0.7, bytes: 80, rtt: 0.300, now: 3), now: 3)
        #expect(controller.setting.bitrate == setting.bitrate)
    }

    @Test func randomLossWithoutAQueueIsNotCongestion() {
        var controller = BitrateController()
        var far = FarEnd()
        controller.handle(far.report(after: 1, sent: 50, delivered: 1, bytes: 120, rtt: 0.040, now: 1), now: 1)
        // 12 % lost at random (a lossy radio link), nothing queued: a mild cut, still 20 ms packets.
        controller.handle(far.report(after: 1, sent: 50, delivered: 0.88, bytes: 120, rtt: 0.040, now: 2), now: 2)
        #expect(controller.setting.framesPerPacket == 1, "\(controller.setting)")
        #expect(controller.setting.bitrate > 28_000, "\(controller.setting)")
        #expect(controller.setting.reason.description == "loss 12 %")
    }

    @Test func moderateLossHoldsTheRateAndBuysFEC() {
        var controller = BitrateController()
        var far = FarEnd()
        controller.handle(far.report(after: 1, sent: 50, delivered: 1, bytes: 120, rtt: 0.040, now: 1), now: 1)
        for second in 2...6 {
            controller.handle(far.report(after: 1, sent: 50, delivered: 0.94, bytes: 120, rtt: 0.040, now: Double(second)), now: Double(second))
        }
        #expect(controller.setting.bitrate == 32_000, "6 % loss is not congestion: \(controller.setting)")
        #expect(controller.setting.reason.description == "loss 6 %")
        #expect((5...7).contains(controller.setting.expectedLossPercent))
    }

    @Test func aQueueOnThePathBacksOffBeforeItOverflows() {
        var controller = BitrateController()
        var far = FarEnd()
        controller.handle(far.report(after: 1, sent: 50, delivered: 1, bytes: 120, rtt: 0.040, now: 1), now: 1)
        controller.handle(far.report(after: 1, sent: 50, delivered: 1, bytes: 120, rtt: 0.040, queueing: 0.045, now: 2), now: 2)
        let before = controller.setting.bitrate
        #expect(before == 32_000, "45 ms of queueing neither cuts nor climbs")
        controller.handle(far.report(after: 1, sent: 50, delivered: 1, bytes: 120, rtt: 0.400, queueing: 0.150, now: 3), now: 3)
        #expect(controller.setting.bitrate < before)
        #expect(controller.setting.reason.description == "queueing 148 ms", "150 ms, less twice the 1 ms of jitter")
    }

    @Test func steadyJitterIsNotAQueue() {
        var controller = BitrateController()
        var far = FarEnd()
        // ±30 ms of jitter twice on the way (RFC 3550 jitter about 28 ms): the mean sits 50-70 ms
        // over the fastest packet, for good.
        for second in 1...12 {
            let queueing = 0.050 + Double(second % 3) * 0.010
            controller.handle(
                far.report(after: 1, sent: 50, delivered: 1, bytes: 120, rtt: 0.100, queueing: queueing, jitter: 0.028, now: Double(second)),
                now: Double(second))
        }
        #expect(controller.setting.framesPerPacket == 1, "\(controller.setting)")
        #expect(controller.setting.bitrate >= 32_000, "jitter alone never cuts the rate: \(controller.setting)")
    }

    @Test func theReceiverMeasuresQueueingAgainstTheFastestPacket() {
        var reception = ReceptionTracker()
        // 20 ms packets; the first ten cross an empty queue (40 ms), then a queue of 300 ms builds.
        for n in 0..<60 {
            let queued = n < 10 ? 0 : min(0.3, Double(n - 10) * 0.015)
            reception.record(sequence: UInt16(n), timestamp: UInt32(n * 960), bytes: 100, arrival: 10 + Double(n) * 0.02 + 0.040 + queued)
        }
        let report = reception.report(jitterMilliseconds: 1, sentAt: 11.2, echoing: nil)
        #expect(report.queueingMicroseconds > 100_000, "\(report.queueingMicroseconds) µs")
        // The queue drains: the next interval's packets are as fast as the first.
        for n in 60..<110 { reception.record(sequence: UInt16(n), timestamp: UInt32(n * 960), bytes: 100, arrival: 10 + Double(n) * 0.02 + 0.040) }
        #expect(reception.report(jitterMilliseconds: 1, sentAt: 12.2, echoing: nil).queueingMicroseconds < 5_000)
    }

    @Test func reportsThatStopComingCountAsACollapse() {
        var controller = BitrateController()
        var far = FarEnd()
        #expect(controller.nextTimeout == nil, "before any report, silence means an old peer, not a collapse")
        controller.handle(far.report(after: 1, sent: 50, delivered: 1, bytes: 120, rtt: 0.040, now: 1), now: 1)
        controller.handleTimeout(now: 3.5)
        #expect(controller.setting.bitrate == 32_000)
        let deadline = try! #require(controller.nextTimeout)
        #expect(deadline == 4)
        controller.handleTimeout(now: 4)
        #expect(controller.setting.reason == .reportsMissing(seconds: 3))
        let first = controller.wireRate(controller.setting)
        controller.handleTimeout(now: 5)
        #expect(controller.wireRate(controller.setting) < first)
    }

    // MARK: - Two ends over a narrow link

    /// One direction of a link of `rate` bits/s with a drop-tail queue of `queue` seconds' worth of
    /// bytes, as a home router's uplink (or Linux's tbf); each packet costs its bytes plus 42
    /// (IPv4, UDP, Ethernet).
    struct Bottleneck {
        var rate: Double
        var queue = 0.2
        var freeAt = 0.0
        var dropped = 0

        mutating func departure(of bytes: Int, at now: Double) -> Double? {
            let start = max(now, freeAt)
            guard start - now + Double(bytes + 42) * 8 / rate <= queue else {
                dropped += 1
                return nil
            }
            freeAt = start + Double(bytes + 42) * 8 / rate
            return freeAt + 0.02
        }
    }

    final class Recorder: AudioSink {
        var samples: [Int16] = []
        func write(_ samples: [Int16]) throws(MediaError) { self.samples += samples }
    }

    /// 30 s of a call through 24 kb/s each way; the share of the last 10 s of 20 ms blocks the
    /// callee heard at the tone's level (a lost frame's concealment fades), and its media.
    static func callThroughBottleneck(adaptive: Bool, queue: Double = 0.2) throws -> (clear: Double, caller: CallMedia, callee: CallMedia, heard: [Int16]) {
        let secret = [UInt8](repeating: 7, count: 32)
        let callID = [UInt8](repeating: 3, count: 16)
        let heard = Recorder()
        let caller = try CallMedia(
            sharedSecret: secret, callID: callID, role: .caller, ssrc: 1, peerSSRC: 2, source: ToneSource(hz: 440, amplitude: 0.3), sink: nil,
            adaptive: adaptive, now: 0)
        let callee = try CallMedia(
            sharedSecret: secret, callID: callID, role: .callee, ssrc: 2, peerSSRC: 1, source: ToneSource(hz: 660, amplitude: 0.3), sink: heard,
            adaptive: adaptive, now: 0)
        var up = Bottleneck(rate: 24_000, queue: queue)
        var down = Bottleneck(rate: 24_000, queue: queue)
        var inFlight: [(at: Double, to: CallMedia, packet: [UInt8])] = []
        var now = 0.0
        while now <= 30 {
            for packet in caller.packetsDue(now: now) { if let at = up.departure(of: packet.count, at: now) { inFlight.append((at, callee, packet)) } }
            for packet in callee.packetsDue(now: now) { if let at = down.departure(of: packet.count, at: now) { inFlight.append((at, caller, packet)) } }
            for arrival in inFlight where arrival.at <= now { _ = arrival.to.receive(arrival.packet, now: now) }
            inFlight.removeAll { $0.at <= now }
            caller.playOut(now: now)
            callee.playOut(now: now)
            now += 0.02
        }
        let tail = Array(heard.samples.suffix(10 * Opus.sampleRate))
        var clear = 0
        var blocks = 0
        for start in stride(from: 0, to: tail.count - Opus.frameSampleCount, by: Opus.frameSampleCount) {
            blocks += 1
            // The tone's RMS is 0.3 × 32767 / √2 ≈ 6950.
            if AudioAnalysis.rms(Array(tail[start..<start + Opus.frameSampleCount])) > 4_000 { clear += 1 }
        }
        return (Double(clear) / Double(max(blocks, 1)), caller, callee, tail)
    }

    /// A 200 ms queue, and a bloated one of 750 ms that fills before the first report comes back
    /// (the receiver's queueing delay, measured against the call's first packets, drains it).
    @Test(arguments: [0.2, 0.75])
    func aCallThroughTwentyFourKilobitsAdaptsAndStaysClear(queue: Double) throws {
        let (clear, caller, _, heard) = try Self.callThroughBottleneck(adaptive: true, queue: queue)
        let setting = try #require(caller.statistics(now: 30).adaptation)
        #expect(setting.framesPerPacket == 3, "60 ms packets through 24 kb/s: \(setting)")
        #expect(setting.bitrate < 20_000, "\(setting)")
        #expect(clear > 0.95, "the last 10 s heard clear: \(clear)")
        let tone = try #require(AudioAnalysis.dominantFrequency(of: Array(heard.suffix(Opus.sampleRate))))
        #expect(abs(tone - 440) < 5)
        // The same call without adapting breaks up: the measure can fail.
        let (fixed, _, _, _) = try Self.callThroughBottleneck(adaptive: false, queue: queue)
        #expect(fixed < 0.7, "unadapted, 32 kb/s in 20 ms packets through 24 kb/s: \(fixed) clear")
    }

    /// Talks for a second, is silent for a second, and so on.
    struct Bursts: AudioSource {
        var tone = ToneSource(hz: 440, amplitude: 0.3)
        var frame = 0
        mutating func read(count: Int) -> [Int16]? {
            frame += 1
            let pcm = tone.read(count: count)
            return (frame / 50) % 2 == 0 ? pcm : [Int16](repeating: 0, count: count)
        }
    }

    /// 10 s of a call on a virtual clock, both sides with DTX: a silent listener (recorded into
    /// `heard`) and a talker in one-second bursts, 30 ms apart.
    static func dtxCall(heard: Recorder? = nil) throws -> (listener: CallMedia, talker: CallMedia) {
        let secret = [UInt8](repeating: 9, count: 32)
        let callID = [UInt8](repeating: 4, count: 16)
        let listener = try CallMedia(
            sharedSecret: secret, callID: callID, role: .caller, ssrc: 1, peerSSRC: 2, source: SilenceSource(), sink: heard, dtx: true, now: 0)
        let talker = try CallMedia(
            sharedSecret: secret, callID: callID, role: .callee, ssrc: 2, peerSSRC: 1, source: Bursts(), sink: nil, dtx: true, now: 0)
        var now = 0.0
        while now <= 10 {
            for packet in talker.packetsDue(now: now) { _ = listener.receive(packet, now: now + 0.03) }
            for packet in listener.packetsDue(now: now) { _ = talker.receive(packet, now: now + 0.03) }
            listener.playOut(now: now)
            talker.playOut(now: now)
            now += 0.02
        }
        return (listener, talker)
    }

    @Test func silenceUnderDTXIsNotSentAndIsNotLoss() throws {
        let (quiet, talker) = try Self.dtxCall()
        let silent = try #require(quiet.statistics(now: 10).packetsSent)
        let talking = try #require(talker.statistics(now: 10).packetsSent)
        #expect(silent == 0, "silence: \(silent) packets in 10 s")
        // Five seconds of tone, and 300 ms of hangover after each of the five bursts.
        #expect((320...330).contains(talking), "the talk is sent, the pauses not: \(talking)")
        #expect(quiet.statistics(now: 10).lossPercent == 0, "the pauses are not counted as loss")
    }

    @Test func aTalkSpurtAfterAPauseStartsAtFullLevel() throws {
        let heard = Recorder()
        _ = try Self.dtxCall(heard: heard)
        // Each spurt's first 20 ms against its steady level (a 0.3 tone: RMS about 6950). Without
        // a fresh decoder the first block came out at 1200-1800.
        for second in stride(from: 2, to: 10, by: 2) {
            let part = Array(heard.samples.dropFirst(second * Opus.sampleRate).prefix(2 * Opus.sampleRate))
            let onset = try #require(part.firstIndex { abs(Int($0)) > 300 }, "spurt at \(second) s heard")
            let first = AudioAnalysis.rms(Array(part.dropFirst(onset).prefix(Opus.frameSampleCount)))
            #expect(first > 4_000, "the spurt at \(second) s starts at \(first)")
        }
    }
}
