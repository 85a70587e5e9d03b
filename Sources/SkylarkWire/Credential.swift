import Foundation
import SkylarkCrypto

/// A login-server-signed certificate binding a user name to an Ed25519 key and node id.
public struct Credential: Sendable, Equatable {
    public static let nodeIDByteCount = 20

    public let name: String
    public let userPublicKey: [UInt8]
    public let nodeID: [UInt8]
    public let issuedAt: Int64
    public let expiresAt: Int64
    public let serial: UInt64
    /// The signed form, as received; what peers exchange.
    public let signed: LoginSignedCredential

    public enum Invalid: Error, Equatable, Sendable, CustomStringConvertible {
        case badSignature
        case malformed
        case nodeIDMismatch
        case expired(at: Int64)
        case notYetValid(from: Int64)

        public var description: String {
            switch self {
            case .badSignature: return "credential signature is not the login server's"
            case .malformed: return "credential is malformed"
            case .nodeIDMismatch: return "credential node id does not match its key"
            case let .expired(at): return "credential expired at \(Date(timeIntervalSince1970: TimeInterval(at)))"
            case let .notYetValid(from): return "credential is not valid before \(Date(timeIntervalSince1970: TimeInterval(from)))"
            }
        }
    }

    /// Node ids come from keys, never chosen freely: first 20 bytes of SHA-256(public key).
    public static func nodeID(for userPublicKey: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(userPublicKey).prefix(nodeIDByteCount))
    }

    public static func issue(name: String, userPublicKey: [UInt8], issuedAt: Int64, lifetime: Int64, serial: UInt64, signer: RSA.PrivateKey) throws
        -> LoginSignedCredential
    {
        var body = LoginCredentialBody()
        body.name = name
        body.userPublicKey = Data(userPublicKey)
        body.nodeID = Data(nodeID(for: userPublicKey))
        body.issuedAt = issuedAt
        body.expiresAt = issuedAt + lifetime
        body.serial = serial
        let bytes: [UInt8] = try body.serializedBytes()
        var signed = LoginSignedCredential()
        signed.body = Data(bytes)
        signed.signature = Data(try signer.sign(bytes))
        return signed
    }

    /// Checks the signature first, then parses and checks the body. `now` in Unix seconds;
    /// `clockSkew` tolerates a verifier whose clock is slightly behind the issuer's.
    public static func verify(_ signed: LoginSignedCredential, issuer: RSA.PublicKey, now: Int64, clockSkew: Int64 = 300) throws(Invalid) -> Credential {
        let bodyBytes = Array(signed.body)
        guard issuer.verify(signature: Array(signed.signature), for: bodyBytes) else { throw .badSignature }
        guard let body = try? LoginCredentialBody(serializedBytes: bodyBytes),
            body.userPublicKey.count == Ed25519.keyByteCount, !body.name.isEmpty
        else { throw .malformed }
        guard Array(body.nodeID) == nodeID(for: Array(body.userPublicKey)) else { throw .nodeIDMismatch }
        guard now < body.expiresAt else { throw .expired(at: body.expiresAt) }
        guard now + clockSkew >= body.issuedAt else { throw .notYetValid(from: body.issuedAt) }
        return Credential(
            name: body.name, userPublicKey: Array(body.userPublicKey), nodeID: Array(body.nodeID),
            issuedAt: body.issuedAt, expiresAt: body.expiresAt, serial: body.serial, signed: signed)
    }
}
