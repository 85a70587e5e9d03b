import Foundation
import SkylarkOverlay

/// Parses a hex literal from a test vector. Deliberately independent of `Array(hexString:)`,
/// which is itself under test; whitespace is ignored so vectors can be split over lines.
public func hex(_ text: String) -> [UInt8] {
    let digits = text.unicodeScalars.filter { !$0.properties.isWhitespace }.map { scalar -> UInt8 in
        switch scalar {
        case "0"..."9": return UInt8(scalar.value - 48)
        case "a"..."f": return UInt8(scalar.value - 87)
        case "A"..."F": return UInt8(scalar.value - 55)
        default: fatalError("bad hex digit '\(scalar)' in test vector")
        }
    }
    precondition(digits.count % 2 == 0, "odd-length hex test vector")
    return stride(from: 0, to: digits.count, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
}

/// `bytes` with bit `bit` (0 = least significant bit of byte 0) inverted.
public func flipping(_ bytes: [UInt8], bit: Int) -> [UInt8] {
    var copy = bytes
    copy[bit / 8] ^= 1 << UInt8(bit % 8)
    return copy
}

public func flipping(_ data: Data, bit: Int) -> Data { Data(flipping(Array(data), bit: bit)) }

extension Array where Element == UInt8 {
    public static func random(count: Int, using generator: inout some RandomNumberGenerator) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// Whether `needle` stands somewhere in these bytes, in one piece.
    public func contains(subsequence needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        let first = needle[0]
        var index = 0
        while index <= count - needle.count {
            if self[index] == first, self[index..<index + needle.count].elementsEqual(needle) { return true }
            index += 1
        }
        return false
    }
}

/// A tiny seeded generator, so that "random" tests replay exactly: the overlay's own
/// SplitMix64, under a name that says what tests use it for.
public typealias SeededGenerator = SplitMix64
