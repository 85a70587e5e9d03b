import SkylarkCrypto
import SkylarkOverlay
import SkylarkWire

/// A fixed "now" (Unix seconds) so that every test is reproducible.
public let testNow: Double = 1_750_000_000

/// A user: identity key, the login server's credential for it, and the resulting identity.
public struct TestUser: Sendable {
    public let name: String
    public let key: Ed25519.PrivateKey
    public let signed: LoginSignedCredential
    public let credential: Credential
    public let identity: LocalIdentity

    public var nodeID: NodeID { NodeID(bytes: credential.nodeID) }
    public var publicKey: [UInt8] { credential.userPublicKey }

    /// `signer` defaults to the trusted login key. The credential is decoded with a verifier for
    /// the signer at issue time, so forged and expired credentials can be built too.
    public init(
        _ name: String, issuedAt: Int64 = Int64(testNow) - 60, lifetime: Int64 = 86_400, serial: UInt64 = 1,
        signer: RSA.PrivateKey = TestKeys.login, key: Ed25519.PrivateKey? = nil
    ) throws {
        let key = try key ?? Ed25519.PrivateKey()
        let signed = try Credential.issue(
            name: name, userPublicKey: try key.publicKey().rawRepresentation(), issuedAt: issuedAt,
            lifetime: lifetime, serial: serial, signer: signer)
        let credential = try Verifier(loginKey: signer.publicKey).credential(signed, now: Double(issuedAt))
        self.name = name
        self.key = key
        self.signed = signed
        self.credential = credential
        self.identity = try LocalIdentity(key: key, credential: credential)
    }

    /// The same user without a credential (before logging in).
    public func anonymous() throws -> LocalIdentity { try LocalIdentity(key: key, credential: nil) }
}

/// Users made once and shared (Ed25519 and RSA signing are cheap, but this keeps tests short).
public enum Users {
    public static let alice = try! TestUser("alice", serial: 1)
    public static let bob = try! TestUser("bob", serial: 2)
    public static let carol = try! TestUser("carol", serial: 3)
}
