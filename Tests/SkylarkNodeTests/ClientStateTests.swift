import Foundation
import SkylarkCrypto
import SkylarkNode
import SkylarkTestSupport
import SkylarkWire
import Testing

@Suite struct ClientStateTests {
    @Test func identityIsCreatedOnceAndReloadedEqual() throws {
        let parent = try makeTemporaryDirectory()
        defer { removeDirectory(parent) }
        let state = ClientState(directory: parent + "/skylark")
        #expect(!FileManager.default.fileExists(atPath: state.identityPath))
        let first = try state.loadOrCreateIdentity()
        let second = try state.loadOrCreateIdentity()
        #expect(try first.rawRepresentation() == second.rawRepresentation())
        #expect(try first.publicKey().rawRepresentation() == second.publicKey().rawRepresentation())
        #expect(try permissions(state.identityPath) == 0o600)
        #expect(try permissions(state.directory) == 0o700)
        // Another folder gets another identity.
        let elsewhere = try ClientState(directory: parent + "/other").loadOrCreateIdentity()
        #expect(try elsewhere.rawRepresentation() != first.rawRepresentation())
        // The reloaded key signs what the first one verifies.
        let message = Array("hello".utf8)
        #expect(try first.publicKey().verify(signature: second.sign(message), for: message))
    }

    func issuedCredential(for state: ClientState) throws -> Credential {
        let userKey = try state.loadOrCreateIdentity().publicKey().rawRepresentation()
        let signed = try Credential.issue(name: "alice", userPublicKey: userKey, issuedAt: epoch, lifetime: 3600, serial: 42, signer: TestKeys.login)
        return try Credential.verify(signed, issuer: TestKeys.login.publicKey, now: epoch)
    }

    @Test func credentialIsSavedPrivatelyAndReverifiedOnLoad() throws {
        let parent = try makeTemporaryDirectory()
        defer { removeDirectory(parent) }
        // A folder that exists with loose permissions is tightened.
        let directory = parent + "/skylark"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let state = ClientState(directory: directory)
        #expect(try state.loadCredential(issuer: TestKeys.login.publicKey, now: epoch) == nil, "no credential yet")

        let credential = try issuedCredential(for: state)
        try state.save(credential)
        #expect(try permissions(state.credentialPath) == 0o600)
        #expect(try permissions(directory) == 0o700)

        #expect(try state.loadCredential(issuer: TestKeys.login.publicKey, now: epoch + 10) == credential)
        // Re-verified: another issuer or a later clock refuse it.
        #expect(throws: Credential.Invalid.badSignature) { try state.loadCredential(issuer: TestKeys.other.publicKey, now: epoch + 10) }
        #expect(throws: Credential.Invalid.expired(at: epoch + 3600)) { try state.loadCredential(issuer: TestKeys.login.publicKey, now: epoch + 3600) }

        // The readable fields match the credential.
        let stored = try JSONDecoder().decode(ClientState.StoredCredential.self, from: try #require(FileManager.default.contents(atPath: state.credentialPath)))
        #expect(stored.name == "alice")
        #expect(stored.serial == 42)
        #expect(stored.nodeID == credential.nodeID.hexString)
        #expect(stored.expiresAt == epoch + 3600)
    }

    func tamper(_ state: ClientState, _ change: (inout [String: Any]) -> Void) throws {
        let data = try #require(FileManager.default.contents(atPath: state.credentialPath))
        var object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        change(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: state.credentialPath))
    }

    @Test func tamperedCredentialFileIsRefused() throws {
        let parent = try makeTemporaryDirectory()
        defer { removeDirectory(parent) }
        let state = ClientState(directory: parent + "/skylark")
        let credential = try issuedCredential(for: state)

        // One flipped bit in the signed body.
        try state.save(credential)
        try tamper(state) { object in
            var body = Array(Data(base64Encoded: object["body"] as! String)!)
            body[body.count / 2] ^= 0x01
            object["body"] = Data(body).base64EncodedString()
        }
        #expect(throws: (any Error).self) { try state.loadCredential(issuer: TestKeys.login.publicKey, now: epoch) }

        // The body of another credential (another serial) under this signature.
        try state.save(credential)
        let other = try Credential.issue(
            name: "alice", userPublicKey: credential.userPublicKey, issuedAt: epoch, lifetime: 3600, serial: 43, signer: TestKeys.login)
        try tamper(state) { $0["body"] = other.body.base64EncodedString() }
        #expect(throws: Credential.Invalid.badSignature) { try state.loadCredential(issuer: TestKeys.login.publicKey, now: epoch) }

        // A truncated signature, and a file that is not JSON.
        try state.save(credential)
        try tamper(state) { $0["signature"] = String(($0["signature"] as! String).dropLast(8)) }
        #expect(throws: (any Error).self) { try state.loadCredential(issuer: TestKeys.login.publicKey, now: epoch) }
        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: state.credentialPath))
        #expect(throws: (any Error).self) { try state.loadCredential(issuer: TestKeys.login.publicKey, now: epoch) }

        // The untouched file loads again.
        try state.save(credential)
        #expect(try state.loadCredential(issuer: TestKeys.login.publicKey, now: epoch) == credential)
    }
}
