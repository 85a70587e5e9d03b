import ArgumentParser
import Foundation
import SkylarkMedia

/// Checks that a call recording carries a source: `skylark-bench audio-match --recording R.wav
/// --tone 440` (or `--reference SOURCE.wav`). The recording's voiced part (leading silence, while
/// the jitter buffer filled, is skipped) is cut into 100 ms blocks, and each block is aligned with
/// the source by cross-correlation on its own — a jitter buffer that stretches or skips a frame
/// moves the timing, which is not a fault; the first `--settle` seconds (0.5), while the buffer
/// settles, are skipped. It matches when at least `--blocks` of the blocks (80 % by default)
/// reach a normalised correlation of `--threshold` at their best alignment and,
/// for a tone, the dominant frequency is within 5 Hz. Prints one JSON line; exits 1 when it does
/// not match.
struct AudioMatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audio-match",
        abstract: "Does a recorded WAV carry a source tone or WAV? (used by the NAT lab)")

    @Option(help: "The recorded WAV (48 kHz).") var recording: String
    @Option(help: "The source was tone:HZ at this frequency.") var tone: Double?
    @Option(help: "The source WAV (48 kHz).") var reference: String?
    @Option(help: "Minimum normalised correlation.") var threshold: Double = 0.9
    @Option(help: "Seconds of voiced audio to compare.") var seconds: Double = 1.5
    @Option(help: "Share of 100 ms blocks that must reach the threshold.") var blocks: Double = 0.8
    @Option(help: "Seconds of voiced audio skipped first, while the jitter buffer settles.") var settle: Double = 0.5

    struct Result: Codable {
        var voicedSeconds: Double
        var dominantHz: Double?
        /// Median block correlation, and the share of blocks at or above the threshold.
        var correlation: Double
        var blocksMatching: Double
        var match: Bool
    }

    func run() throws {
        let samples = try WAVFile(path: recording).samples
        // Skip the silence before the first frame arrived, then compare a window of voiced audio.
        guard let firstVoiced = samples.firstIndex(where: { abs(Int($0)) > 200 }) else {
            return finish(Result(voicedSeconds: 0, dominantHz: nil, correlation: 0, blocksMatching: 0, match: false))
        }
        let voiced = Array(samples[firstVoiced...])
        let window = Array(voiced.dropFirst(Int(settle * Double(Opus.sampleRate))).prefix(Int(seconds * Double(Opus.sampleRate))))
        let block = Opus.sampleRate / 10
        var scores: [Double] = []
        if let tone {
            // A tone repeats every period: one period of lags finds each block's phase.
            var generator = ToneSource(hz: tone, amplitude: 0.3)
            let period = Int((Double(Opus.sampleRate) / tone).rounded(.up))
            let source = generator.read(count: block + period + 1) ?? []
            for start in stride(from: 0, to: window.count - block + 1, by: block) {
                let piece = Array(window[start..<start + block])
                scores.append(AudioAnalysis.bestAlignment(of: source, against: piece, lags: 0...period, minimumOverlap: block)?.correlation ?? 0)
            }
        } else if let reference {
            // Find where the recording starts in the source once, then let each block move ±60 ms.
            let source = try WAVFile(path: reference).samples
            let head = Array(window.prefix(block * 3))
            let global =
                AudioAnalysis.bestAlignment(
                    of: source, against: head, lags: 0...max(0, min(Opus.sampleRate * 2, source.count - head.count)),
                    minimumOverlap: head.count)?.lag ?? 0
            let slack = Opus.sampleRate * 6 / 100
            for start in stride(from: 0, to: window.count - block + 1, by: block) {
                let piece = Array(window[start..<start + block])
                let low = max(0, global + start - slack), high = max(low, min(source.count - block, global + start + slack))
                scores.append(AudioAnalysis.bestAlignment(of: source, against: piece, lags: low...high, minimumOverlap: block)?.correlation ?? 0)
            }
        } else {
            throw ValidationError("give --tone or --reference")
        }
        let dominant = AudioAnalysis.dominantFrequency(of: window)
        let share = scores.isEmpty ? 0 : Double(scores.filter { $0 >= threshold }.count) / Double(scores.count)
        let median = scores.sorted()[scores.isEmpty ? 0 : scores.count / 2]
        var match = share >= blocks && window.count >= Int(seconds * Double(Opus.sampleRate) * 0.9)
        if let tone { match = match && (dominant.map { abs($0 - tone) <= 5 } ?? false) }
        finish(
            Result(
                voicedSeconds: Double(voiced.count) / Double(Opus.sampleRate), dominantHz: dominant.map { ($0 * 10).rounded() / 10 },
                correlation: (median * 1000).rounded() / 1000, blocksMatching: (share * 1000).rounded() / 1000, match: match))
    }

    private func finish(_ result: Result) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: (try? encoder.encode(result)) ?? Data(), as: UTF8.self))
        if !result.match { Foundation.exit(1) }
    }
}

