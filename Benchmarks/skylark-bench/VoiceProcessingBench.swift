import ArgumentParser
import Foundation
import SkylarkAudio
import SkylarkMedia

#if canImport(Glibc)
    import Glibc
#endif

/// What a call's voice processing (speexdsp: echo canceller, noise suppression, gain control)
/// costs per 20 ms frame, against the call's own Opus encode + decode of the same frames in the
/// same run, and what the echo canceller achieves on a clean echo path.
///
/// The far end's voice (a voice-like signal) is played to the speaker; the microphone hears it
/// back 40 ms later and 6 dB down — the NAT lab's `echo_path` room — and, for double talk, the
/// near talker too (the same kind of signal 3.3 s further on, so the two do not correlate).
/// Each frame: `VoiceProcessor.played(far)` then `captured(mic)`. CPU is the thread's CPU time
/// (CLOCK_THREAD_CPUTIME_ID) over all frames of a round; the figure is the median of the rounds.
///
/// Echo return loss enhancement (ERLE) is the echo's power at the microphone over what is left
/// of it after the canceller, over the last 5 s of single talk (the canceller has converged).
/// The CPU rows process double talk (echo and near voice at once), the canceller's hardest case.
struct VoiceProcessingBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "voice-processing",
        abstract: "Voice processing CPU per frame against Opus, and the echo canceller's ERLE on a clean echo path.")

    @Option(help: "Seconds of audio per round.") var seconds = 20
    @Option(help: "Rounds (median CPU).") var rounds = 5
    /// At least the reference's slack (40 ms): on a device the speaker's own buffer (60 ms) comes
    /// on top of the room's delay, so a real echo is never earlier than that.
    @Option(help: "Echo path delay from the block handed to the speaker to the microphone, ms (40-190).") var echoDelay = 100
    @Option(help: "Echo path attenuation, dB.") var echoAttenuation = 6.0
    @Flag(help: "Print the results as one JSON object.") var json = false

    func validate() throws {
        guard seconds >= 8, rounds >= 1, (40...190).contains(echoDelay), echoAttenuation >= 0 else { throw ValidationError("bad options") }
    }

    struct Row: Codable {
        var name: String
        var microsecondsPerFrame: Double
        /// Share of one core a call spends on it (20 ms of audio per frame).
        var percentOfCore: Double
    }

    struct Report: Codable {
        var seconds: Int
        var rounds: Int
        var echoDelayMilliseconds: Int
        var echoAttenuationDB: Double
        var rows: [Row]
        var erleDB: Double
        var erleWithSuppressionDB: Double
    }

    func run() throws {
        let frame = Opus.frameSampleCount
        let count = seconds * Opus.sampleRate / frame * frame
        let voice = MediaBench.voiceLike(seconds: seconds + 4)
        let far = Array(voice.prefix(count))
        let nearStart = Opus.sampleRate * 33 / 10
        let near = Array(voice[nearStart..<nearStart + count]).map { Int16(Double($0) * 0.7) }
        let delay = echoDelay * Opus.sampleRate / 1000
        let gain = pow(10, -echoAttenuation / 20)
        let echo = (0..<count).map { index in index >= delay ? Int16((Double(far[index - delay]) * gain).rounded()) : 0 }
        let doubleTalk = zip(echo, near).map { Int16(clamping: Int($0) + Int($1)) }

        let settings: [(String, VoiceProcessing)] = [
            ("echo cancellation", VoiceProcessing(echoCancellation: true, noiseSuppression: false, gainControl: false)),
            ("noise suppression", VoiceProcessing(echoCancellation: false, noiseSuppression: true, gainControl: false)),
            ("gain control", VoiceProcessing(echoCancellation: false, noiseSuppression: false, gainControl: true)),
            ("all three (the default for device audio)", VoiceProcessing()),
        ]
        var rows: [Row] = []
        let opus = try BenchTiming.median((0..<rounds).map { _ in try opusCost(doubleTalk) })
        rows.append(Row(name: "anchor: Opus encode + decode (32 kb/s, complexity 5, FEC)", microsecondsPerFrame: opus, percentOfCore: opus / 200))
        for (name, setting) in settings {
            let cost = BenchTiming.median((0..<rounds).map { _ in process(setting, far: far, mic: doubleTalk).microseconds })
            rows.append(Row(name: name, microsecondsPerFrame: cost, percentOfCore: cost / 200))
        }
        let tail = count - 5 * Opus.sampleRate
        let cancelledOnly = process(settings[0].1, far: far, mic: echo).output
        let suppressed = process(VoiceProcessing(echoCancellation: true, noiseSuppression: true, gainControl: false), far: far, mic: echo).output
        let erle = Self.ratioDB(Array(echo[tail...]), Array(cancelledOnly[tail...]))
        let erleSuppressed = Self.ratioDB(Array(echo[tail...]), Array(suppressed[tail...]))
        let report = Report(
            seconds: seconds, rounds: rounds, echoDelayMilliseconds: echoDelay, echoAttenuationDB: echoAttenuation, rows: rows,
            erleDB: erle, erleWithSuppressionDB: erleSuppressed)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        print(
            "voice processing per 20 ms frame (speexdsp, 48 kHz mono, \(VoiceProcessor.tailMilliseconds) ms echo tail); \(seconds) s x \(rounds) rounds, median"
        )
        print("")
        print("stage                                                       | µs per frame | % of one core")
        print("------------------------------------------------------------|--------------|--------------")
        for row in rows {
            print(
                row.name.padding(toLength: 59, withPad: " ", startingAt: 0) + " | " + fmt(row.microsecondsPerFrame, 1).padded(12) + " | "
                    + fmt(row.percentOfCore, 2).padded(12))
        }
        print("")
        print(
            "echo path \(echoDelay) ms, \(fmt(echoAttenuation, 0)) dB down, last 5 s: ERLE \(fmt(erle, 1)) dB (canceller and its residual echo suppression), \(fmt(erleSuppressed, 1)) dB with noise suppression on too"
        )
    }

    /// One pass: the CPU per frame and what the microphone became.
    private func process(_ setting: VoiceProcessing, far: [Int16], mic: [Int16]) -> (microseconds: Double, output: [Int16]) {
        let frame = Opus.frameSampleCount
        guard let processor = VoiceProcessor(setting, frameSamples: frame, sampleRate: Opus.sampleRate) else { return (0, mic) }
        var output: [Int16] = []
        output.reserveCapacity(mic.count)
        var cpu: UInt64 = 0
        for start in stride(from: 0, to: mic.count, by: frame) {
            let farFrame = Array(far[start..<start + frame])
            let micFrame = Array(mic[start..<start + frame])
            let before = BenchTiming.threadCPUNanoseconds()
            processor.played(farFrame)
            let processed = processor.captured(micFrame)
            cpu += BenchTiming.threadCPUNanoseconds() - before
            output += processed
        }
        return (Double(cpu) / 1000 / Double(mic.count / frame), output)
    }

    private func opusCost(_ samples: [Int16]) throws -> Double {
        let frame = Opus.frameSampleCount
        let encoder = try OpusEncoder(bitrate: 32_000, complexity: 5, inbandFEC: true, expectedPacketLoss: 10)
        let decoder = try OpusDecoder()
        var cpu: UInt64 = 0
        for start in stride(from: 0, to: samples.count, by: frame) {
            let pcm = Array(samples[start..<start + frame])
            let before = BenchTiming.threadCPUNanoseconds()
            let packet = try encoder.encode(pcm)
            _ = try decoder.decode(packet)
            cpu += BenchTiming.threadCPUNanoseconds() - before
        }
        return Double(cpu) / 1000 / Double(samples.count / frame)
    }

    /// 10·log10 of a's power over b's.
    static func ratioDB(_ a: [Int16], _ b: [Int16]) -> Double {
        let pa = a.reduce(0.0) { $0 + Double($1) * Double($1) }
        let pb = max(b.reduce(0.0) { $0 + Double($1) * Double($1) }, 1)
        return 10 * log10(max(pa, 1) / pb)
    }

    private func fmt(_ value: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", value) }
}

extension String {
    fileprivate func padded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
