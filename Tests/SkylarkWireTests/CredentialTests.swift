import Foundation
import SkylarkCrypto
import SkylarkTestSupport
import SkylarkWire
import Testing

@Suite("Credential")
struct CredentialTests {
    static let issuedAt: Int64 = 1_700_000_000
    static let lifetime: Int64 = 86_400

    static func issue(userKey: [UInt8], serial: UInt64 = 7) throws -> LoginSignedCredential {
        try Credential.issue(
            name: "alice", userPublicKey: userKey, issuedAt: issuedAt, lifetime: lifetime,
            serial: serial, signer: TestKeys.login)
    }

    /// Signs a hand-made body with the issuer key, as a compromised or buggy issuer could.
    static func signByHand(_ body: LoginCredentialBody) throws -> LoginSignedCredential {
        let bytes: [UInt8] = try body.serializedBytes()
        var signed = LoginSignedCredential()
        signed.body = Data(bytes)
        signed.signature = Data(try TestKeys.login.sign(bytes))
        return signed
    }

    @Test("issue then verify gives back every field; node id is the first 20 bytes of SHA-256(key)")
    func issueThenVerify() throws {
        let userKey = try Ed25519.PrivateKey().publicKey().rawRepresentation()
        let signed = try Self.issue(userKey: userKey, serial: 42)
        let credential = try Credential.verify(signed, issuer: TestKeys.login.publicKey, now: Self.issuedAt + 10)
        #expect(credential.name == "alice")
        #expect(credential.userPublicKey == userKey)
        #expect(credential.nodeID == Array(SHA256.hash(userKey).prefix(20)))
        #expect(credential.nodeID.count == Credential.nodeIDByteCount)
        #expect(Credential.nodeID(for: userKey) == credential.nodeID)
        #expect(credential.issuedAt == Self.issuedAt)
        #expect(credential.expiresAt == Self.issuedAt + Self.lifetime)
        #expect(credential.serial == 42)
        #expect(credential.signed == signed)
    }

    @Test("Different keys give different node ids")
    func nodeIDsDiffer() throws {
        let a = try Ed25519.PrivateKey().publicKey().rawRepresentation()
        let b = try Ed25519.PrivateKey().publicKey().rawRepresentation()
        #expect(Credential.nodeID(for: a) != Credential.nodeID(for: b))
    }

