import SkylarkWire

/// Why a registration or login did not succeed: one line each, for people and for exit codes.
public enum LoginFailure: Error, Equatable, Sendable, CustomStringConvertible {
    case wrongPassword(name: String)
    case unknownName(name: String)
    case nameTaken(name: String)
    case invalidName(String)
    case weakPassword(String)
    case rateLimited(retryAfter: Int)
    /// The server does not hold the login key pinned in the network profile.
    case keyMismatch(String)
    case serverUnreachable(address: String, reason: String)
    case timedOut(address: String)
    /// Our clock is too far from the server's, or the request was refused as a replay.
    case clockOrReplay(String)
    /// The server answered something that is not a valid answer to our request.
    case protocolViolation(String)
    case badCredential(Credential.Invalid)
    case serverError(String)

    public var description: String {
        switch self {
        case let .wrongPassword(name): return "wrong password for '\(name)'"
        case let .unknownName(name): return "unknown name: no account is named '\(name)'"
        case let .nameTaken(name): return "name taken: '\(name)' is already registered"
        case let .invalidName(why): return "invalid name: \(why)"
        case let .weakPassword(why): return "password refused: \(why)"
        case let .rateLimited(seconds): return "too many failed attempts: try again in \(seconds) s"
        case let .keyMismatch(detail): return "server key mismatch: \(detail)"
        case let .serverUnreachable(address, reason): return "login server unreachable at \(address): \(reason)"
        case let .timedOut(address): return "login server at \(address) did not answer in time"
        case let .clockOrReplay(why): return "request refused: \(why)"
        case let .protocolViolation(why): return "invalid answer from the login server: \(why)"
        case let .badCredential(why): return "the login server's credential was rejected: \(why)"
        case let .serverError(why): return "login server error: \(why)"
        }
    }

    /// Distinct process exit codes, documented in the README.
    public var exitCode: Int32 {
        switch self {
        case .wrongPassword: return 3
        case .unknownName: return 4
        case .nameTaken: return 5
        case .serverUnreachable, .timedOut: return 6
        case .keyMismatch: return 7
        case .rateLimited: return 9
        case .invalidName, .weakPassword: return 10
        default: return 1
        }
    }
}
