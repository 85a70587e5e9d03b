import COpenSSL

/// Errors from the OpenSSL-backed primitives. None of them is recoverable by retrying the same input.
public enum CryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An OpenSSL call failed; `reason` is OpenSSL's own text for the first queued error.
    case openssl(operation: String, reason: String)
    /// AES-GCM tag or signature check failed: the data was altered or the key is wrong.
    case authenticationFailed
    /// A key could not be parsed, or is of the wrong type.
    case invalidKey(String)
    /// An RSA key shorter than the 2048-bit floor.
    case keyTooSmall(bits: Int)
    /// An input had the wrong size (key, nonce, tag).
    case invalidLength(what: String, expected: Int, actual: Int)

    public var description: String {
        switch self {
        case let .openssl(operation, reason): return "OpenSSL \(operation) failed: \(reason)"
        case .authenticationFailed: return "authentication failed (data altered or wrong key)"
        case let .invalidKey(why): return "invalid key: \(why)"
        case let .keyTooSmall(bits): return "RSA key of \(bits) bits is below the 2048-bit minimum"
        case let .invalidLength(what, expected, actual): return "\(what) must be \(expected) bytes, got \(actual)"
        }
    }

    /// Builds an `.openssl` error from OpenSSL's error queue and clears the queue.
    static func fromQueue(_ operation: String) -> CryptoError {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return .openssl(operation: operation, reason: "unknown error") }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        let reason = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return .openssl(operation: operation, reason: reason)
    }
}

/// Throws the queued OpenSSL error when `result` is not 1 (OpenSSL's success value).
@inline(__always)
func check(_ result: Int32, _ operation: String) throws {
    if result != 1 { throw CryptoError.fromQueue(operation) }
}