    @Test("Verifying with another issuer key throws .badSignature")
    func otherIssuer() throws {
        let signed = try Self.issue(userKey: try Ed25519.PrivateKey().publicKey().rawRepresentation())
        #expect(throws: Credential.Invalid.badSignature) {
            try Credential.verify(signed, issuer: TestKeys.other.publicKey, now: Self.issuedAt)
        }
    }

    @Test("Tampered body or signature bytes throw .badSignature")
    func tampered() throws {
        let signed = try Self.issue(userKey: try Ed25519.PrivateKey().publicKey().rawRepresentation())
        for bit in [0, 13, 100, signed.body.count * 8 - 1] {
            var copy = signed
            copy.body = flipping(signed.body, bit: bit)
            #expect(throws: Credential.Invalid.badSignature, "body bit \(bit)") {
                try Credential.verify(copy, issuer: TestKeys.login.publicKey, now: Self.issuedAt)
            }
        }
        var badSignature = signed
        badSignature.signature = flipping(signed.signature, bit: 5)
        #expect(throws: Credential.Invalid.badSignature) { try Credential.verify(badSignature, issuer: TestKeys.login.publicKey, now: Self.issuedAt) }
        #expect(throws: Credential.Invalid.badSignature) {
            try Credential.verify(LoginSignedCredential(), issuer: TestKeys.login.publicKey, now: Self.issuedAt)
        }
    }

    @Test("Validity window: expired at expiresAt, accepted one second before; skew tolerated, beyond refused")
    func validityWindow() throws {
        let signed = try Self.issue(userKey: try Ed25519.PrivateKey().publicKey().rawRepresentation())
        let issuer = TestKeys.login.publicKey
        let expiresAt = Self.issuedAt + Self.lifetime

        #expect(throws: Credential.Invalid.expired(at: expiresAt)) { try Credential.verify(signed, issuer: issuer, now: expiresAt) }
        #expect(throws: Credential.Invalid.expired(at: expiresAt)) { try Credential.verify(signed, issuer: issuer, now: expiresAt + 1_000_000) }
        #expect(try Credential.verify(signed, issuer: issuer, now: expiresAt - 1).expiresAt == expiresAt)

        // The verifier's clock may be up to clockSkew (default 300 s) behind the issuer's.
        #expect(try Credential.verify(signed, issuer: issuer, now: Self.issuedAt - 300).name == "alice")
        #expect(throws: Credential.Invalid.notYetValid(from: Self.issuedAt)) { try Credential.verify(signed, issuer: issuer, now: Self.issuedAt - 301) }
        #expect(throws: Credential.Invalid.notYetValid(from: Self.issuedAt)) {
            try Credential.verify(signed, issuer: issuer, now: Self.issuedAt - 10, clockSkew: 0)
        }
    }

    @Test("A signed body whose node id does not match its key throws .nodeIDMismatch")
    func nodeIDMismatch() throws {
        let userKey = try Ed25519.PrivateKey().publicKey().rawRepresentation()
        var body = LoginCredentialBody()
        body.name = "mallory"
        body.userPublicKey = Data(userKey)
        var chosenID = Credential.nodeID(for: userKey)
        chosenID[0] ^= 0xff  // a node id picked to land next to a victim in the DHT
        body.nodeID = Data(chosenID)
        body.issuedAt = Self.issuedAt
        body.expiresAt = Self.issuedAt + Self.lifetime
        body.serial = 1
        let signed = try Self.signByHand(body)
        #expect(throws: Credential.Invalid.nodeIDMismatch) { try Credential.verify(signed, issuer: TestKeys.login.publicKey, now: Self.issuedAt) }

        // The same body with the right node id is fine: the mismatch alone was the problem.
        body.nodeID = Data(Credential.nodeID(for: userKey))
        #expect(try Credential.verify(try Self.signByHand(body), issuer: TestKeys.login.publicKey, now: Self.issuedAt).name == "mallory")
    }

    @Test("Signed but malformed bodies throw .malformed (bad key size, empty name, not a protobuf)")
    func malformedBodies() throws {
        let userKey = try Ed25519.PrivateKey().publicKey().rawRepresentation()
        var shortKey = LoginCredentialBody()
        shortKey.name = "alice"
        shortKey.userPublicKey = Data(userKey.prefix(31))
        shortKey.nodeID = Data(Credential.nodeID(for: Array(userKey.prefix(31))))
        shortKey.expiresAt = Self.issuedAt + 10
        #expect(throws: Credential.Invalid.malformed) {
            try Credential.verify(try Self.signByHand(shortKey), issuer: TestKeys.login.publicKey, now: Self.issuedAt)
        }

        var noName = LoginCredentialBody()
        noName.userPublicKey = Data(userKey)
        noName.nodeID = Data(Credential.nodeID(for: userKey))
        noName.expiresAt = Self.issuedAt + 10
        #expect(throws: Credential.Invalid.malformed) {
            try Credential.verify(try Self.signByHand(noName), issuer: TestKeys.login.publicKey, now: Self.issuedAt)
        }

        let junk: [UInt8] = [0x0a, 0x7f, 0x01]
        var notProtobuf = LoginSignedCredential()
        notProtobuf.body = Data(junk)
        notProtobuf.signature = Data(try TestKeys.login.sign(junk))
        #expect(throws: Credential.Invalid.malformed) { try Credential.verify(notProtobuf, issuer: TestKeys.login.publicKey, now: Self.issuedAt) }
    }
}