/// Which tones a conference recording holds: `skylark-bench audio-tones --recording R.wav
/// --present 440,550 --absent 300`. Power at each frequency over the voiced part (after
/// `--settle`, at most `--seconds`; `AudioAnalysis.tonePower`: 100 ms blocks, so a tone the
/// listener's drift compensation played a few hundred ppm off still counts), relative to the
/// strongest expected tone. A tone is present
/// at `--present-min` of the strongest or more (0.15, −8 dB: nine tones mixed through Opus at
/// 32 kb/s measured 0.39–1 in the lab), absent at `--absent-max` or less (0.04, −14 dB: a
/// participant's own tone measured ≤ 0.012 in its mix, where a mixer that left it in would put
/// it near 1). Prints one JSON line; exits 1 when any expectation fails.
struct AudioTones: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audio-tones",
        abstract: "Does a recorded WAV hold these tones and not those? (conferences in the NAT lab)")

    @Option(help: "The recorded WAV (48 kHz).") var recording: String
    @Option(help: "Tones that must be heard, Hz, comma-separated.") var present: String
    @Option(help: "Tones that must not be heard, Hz, comma-separated.") var absent: String = ""
    @Option(help: "Seconds of voiced audio to analyse.") var seconds: Double = 2
    @Option(help: "Seconds of voiced audio skipped first.") var settle: Double = 0.5
    @Flag(help: "Analyse the last --seconds of the recording (when everyone had joined) instead of the first after --settle.")
    var last = false
    @Option(help: "Minimum power of a present tone, relative to the strongest.") var presentMin: Double = 0.15
    @Option(help: "Maximum power of an absent tone, relative to the strongest present one.") var absentMax: Double = 0.04

    struct Result: Codable {
        var voicedSeconds: Double
        /// Power relative to the strongest present tone, by frequency.
        var relative: [String: Double]
        var missing: [String]
        var unwanted: [String]
        var match: Bool
    }

    func run() throws {
        let wanted = try Self.frequencies(present)
        let unwantedTones = try Self.frequencies(absent)
        guard !wanted.isEmpty else { throw ValidationError("--present needs at least one frequency") }
        let samples = try WAVFile(path: recording).samples
        let firstVoiced = samples.firstIndex { abs(Int($0)) > 200 } ?? samples.count
        let voiced = Array(samples[firstVoiced...])
        let settled = voiced.dropFirst(Int(settle * Double(Opus.sampleRate)))
        let length = Int(seconds * Double(Opus.sampleRate))
        let window = Array(last ? settled.suffix(length) : settled.prefix(length))
        guard window.count >= Opus.sampleRate / 2 else {
            return finish(
                Result(
                    voicedSeconds: Double(voiced.count) / Double(Opus.sampleRate), relative: [:],
                    missing: wanted.map { "\(Int($0))" }, unwanted: [], match: false))
        }
        var power: [Double: Double] = [:]
        for frequency in wanted + unwantedTones { power[frequency] = AudioAnalysis.tonePower(of: window, at: frequency) }
        let strongest = max(wanted.compactMap { power[$0] }.max() ?? 0, 1e-9)
        var relative: [String: Double] = [:]
        for (frequency, value) in power { relative["\(Int(frequency))"] = (value / strongest * 1000).rounded() / 1000 }
        let missing = wanted.filter { power[$0]! / strongest < presentMin }.map { "\(Int($0))" }
        let unwanted = unwantedTones.filter { power[$0]! / strongest > absentMax }.map { "\(Int($0))" }
        finish(
            Result(
                voicedSeconds: Double(voiced.count) / Double(Opus.sampleRate), relative: relative, missing: missing, unwanted: unwanted,
                match: missing.isEmpty && unwanted.isEmpty))
    }

    static func frequencies(_ text: String) throws -> [Double] {
        try text.split(separator: ",").map { part in
            guard let value = Double(part.trimmingCharacters(in: .whitespaces)), value > 0 else { throw ValidationError("'\(part)' is not a frequency") }
            return value
        }
    }

    private func finish(_ result: Result) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: (try? encoder.encode(result)) ?? Data(), as: UTF8.self))
        if !result.match { Foundation.exit(1) }
    }
}
