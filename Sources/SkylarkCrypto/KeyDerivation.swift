import COpenSSL
import CShims

/// HKDF-SHA256 (RFC 5869): turns a shared secret into independent keys.
public enum HKDF {
    public static func sha256(inputKeyMaterial ikm: [UInt8], salt: [UInt8] = [], info: [UInt8], outputByteCount: Int) throws -> [UInt8] {
        guard outputByteCount > 0, outputByteCount <= 255 * 32 else {
            throw CryptoError.invalidLength(what: "HKDF output", expected: 32, actual: outputByteCount)
        }
        var out = [UInt8](repeating: 0, count: outputByteCount)
        let ok = skylark_hkdf_sha256(ikm, ikm.count, salt, salt.count, info, info.count, &out, out.count)
        guard ok == 1 else { throw CryptoError.fromQueue("HKDF") }
        return out
    }
}

/// scrypt (RFC 7914), the slow salted password hash.
public enum Scrypt {
    /// Cost parameters; stored beside each hash so they can be raised without breaking old accounts.
    public struct Parameters: Sendable, Equatable, Codable {
        public var n: UInt64
        public var r: UInt64
        public var p: UInt64

        public init(n: UInt64, r: UInt64, p: UInt64) { self.n = n; self.r = r; self.p = p }

        /// N = 2^14, r = 8, p = 1: 16 MiB and ≈60 ms per hash on this machine class.
        public static let interactive = Parameters(n: 1 << 14, r: 8, p: 1)

        /// Largest cost accepted: N up to 2^22, r up to 32, p up to 16 (far above what any
        /// account uses), so corrupt parameters fail cleanly instead of overflowing.
        public var isReasonable: Bool { n >= 2 && n <= 1 << 22 && n & (n - 1) == 0 && (1...32).contains(r) && (1...16).contains(p) }

        /// Memory one derivation needs, plus slack: OpenSSL refuses to exceed `maxmem`.
        var memoryLimit: UInt64 { 128 * r * n * p + 128 * r * p + 1 << 20 }
    }

    public static func derive(password: [UInt8], salt: [UInt8], parameters: Parameters = .interactive, outputByteCount: Int = 32) throws -> [UInt8] {
        guard parameters.isReasonable else {
            throw CryptoError.openssl(operation: "scrypt", reason: "unsupported cost parameters N=\(parameters.n) r=\(parameters.r) p=\(parameters.p)")
        }
        var out = [UInt8](repeating: 0, count: outputByteCount)
        // A NULL password pointer makes OpenSSL only check the parameters and report success, so an
        // empty password still gets a real (one-byte) buffer.
        let buffer = password + [0]
        let ok = buffer.withUnsafeBytes { pw in
            EVP_PBE_scrypt(
                pw.baseAddress!.assumingMemoryBound(to: CChar.self), password.count, salt, salt.count,
                parameters.n, parameters.r, parameters.p, parameters.memoryLimit, &out, out.count)
        }
        guard ok == 1 else { throw CryptoError.fromQueue("EVP_PBE_scrypt") }
        return out
    }
}

/// HMAC-SHA256 (RFC 2104): authenticates small control messages under a shared key.
public enum HMAC {
    public static let byteCount = 32

    public static func sha256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: byteCount)
        var length: UInt32 = 0
        // HMAC() fails only on allocation failure; an empty result would fail every comparison.
        let ok = key.withUnsafeBytes { keyBytes in
            message.withUnsafeBytes { messageBytes in
                COpenSSL.HMAC(
                    EVP_sha256(), keyBytes.baseAddress, Int32(key.count), messageBytes.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    message.count, &out, &length)
            }
        }
        return ok == nil ? [] : Array(out.prefix(Int(length)))
    }
}
