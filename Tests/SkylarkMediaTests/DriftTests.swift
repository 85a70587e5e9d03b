import Foundation
import Testing

@testable import SkylarkMedia

/// A decoder that turns a frame's number into that frame's stretch of one continuous 440 Hz
/// tone, so whatever the playout does to the stream shows in the samples; counts concealments.
private final class ToneFrames: FrameDecoding {
    var concealments = 0

    func reset() throws(MediaError) {}

    func decode(_ packet: [UInt8]) throws(MediaError) -> [Int16] {
        let n = Int(packet[0]) | Int(packet[1]) << 8 | Int(packet[2]) << 16
        return (0..<960).map { index in Int16(8_000 * sin(2 * Double.pi * 440 * Double(n * 960 + index) / 48_000)) }
    }

    func decodeFEC(from next: [UInt8]) throws(MediaError) -> [Int16] { concealLoss() }

    func concealLoss() -> [Int16] {
        concealments += 1
        return [Int16](repeating: 0, count: 960)
    }
}

private struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A far end whose clock runs `ppm` fast against ours sends a 20 ms frame per tick of its clock
/// over a path of 30 ms plus 0–8 ms of jitter; we play one frame per tick of ours.
private struct DriftRun {
    var frameCorrections = 0
    var concealments = 0
    var lowestExcessMs = Double.infinity
    var highestExcessMs = -Double.infinity
    var finalPPM = 0.0
    var largestStep = 0
    var samplesPlayed = 0

    init(ppm: Double, seconds: Double, compensation: Bool, settle: Double = 60) {
        let decoder = ToneFrames()
        let playout = Playout(decoder: decoder, driftCompensation: compensation)
        var random = SplitMix(state: 42)
        let senderFrame = 0.020 / (1 + ppm / 1_000_000)
        var sent = 0
        var nextArrival = 0.030
        var previous: Int16?
        var settledCorrections = 0
        var settledConcealments = 0
        for tickNumber in 0..<Int((seconds / 0.020).rounded()) {
            let tick = Double(tickNumber) * 0.020
            while nextArrival <= tick {
                let n = sent
                let payload = [UInt8(truncatingIfNeeded: n), UInt8(truncatingIfNeeded: n >> 8), UInt8(truncatingIfNeeded: n >> 16)]
                playout.insert(sequence: UInt16(truncatingIfNeeded: n), timestamp: UInt32(truncatingIfNeeded: n * 960), payload: payload, arrival: nextArrival)
                sent += 1
                nextArrival = Double(sent) * senderFrame + 0.030 + Double.random(in: 0...0.008, using: &random)
            }
            let (samples, _) = playout.frame(now: tick)
            samplesPlayed += samples.count
            if tick >= settle {
                let excess = playout.excessMilliseconds
                lowestExcessMs = min(lowestExcessMs, excess)
                highestExcessMs = max(highestExcessMs, excess)
                for sample in samples {
                    // A 440 Hz tone at 8 000 moves at most 461 between samples; a skipped or
                    // repeated frame or a gap of silence jumps by more.
                    if let previous { largestStep = max(largestStep, abs(Int(sample) - Int(previous))) }
                    previous = sample
                }
            } else {
                previous = samples.last
                settledCorrections = playout.jitter.statistics.discarded
                settledConcealments = decoder.concealments
            }
        }
        frameCorrections = playout.jitter.statistics.discarded - settledCorrections
        concealments = decoder.concealments - settledConcealments
        finalPPM = playout.driftPPM
    }
}

@Suite struct DriftTests {
    @Test(arguments: [300.0, -300.0])
    func anHourWithClocks300ppmApartPlaysWithoutAGlitchOrCreep(ppm: Double) {
        let run = DriftRun(ppm: ppm, seconds: 3_600, compensation: true)
        // Not one frame skipped or repeated after the first minute, the tone never jumps, and the
        // delay stays within a few milliseconds of the jitter buffer's target all hour.
        #expect(run.frameCorrections == 0)
        #expect(run.concealments == 0)
        #expect(run.largestStep < 600, "a jump of \(run.largestStep) in a 440 Hz tone is a click")
        #expect(run.highestExcessMs < 10 && run.lowestExcessMs > -10, "delay excess \(run.lowestExcessMs)…\(run.highestExcessMs) ms")
        // The compensator found the drift: playing faster when the far end is fast.
        #expect(abs(run.finalPPM - ppm) < 60, "correction \(run.finalPPM) ppm for a drift of \(ppm) ppm")
        #expect(run.samplesPlayed == 180_000 * 960)
    }

    @Test(arguments: [300.0, -300.0])
    func withoutCompensationTheSameDriftClicksEveryFewMinutes(ppm: Double) {
        // The control: the jitter buffer alone corrects in whole frames, and each one is heard.
        let run = DriftRun(ppm: ppm, seconds: 600, compensation: false)
        #expect(run.frameCorrections + run.concealments > 0)
        #expect(run.largestStep >= 600)
    }

    @Test func compensatorStaysWithinItsBoundsAndForgetsOnReset() {
        var compensator = DriftCompensator()
        #expect(compensator.observe(excess: 1) == 1_000)
        #expect(compensator.observe(excess: -Double.infinity) == 1_000)
        for _ in 0..<1_000 { compensator.observe(excess: -1) }
        #expect(compensator.ppm == -1_000)
        compensator.reset()
        #expect(compensator.ppm == 0)
        #expect(compensator.observe(excess: 0.003) == 300)
    }

    @Test func resamplerPlaysFasterAndSlowerByTheRatioAsked() {
        for ppm in [1_000.0, -1_000.0, 0] {
            let resampler = DriftResampler()
            resampler.setDrift(ppm: ppm)
            let tone = (0..<960).map { Int16(8_000 * sin(2 * Double.pi * 440 * Double($0) / 48_000)) }
            var produced = 0
            for _ in 0..<500 { produced += resampler.process(tone).count }
            // 480 000 samples in: 480 out fewer at +1000 ppm, 480 more at −1000 ppm (within the
            // filter's delay).
            let expected = 480_000.0 / (1 + ppm / 1_000_000)
            #expect(abs(Double(produced) - expected) < 64, "\(produced) samples for \(expected) at \(ppm) ppm")
        }
    }
}
