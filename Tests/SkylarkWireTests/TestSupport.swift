import Foundation
import SkylarkCrypto
import SkylarkWire

/// RSA keys are slow to generate: made once per test process and shared.
enum TestKeys {
    static let login = try! RSA.PrivateKey(bits: 2048)
    static let other = try! RSA.PrivateKey(bits: 2048)
    static let update = try! RSA.PrivateKey(bits: 2048)
}

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

func flipping(_ bytes: [UInt8], bit: Int) -> [UInt8] {
    var copy = bytes
    copy[bit / 8] ^= 1 << UInt8(bit % 8)
    return copy
}

func flipping(_ data: Data, bit: Int) -> Data { Data(flipping(Array(data), bit: bit)) }

/// A fresh folder under the system temporary directory; the caller removes it (use `defer`).
func makeTemporaryFolder() throws -> String {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("skylark-wire-tests-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    return path
}

func posixPermissions(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    guard let mode = attributes[.posixPermissions] as? NSNumber else { throw CocoaError(.fileReadUnknown) }
    return mode.intValue & 0o777
}
