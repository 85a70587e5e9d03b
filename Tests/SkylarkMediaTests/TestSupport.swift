import Foundation
import SkylarkTestSupport
import Testing

@testable import SkylarkMedia

/// A fresh directory under the system temporary directory, removed by `cleanUp`.
struct TemporaryDirectory {
    let path: String
    init() throws { path = try makeTemporaryDirectory() }
    func file(_ name: String) -> String { path + "/" + name }
    func cleanUp() { removeDirectory(path) }
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
