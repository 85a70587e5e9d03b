import Logging
import SkylarkCrypto
import SkylarkWire

/// RSA keys are slow to generate: made once per test process and shared by every test target.
public enum TestKeys {
    /// The login server's key (what profiles pin and credentials are signed with).
    public static let login = try! RSA.PrivateKey(bits: 2048)
    /// The update server's signing key.
    public static let update = try! RSA.PrivateKey(bits: 2048)
    /// A key nobody trusts: what an impostor would hold.
    public static let other = try! RSA.PrivateKey(bits: 2048)
}

/// 2025-01-01T00:00:00Z; the cores take `now` as a parameter.
public let epoch: Int64 = 1_735_689_600

public let silentLogger = Logger(label: "skylark-test") { _ in SwiftLogNoOpLogHandler() }

/// A network profile for a login server on 127.0.0.1:`loginPort`, signed by (and pinning) `loginKey`.
public func signedProfile(loginPort: Int, loginKey: RSA.PrivateKey = TestKeys.login, updateURL: String? = nil) throws -> VerifiedProfile {
    let body = NetworkProfile(
        loginAddress: "127.0.0.1:\(loginPort)", loginPublicKey: try loginKey.publicKey.pem(), updateURL: updateURL,
        updatePublicKey: try TestKeys.update.publicKey.pem(), supernodes: [], issuedAt: epoch)
    return try VerifiedProfile(document: SignedDocument.sign(body, with: loginKey))
}
