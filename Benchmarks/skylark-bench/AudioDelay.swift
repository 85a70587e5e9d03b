import ArgumentParser
import Foundation
import SkylarkMedia

/// Mouth-to-ear latency from one two-channel recording: the left channel is what went into the
/// talker's microphone, the right what came out of the listener's speaker, both captured by one
/// sound server on one clock (the NAT lab's voice benchmark). Each click in the left channel
/// (a burst after at least 300 ms of quiet) is matched with the first sample in the right channel
/// after it that reaches half the loudest within the window (voice processing and concealment
/// change a click's level from one to the next, so each is judged on its own); prints one JSON line with every delay and their median. Exits 1 when fewer than half
/// of the clicks arrived.
struct AudioDelay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audio-delay", abstract: "Mouth-to-ear delay of clicks in a stereo recording (left: mouth, right: ear).")

    @Option(help: "The stereo WAV (48 kHz, 16-bit).") var recording: String
    @Option(help: "Longest delay looked for, seconds.") var window: Double = 1.5

    struct Result: Codable {
        var clicks: Int
        var arrived: Int
        var delaysMilliseconds: [Double]
        var medianMilliseconds: Double?
        var minimumMilliseconds: Double?
        var maximumMilliseconds: Double?
    }

    func run() throws {
        let (mouth, ear) = try Self.channels(of: recording)
        let rate = Double(Opus.sampleRate)
        let mouthLevel = 0.25 * Double(mouth.map { abs(Int($0)) }.max() ?? 0)
        var onsets: [Int] = []
        var lastLoud = -Int(rate)
        for (index, sample) in mouth.enumerated() where Double(abs(Int(sample))) >= mouthLevel && mouthLevel > 0 {
            if index - lastLoud > Int(0.3 * rate) { onsets.append(index) }
            lastLoud = index
        }
        var delays: [Double] = []
        for onset in onsets {
            let end = min(ear.count, onset + Int(window * rate))
            guard onset < end else { continue }
            // A click that arrived is far above the noise floor of a silent line (±300 of 32767).
            let loudest = ear[onset..<end].map { abs(Int($0)) }.max() ?? 0
            guard loudest >= 1_000, let arrival = ear[onset..<end].firstIndex(where: { 2 * abs(Int($0)) >= loudest }) else { continue }
            delays.append((Double(arrival - onset) / rate * 10_000).rounded() / 10)
        }
        let sorted = delays.sorted()
        let result = Result(
            clicks: onsets.count, arrived: delays.count, delaysMilliseconds: delays, medianMilliseconds: sorted.isEmpty ? nil : sorted[sorted.count / 2],
            minimumMilliseconds: sorted.first, maximumMilliseconds: sorted.last)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(result), as: UTF8.self))
        if onsets.isEmpty || delays.count * 2 < onsets.count { throw ExitCode(1) }
    }

    /// The two channels of a 16-bit stereo WAV (its `fmt ` and `data` chunks; the data runs to
    /// the end of the file if a recorder was stopped before it wrote the size).
    static func channels(of path: String) throws -> (left: [Int16], right: [Int16]) {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        func word(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24 }
        var offset = 12
        var channels = 0
        while offset + 8 <= bytes.count {
            let id = String(decoding: bytes[offset..<offset + 4], as: UTF8.self)
            let size = word(offset + 4)
            if id == "fmt " { channels = Int(bytes[offset + 10]) | Int(bytes[offset + 11]) << 8 }
            if id == "data" {
                guard channels == 2 else { throw ValidationError("\(path): \(channels) channels, expected 2") }
                let end = size > 0 && offset + 8 + size <= bytes.count ? offset + 8 + size : bytes.count
                var left: [Int16] = []
                var right: [Int16] = []
                var at = offset + 8
                while at + 4 <= end {
                    left.append(Int16(bitPattern: UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8))
                    right.append(Int16(bitPattern: UInt16(bytes[at + 2]) | UInt16(bytes[at + 3]) << 8))
                    at += 4
                }
                return (left, right)
            }
            offset += 8 + size + (size & 1)
        }
        throw ValidationError("\(path): no data chunk")
    }
}
