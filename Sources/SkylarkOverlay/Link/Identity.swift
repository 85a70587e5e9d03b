import Foundation
import SkylarkCrypto
import SkylarkWire
import Synchronization

/// Who this node is on the overlay: its Ed25519 identity key and, once logged in, the credential
/// the login server issued for that key. Without a credential a node can only open ANONYMOUS
/// links (to log in through a supernode).
public struct LocalIdentity: Sendable {
    public let key: Ed25519.PrivateKey
    public let publicKey: [UInt8]
    public let credential: Credential?

    public init(key: Ed25519.PrivateKey, credential: Credential?) throws {
        self.key = key
        self.publicKey = try key.publicKey().rawRepresentation()
        self.credential = credential
    }

    public var name: String? { credential?.name }
    public var nodeID: NodeID? { credential.map { NodeID(bytes: $0.nodeID) } }
}

/// A peer whose credential was verified against the pinned login key and who proved possession
/// of the certified key during the handshake.
public struct PeerIdentity: Sendable, Equatable {
    public let name: String
    public let nodeID: NodeID
    public let userPublicKey: [UInt8]
    public let credential: Credential

    public init(credential: Credential) {
        self.name = credential.name
        self.nodeID = NodeID(bytes: credential.nodeID)
        self.userPublicKey = credential.userPublicKey
        self.credential = credential
    }

    public static func == (lhs: PeerIdentity, rhs: PeerIdentity) -> Bool {
        lhs.nodeID == rhs.nodeID && lhs.credential.serial == rhs.credential.serial
    }
}

/// What every signature check in the overlay needs: the pinned login key and the time.
///
/// The same credentials are checked over and over (every replica, every lookup answer), so the
/// RSA verification of each one is remembered; the validity period is still checked against
/// `now` on every call.
public struct Verifier: Sendable {
    public let loginKey: RSA.PublicKey
    /// Seconds a peer's clock may be ahead of ours.
    public let clockSkew: Int64
    private let cache: CredentialCache

    public init(loginKey: RSA.PublicKey, clockSkew: Int64 = 300, cacheCapacity: Int = 20_000) {
        self.loginKey = loginKey
        self.clockSkew = clockSkew
        self.cache = CredentialCache(capacity: cacheCapacity)
    }

    /// The credential, if the login server signed it and it is valid at `now` (Unix seconds).
    public func credential(_ signed: LoginSignedCredential, now: Double) throws(Credential.Invalid) -> Credential {
        let key = SHA256.hash(signed.transcriptBytes)
        if let known = cache.lookup(key) {
            guard Int64(now) < known.expiresAt else { throw .expired(at: known.expiresAt) }
            guard Int64(now) + clockSkew >= known.issuedAt else { throw .notYetValid(from: known.issuedAt) }
            return known
        }
        let verified = try Credential.verify(signed, issuer: loginKey, now: Int64(now), clockSkew: clockSkew)
        cache.insert(key, verified)
        return verified
    }

    /// Checks an Ed25519 signature by the key a credential certifies.
    public func signature(_ signature: [UInt8], by credential: Credential, over message: [UInt8]) -> Bool {
        guard let key = try? Ed25519.PublicKey(rawRepresentation: credential.userPublicKey) else { return false }
        return key.verify(signature: signature, for: message)
    }
}

extension LoginSignedCredential {
    /// Bytes for transcripts and signatures: the signed body and the login server's signature.
    var transcriptBytes: [UInt8] { Array(body) + Array(signature) }
}

/// Credentials whose login-server signature has been checked, by hash of their signed bytes.
final class CredentialCache: Sendable {
    private let capacity: Int
    private let entries: Mutex<[[UInt8]: Credential]>

    init(capacity: Int) {
        self.capacity = capacity
        self.entries = Mutex([:])
    }

    func lookup(_ key: [UInt8]) -> Credential? {
        entries.withLock { $0[key] }
    }

    func insert(_ key: [UInt8], _ credential: Credential) {
        entries.withLock { entries in
            // Forgetting everything now and then is simpler than LRU and costs one re-check each.
            if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            entries[key] = credential
        }
    }
}
