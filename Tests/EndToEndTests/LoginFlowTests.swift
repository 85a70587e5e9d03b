// Registration, login and update download against real servers on loopback.

import Foundation
import SkylarkCrypto
import SkylarkTestSupport
import SkylarkWire
import Testing

@Suite("Registration, login and updates", .timeLimit(.minutes(2)))
struct LoginFlowTests {
    @Test("happy path: register, login with update notice, owner-only state, verified download")
    func happyPath() async throws {
        try await withSandbox { sandbox in
            let network = try await sandbox.startNetwork()
            let client = sandbox.path("client-alice")

            let registered = try await sandbox.register("alice", "alice-password-1", profile: network.profile, state: client)
            expectExit(registered, 0)
            #expect(registered.stdout == "registered alice\n", "\(registered)")

            let login = try await sandbox.login("alice", "alice-password-1", profile: network.profile, state: client)
            expectExit(login, 0)
            let lines = login.stdout.split(separator: "\n").map(String.init)
            #expect(lines.count == 2, "\(login)")
            #expect(lines.first == "update available: 0.2.0", "the update check comes first: \(login)")
            #expect(lines.last?.hasPrefix("logged in as alice (node id ") == true, "\(login)")

            // State folder 0700, secrets 0600.
            #expect(try permissions(client) == 0o700)
            #expect(try permissions(client + "/credential.json") == 0o600)
            #expect(try permissions(client + "/identity.pem") == 0o600)

            // The stored credential is the login server's signature over alice and our identity key.
            let stored = try readJSONObject(client + "/credential.json")
            var signed = LoginSignedCredential()
            signed.body = try #require(Data(base64Encoded: stored["body"] as? String ?? ""))
            signed.signature = try #require(Data(base64Encoded: stored["signature"] as? String ?? ""))
            let credential = try Credential.verify(
                signed, issuer: try loadPublicKey(network.login.state + "/login-public.pem"),
                now: Int64(Date().timeIntervalSince1970))
            #expect(credential.name == "alice")
            #expect(login.stdout.contains("credential serial \(credential.serial),"), "\(login)")
            #expect(stored["name"] as? String == "alice")
            #expect(stored["nodeID"] as? String == credential.nodeID.hexString)
            #expect(login.stdout.contains("node id \(credential.nodeID.hexString)"))
            let identityPEM = readFile(client + "/identity.pem")
            let identity = try Ed25519.PrivateKey(pem: identityPEM)
            #expect(try identity.publicKey().rawRepresentation() == credential.userPublicKey)

            // A second login keeps the identity key and gets the next serial.
            let again = try await sandbox.login("alice", "alice-password-1", profile: network.profile, state: client)
            expectExit(again, 0)
            #expect(
                again.stdout.contains("logged in as alice (node id \(credential.nodeID.hexString), credential serial \(credential.serial + 1),"),
                "the next serial: \(again)")
            #expect(readFile(client + "/identity.pem") == identityPEM)

            // The release downloads, verified, byte for byte.
            let release = try #require(network.release)
            let download = sandbox.path("download")
            let update = try await sandbox.skylark(["update", "--network", network.profile, "--download", download])
            expectExit(update, 0)
            #expect(update.stdout.contains("update available: 0.2.0"), "\(update)")
            #expect(
                update.stdout.contains("verified \(release.name) (\(release.bytes.count) bytes, sha256 \(SHA256.hash(release.bytes).hexString))"),
                "\(update)")
            let downloaded = readBytes(download + "/" + release.name)
            #expect(downloaded == release.bytes, "downloaded \(downloaded?.count ?? 0) bytes, published \(release.bytes.count)")
            #expect((try? FileManager.default.contentsOfDirectory(atPath: download)) == [release.name])
        }
    }

    @Test("without --download, update only reports; a current release is 'up to date' and login prints no notice")
    func upToDate() async throws {
        try await withSandbox { sandbox in
            let updateState = try await sandbox.initUpdate()
            let file = try sandbox.makeReleaseFile("skylark-0.1.0.tar.gz", size: 100)
            try await sandbox.publish(state: updateState, version: "0.1.0", files: [file.path])
            let update = try await sandbox.serveUpdate(state: updateState)
            let login = try await sandbox.startLogin(updateURL: update.url, updateKey: update.publicKeyPath)

            let check = try await sandbox.skylark(["update", "--network", login.profile])
            expectExit(check, 0)
            #expect(check.stdout == "up to date: running 0.1.0, latest 0.1.0\n", "\(check)")

            expectExit(try await sandbox.register("carol", "carol-password", profile: login.profile), 0)
            let loggedIn = try await sandbox.login("carol", "carol-password", profile: login.profile)
            expectExit(loggedIn, 0)
            #expect(!loggedIn.stdout.contains("update available"), "\(loggedIn)")
            #expect(loggedIn.stdout.hasPrefix("logged in as carol"), "\(loggedIn)")
            #expect(loggedIn.stderr.isEmpty, "\(loggedIn)")
        }
    }

    @Test("names are unique case-insensitively after NFKC; bad names and short passwords are refused")
    func names() async throws {
        try await withSandbox { sandbox in
            let network = try await sandbox.startNetwork(withUpdate: false)
            let profile = network.profile

            expectExit(try await sandbox.register("alice", "alice-password-1", profile: profile), 0)
            expectExit(
                try await sandbox.register("ALICE", "another-password", profile: profile, state: sandbox.path("x")), 5,
                stderrContains: "name taken: 'alice' is already registered")
            // Fullwidth letters fold to the same name under NFKC.
            expectExit(
                try await sandbox.register("Ａｌｉｃｅ", "another-password", profile: profile, state: sandbox.path("x")), 5,
                stderrContains: "name taken")

            expectExit(
                try await sandbox.register("1abc", "good-password", profile: profile), 10,
                stderrContains: "invalid name: a name must start with a letter")
            expectExit(
                try await sandbox.register("ab", "good-password", profile: profile), 10,
                stderrContains: "invalid name: a name needs at least 3 characters")
            expectExit(
                try await sandbox.register("bad name", "good-password", profile: profile), 10,
                stderrContains: "invalid name: a name may hold only")
            expectExit(
                try await sandbox.register(String(repeating: "a", count: 33), "good-password", profile: profile), 10,
                stderrContains: "invalid name: a name has at most 32 characters")
            expectExit(
                try await sandbox.register("bob", "short", profile: profile), 10,
                stderrContains: "password refused: the password is too short")
            expectExit(try await sandbox.register("bob", "", profile: profile), 10, stderrContains: "password refused")

            // Letters from any script are fine; the refused ones were not registered.
            let greek = try await sandbox.register("Ζωή", "greek-password", profile: profile)
            expectExit(greek, 0)
            #expect(greek.stdout == "registered ζωή\n", "\(greek)")
            expectExit(try await sandbox.register("bob", "bob-password", profile: profile), 0)
            expectExit(try await sandbox.login("1abc", "good-password", profile: profile), 10, stderrContains: "invalid name")
        }
    }

    @Test("wrong password exits 3, unknown name exits 4, the name matches case-insensitively")
    func wrongPasswordAndUnknownName() async throws {
        try await withSandbox { sandbox in
            let network = try await sandbox.startNetwork(withUpdate: false)
            let client = sandbox.path("client-alice")
            expectExit(try await sandbox.register("alice", "alice-password-1", profile: network.profile, state: client), 0)

            let wrong = try await sandbox.login("alice", "not-the-password", profile: network.profile, state: client)
            expectExit(wrong, 3, stderrContains: "wrong password for 'alice'")
            #expect(!fileExists(client + "/credential.json"), "a refused login stores no credential")

            let unknown = try await sandbox.login("nobody", "whatever-password", profile: network.profile)
            expectExit(unknown, 4, stderrContains: "unknown name: no account is named 'nobody'")

            let upper = try await sandbox.login("ALICE", "alice-password-1", profile: network.profile, state: client)
            expectExit(upper, 0)
            #expect(upper.stdout.hasPrefix("logged in as alice "), "\(upper)")
            #expect(try permissions(client + "/credential.json") == 0o600)
        }
    }

    @Test("throttling per name: after the free failures even the right password is refused (exit 9)")
    func throttlePerName() async throws {
        try await withSandbox { sandbox in
            let network = try await sandbox.startNetwork(withUpdate: false, loginExtra: ["--name-free-failures", "1", "--lockout-base", "60"])
            expectExit(try await sandbox.register("alice", "alice-password-1", profile: network.profile), 0)
            expectExit(try await sandbox.register("bob", "bob-password-1", profile: network.profile), 0)

            expectExit(try await sandbox.login("alice", "guess-number-1", profile: network.profile), 3, stderrContains: "wrong password")
            expectExit(try await sandbox.login("alice", "guess-number-2", profile: network.profile), 3, stderrContains: "wrong password")
            let locked = try await sandbox.login("alice", "alice-password-1", profile: network.profile)
            expectExit(locked, 9, stderrContains: "too many failed attempts: try again in ")
            let seconds = locked.stderr.split(separator: " ").compactMap { Int($0) }.first
            #expect(seconds.map { (1...60).contains($0) } == true, "retry delay within the 60 s lockout: \(locked)")
            #expect(!fileExists(sandbox.path("client-alice/credential.json")))

            // The lock is per name: bob logs in from the same address.
            expectExit(try await sandbox.login("bob", "bob-password-1", profile: network.profile), 0)
        }
    }

    @Test("throttling per address: failures on any names lock the address out (exit 9)")
    func throttlePerAddress() async throws {
        try await withSandbox { sandbox in
            let network = try await sandbox.startNetwork(withUpdate: false, loginExtra: ["--address-free-failures", "1", "--lockout-base", "60"])
            expectExit(try await sandbox.register("alice", "alice-password-1", profile: network.profile), 0)
            expectExit(try await sandbox.login("ghost1", "whatever-password", profile: network.profile), 4, stderrContains: "unknown name")
            expectExit(try await sandbox.login("ghost2", "whatever-password", profile: network.profile), 4, stderrContains: "unknown name")
            expectExit(
                try await sandbox.login("alice", "alice-password-1", profile: network.profile), 9,
                stderrContains: "too many failed attempts")
        }
    }
}
