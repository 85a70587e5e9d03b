import COpenSSL

/// Randomness from OpenSSL's CSPRNG.
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return out }
        // RAND_bytes fails only when the CSPRNG cannot be seeded, which makes every key unsafe.
        let ok = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        precondition(ok == 1, "OpenSSL's random generator failed: \(CryptoError.fromQueue("RAND_bytes"))")
        return out
    }
}

/// Compares two byte strings in time independent of where they differ.
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    if a.isEmpty { return true }
    return a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in CRYPTO_memcmp(pa.baseAddress, pb.baseAddress, a.count) == 0 } }
}

/// OpenSSL's generator behind `RandomNumberGenerator`: where the protocol cores draw the
/// identifiers others must not guess (circuit legs, message ids) in production; tests inject a
/// seeded generator instead, so a run can be repeated.
public struct SecureRandomGenerator: RandomNumberGenerator, Sendable {
    public init() {}

    public mutating func next() -> UInt64 {
        SecureRandom.bytes(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    }
}

extension RandomNumberGenerator {
    /// `count` bytes drawn from this generator.
    public mutating func bytes(_ count: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            var word = next()
            for _ in 0..<min(8, count - out.count) {
                out.append(UInt8(truncatingIfNeeded: word))
                word >>= 8
            }
        }
        return out
    }
}
