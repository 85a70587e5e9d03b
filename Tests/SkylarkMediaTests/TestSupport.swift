import Foundation
import Testing
@testable import SkylarkMedia

/// Deterministic generator so that failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Array where Element == UInt8 {
    static func random(count: Int, using generator: inout SplitMix64) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }
}

/// `bytes` with bit `bit` (0 = most significant bit of byte 0) inverted.
func flipping(_ bytes: [UInt8], bit: Int) -> [UInt8] {
    var copy = bytes
    copy[bit / 8] ^= 0x80 >> UInt8(bit % 8)
    return copy
}

/// A fresh directory under the system temporary directory, removed by `cleanUp`.
struct TemporaryDirectory {
    let path: String
    init() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("skylark-media-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        path = url.path
    }
    func file(_ name: String) -> String { path + "/" + name }
    func cleanUp() { try? FileManager.default.removeItem(atPath: path) }
}

/// `count` samples of a tone.
func tone(_ hz: Double, amplitude: Double = 0.5, count: Int) -> [Int16] {
    var source = ToneSource(hz: hz, amplitude: amplitude)
    return source.read(count: count) ?? []
}

/// Splits samples into 20 ms frames (the last one zero-padded).
func frames(_ samples: [Int16]) -> [[Int16]] {
    stride(from: 0, to: samples.count, by: Opus.frameSampleCount).map { start in
        let slice = Array(samples[start..<min(start + Opus.frameSampleCount, samples.count)])
        return slice + [Int16](repeating: 0, count: Opus.frameSampleCount - slice.count)
    }
}

/// `#require` for values produced by mutating calls (the macro cannot take those directly).
func unwrap<T>(_ value: T?, sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
    try #require(value, sourceLocation: sourceLocation)
}
