import Foundation
import SkylarkCrypto
import SkylarkTestSupport
import SkylarkWire
import Testing

@Suite("VerifiedProfile")
struct VerifiedProfileTests {
    static func profile(loginAddress: String = "login.example:7000", supernodes: [String] = ["sn.example:33033"]) throws -> NetworkProfile {
        NetworkProfile(
            loginAddress: loginAddress, loginPublicKey: try TestKeys.login.publicKey.pem(),
            updateURL: "http://updates.example:8080", updatePublicKey: try TestKeys.update.publicKey.pem(),
            supernodes: supernodes, issuedAt: 1_700_000_000)
    }

    @Test("A correctly signed profile verifies and exposes parsed keys and endpoint")
    func verifies() throws {
        let body = try Self.profile()
        let verified = try VerifiedProfile(document: try SignedDocument.sign(body, with: TestKeys.login))
        #expect(verified.profile == body)
        #expect(verified.loginKey == TestKeys.login.publicKey)
        #expect(verified.updateKey == TestKeys.update.publicKey)
        #expect(verified.loginEndpoint == HostPort(host: "login.example", port: 7000))
    }

    @Test("A profile without an update key verifies with updateKey nil")
    func noUpdateKey() throws {
        var body = try Self.profile()
        body.updateURL = nil
        body.updatePublicKey = nil
        let verified = try VerifiedProfile(document: try SignedDocument.sign(body, with: TestKeys.login))
        #expect(verified.updateKey == nil)
    }

    @Test("A profile signed by a different key than the one it names is refused")
    func signedByOtherKey() throws {
        let document = try SignedDocument.sign(try Self.profile(), with: TestKeys.other)
        #expect(throws: ProfileError.invalid("signature does not match the login key")) { try VerifiedProfile(document: document) }
    }

    @Test("A profile edited after signing is refused")
    func editedAfterSigning() throws {
        var document = try SignedDocument.sign(try Self.profile(), with: TestKeys.login)
        document.body.loginAddress = "evil.example:7000"
        #expect(throws: ProfileError.invalid("signature does not match the login key")) { try VerifiedProfile(document: document) }
    }

    @Test("A bad login address is refused even when correctly signed", arguments: ["login.example", "login.example:99999", ":7000", "::1:7000"])
    func badLoginAddress(address: String) throws {
        let document = try SignedDocument.sign(try Self.profile(loginAddress: address), with: TestKeys.login)
        let error = #expect(throws: ProfileError.self) { try VerifiedProfile(document: document) }
        guard case let .invalid(why) = error else { Issue.record("expected .invalid, got \(String(describing: error))"); return }
        #expect(why.contains("login address"))
        #expect(why.contains(address))
    }

    @Test("A bad supernode address is refused")
    func badSupernode() throws {
        let document = try SignedDocument.sign(try Self.profile(supernodes: ["ok.example:1", "broken"]), with: TestKeys.login)
        #expect(throws: ProfileError.invalid("supernode 'broken' is not HOST:PORT")) { try VerifiedProfile(document: document) }
    }

    @Test("Unsupported format, unparsable login key and bad update key are refused")
    func badFormatAndKeys() throws {
        var future = try Self.profile()
        future.format = 2
        #expect(throws: ProfileError.invalid("format 2 is not supported")) {
            try VerifiedProfile(document: try SignedDocument.sign(future, with: TestKeys.login))
        }

        var badLoginKey = try Self.profile()
        badLoginKey.loginPublicKey = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
        let loginError = #expect(throws: ProfileError.self) { try VerifiedProfile(document: try SignedDocument.sign(badLoginKey, with: TestKeys.login)) }
        guard case let .invalid(loginWhy) = loginError else { Issue.record("expected .invalid"); return }
        #expect(loginWhy.hasPrefix("login public key"))

        var badUpdateKey = try Self.profile()
        badUpdateKey.updatePublicKey = "garbage"
        let updateError = #expect(throws: ProfileError.self) { try VerifiedProfile(document: try SignedDocument.sign(badUpdateKey, with: TestKeys.login)) }
        guard case let .invalid(updateWhy) = updateError else { Issue.record("expected .invalid"); return }
        #expect(updateWhy.hasPrefix("update public key"))
    }

    @Test("load(path:) reads and verifies a written profile; a missing file is .unreadable; garbage is .invalid")
    func load() throws {
        let folder = try makeTemporaryDirectory()
        defer { removeDirectory(folder) }

        let body = try Self.profile()
        let path = folder + "/network.json"
        try StateFiles.write(Array(try SignedDocument.sign(body, with: TestKeys.login).encoded()), to: path)
        let verified = try VerifiedProfile.load(path: path)
        #expect(verified.profile == body)
        #expect(verified.loginKey == TestKeys.login.publicKey)

        let missing = folder + "/absent.json"
        #expect(throws: ProfileError.unreadable(path: missing)) { try VerifiedProfile.load(path: missing) }

        let garbage = folder + "/garbage.json"
        try StateFiles.write(Array("{ not json".utf8), to: garbage)
        #expect(throws: ProfileError.invalid("malformed document: not valid JSON")) { try VerifiedProfile.load(path: garbage) }

        let forged = folder + "/forged.json"
        try StateFiles.write(Array(try SignedDocument.sign(body, with: TestKeys.other).encoded()), to: forged)
        #expect(throws: ProfileError.invalid("signature does not match the login key")) { try VerifiedProfile.load(path: forged) }
    }
}
