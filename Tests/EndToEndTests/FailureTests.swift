// What users see when the network is not as the profile says: unreachable servers, an impostor
// login server, forged or tampered updates, broken profiles, and the servers' own refusals.

import Foundation
import SkylarkCrypto
import SkylarkTestSupport
import SkylarkWire
import Testing

@Suite("Unreachable servers, key mismatch, forged updates, bad profiles", .timeLimit(.minutes(2)))
struct FailureTests {
    @Test("login server unreachable: exit 6 'unreachable', for login, register and update")
    func loginServerUnreachable() async throws {
        try await withSandbox { sandbox in
            let closedLogin = try sandbox.reservePort()  // bound, never listening: connections are refused
            let closedUpdate = try sandbox.reservePort()
            let updateState = try await sandbox.initUpdate()
            let state = try await sandbox.initLogin(
                port: closedLogin.port, updateURL: "http://127.0.0.1:\(closedUpdate.port)",
                updateKey: updateState + "/update-public.pem")
            let profile = state + "/network.json"

            let login = try await sandbox.login("alice", "alice-password-1", profile: profile)
            expectExit(login, 6, stderrContains: "login server unreachable at 127.0.0.1:\(closedLogin.port)")
            #expect(!fileExists(sandbox.path("client-alice/credential.json")))
            let register = try await sandbox.register("alice", "alice-password-1", profile: profile)
            expectExit(register, 6, stderrContains: "login server unreachable")

            let update = try await sandbox.skylark(["update", "--network", profile])
            expectExit(update, 6, stderrContains: "update server unreachable at http://127.0.0.1:\(closedUpdate.port)/manifest.json")
        }
    }

    @Test("a server holding another key than the pinned one: exit 7 'key mismatch'")
    func serverKeyMismatch() async throws {
        try await withSandbox { sandbox in
            let reservation = try sandbox.reservePort()
            let stateA = try await sandbox.initLogin("login-a", port: reservation.port)
            let stateB = try await sandbox.initLogin("login-b", port: reservation.port)
            _ = try await sandbox.serveLogin(state: stateB, port: reservation.port, reservation: reservation)

            let client = sandbox.path("client")
            let register = try await sandbox.register("alice", "alice-password-1", profile: stateA + "/network.json", state: client)
            expectExit(register, 7, stderrContains: "server key mismatch")
            let login = try await sandbox.login("alice", "alice-password-1", profile: stateA + "/network.json", state: client)
            expectExit(login, 7, stderrContains: "server key mismatch")
            #expect(!fileExists(client + "/credential.json"))

            // The same server works for B's own profile.
            expectExit(try await sandbox.register("alice", "alice-password-1", profile: stateB + "/network.json", state: client), 0)
            expectExit(try await sandbox.login("alice", "alice-password-1", profile: stateB + "/network.json", state: client), 0)
        }
    }

    @Test("update server unreachable or without a release during login: a warning, login succeeds")
    func updateServerUnreachableIsOnlyAWarning() async throws {
        try await withSandbox { sandbox in
            let closedUpdate = try sandbox.reservePort()
            let updateState = try await sandbox.initUpdate()
            let login = try await sandbox.startLogin(updateURL: "http://127.0.0.1:\(closedUpdate.port)", updateKey: updateState + "/update-public.pem")
            let client = sandbox.path("client-alice")
            expectExit(try await sandbox.register("alice", "alice-password-1", profile: login.profile, state: client), 0)

            let result = try await sandbox.login("alice", "alice-password-1", profile: login.profile, state: client)
            expectExit(result, 0, stderrContains: "skylark: warning: update server unreachable at http://127.0.0.1:\(closedUpdate.port)/manifest.json")
            #expect(result.stdout.hasPrefix("logged in as alice"), "\(result)")
            #expect(!result.stdout.contains("update available"), "\(result)")
            #expect(fileExists(client + "/credential.json"))

            // An update server that has published nothing answers 404: also only a warning.
            let empty = try await sandbox.serveUpdate(state: updateState)
            let second = try await sandbox.startLogin("login-2", updateURL: empty.url, updateKey: empty.publicKeyPath)
            expectExit(try await sandbox.register("bob", "bob-password-1", profile: second.profile), 0)
            let bob = try await sandbox.login("bob", "bob-password-1", profile: second.profile)
            expectExit(bob, 0, stderrContains: "skylark: warning: update server answered HTTP 404")
            #expect(bob.stdout.hasPrefix("logged in as bob"), "\(bob)")
        }
    }

    @Test("manifest signed by another key than the pinned one: login exits 8, no credential stored")
    func badUpdateSignature() async throws {
        try await withSandbox { sandbox in
            let stateX = try await sandbox.initUpdate("update-x")
            let stateY = try await sandbox.initUpdate("update-y")
            let release = try sandbox.makeReleaseFile()
            try await sandbox.publish(state: stateX, version: "0.2.0", files: [release.path])
            let updateX = try await sandbox.serveUpdate(state: stateX)
            let login = try await sandbox.startLogin(updateURL: updateX.url, updateKey: stateY + "/update-public.pem")
            let client = sandbox.path("client-alice")
            expectExit(try await sandbox.register("alice", "alice-password-1", profile: login.profile, state: client), 0)

            let result = try await sandbox.login("alice", "alice-password-1", profile: login.profile, state: client)
            expectExit(result, 8, stderrContains: "bad update signature: the manifest is not signed by the pinned update key")
            #expect(!result.stdout.contains("logged in"), "\(result)")
            #expect(!fileExists(client + "/credential.json"))

            let download = sandbox.path("download")
            let update = try await sandbox.skylark(["update", "--network", login.profile, "--download", download])
            expectExit(update, 8, stderrContains: "bad update signature")
            #expect(!fileExists(download + "/" + release.name))
        }
    }

    @Test("unsigned or altered manifest: login and update exit 8")
    func unsignedAndAlteredManifest() async throws {
        try await withSandbox { sandbox in
            let network = try await sandbox.startNetwork()
            let update = try #require(network.update)
            let client = sandbox.path("client-alice")
            expectExit(try await sandbox.register("alice", "alice-password-1", profile: network.profile, state: client), 0)
            let original = try readJSONObject(update.manifestPath)

            // signature "".
            var unsigned = original
            unsigned["signature"] = ""
            try writeJSONObject(unsigned, to: update.manifestPath)
            expectExit(
                try await sandbox.login("alice", "alice-password-1", profile: network.profile, state: client), 8,
                stderrContains: "bad update signature: the manifest is unsigned")
            #expect(!fileExists(client + "/credential.json"))
            expectExit(try await sandbox.skylark(["update", "--network", network.profile]), 8, stderrContains: "bad update signature")

            // No signature field at all.
            var missing = original
            missing.removeValue(forKey: "signature")
            try writeJSONObject(missing, to: update.manifestPath)
            expectExit(
                try await sandbox.login("alice", "alice-password-1", profile: network.profile, state: client), 8,
                stderrContains: "bad update signature: the manifest is unsigned")

            // A body changed after signing.
            var altered = original
            var body = try #require(original["body"] as? [String: Any])
            body["version"] = "9.9.9"
            altered["body"] = body
            try writeJSONObject(altered, to: update.manifestPath)
            expectExit(
                try await sandbox.login("alice", "alice-password-1", profile: network.profile, state: client), 8,
                stderrContains: "bad update signature: the manifest is not signed by the pinned update key")
            #expect(!fileExists(client + "/credential.json"))

            // Restored, everything works again.
            try writeJSONObject(original, to: update.manifestPath)
            expectExit(try await sandbox.login("alice", "alice-password-1", profile: network.profile, state: client), 0)
        }
    }

    @Test("expired manifest (properly signed): update exits 8 'expired'; login only warns")
    func expiredManifest() async throws {
        try await withSandbox { sandbox in
            let network = try await sandbox.startNetwork()
            let update = try #require(network.update)
            expectExit(try await sandbox.register("alice", "alice-password-1", profile: network.profile), 0)

            // Re-sign the published manifest with the update key, expired an hour ago.
            let key = try loadPrivateKey(update.state + "/update-key.pem")
            var manifest = try SignedDocument<ReleaseManifest>.decode(try #require(FileManager.default.contents(atPath: update.manifestPath))).body
            let now = Int64(Date().timeIntervalSince1970)
            manifest.publishedAt = now - 7200
            manifest.expiresAt = now - 3600
            try SignedDocument.sign(manifest, with: key).encoded().write(to: URL(fileURLWithPath: update.manifestPath))

            let download = sandbox.path("download")
            let result = try await sandbox.skylark(["update", "--network", network.profile, "--download", download])
            expectExit(result, 8, stderrContains: "update manifest rejected: expired at")
            #expect(!fileExists(download + "/skylark-0.2.0.tar.gz"))

            // README: only a bad or missing signature stops a login; an expired manifest is a warning.
            let login = try await sandbox.login("alice", "alice-password-1", profile: network.profile)
            expectExit(login, 0, stderrContains: "skylark: warning: update manifest rejected: expired at")
            #expect(!login.stdout.contains("update available"), "\(login)")
        }
    }

    @Test("a released file altered on the server: update --download exits 8 and writes nothing")
    func tamperedReleaseFile() async throws {
        try await withSandbox { sandbox in
            let network = try await sandbox.startNetwork()
            let update = try #require(network.update)
            let release = try #require(network.release)
            let served = update.state + "/releases/0.2.0/" + release.name
            let publishedCopy = readBytes(served) == release.bytes
            #expect(publishedCopy, "the published copy equals the release file")
            let download = sandbox.path("download")

            // Same size, one byte flipped: hash mismatch.
            var flipped = release.bytes
            flipped[100] ^= 0x01
            try Data(flipped).write(to: URL(fileURLWithPath: served))
            let hash = try await sandbox.skylark(["update", "--network", network.profile, "--download", download])
            expectExit(hash, 8, stderrContains: "update file '\(release.name)' rejected: SHA-256 differs from the signed manifest")
            #expect(!fileExists(download + "/" + release.name))
            #expect(!hash.stdout.contains("verified"), "\(hash)")

            // Shorter and longer files: size mismatch.
            try Data(release.bytes.prefix(2000)).write(to: URL(fileURLWithPath: served))
            let shorter = try await sandbox.skylark(["update", "--network", network.profile, "--download", download])
            expectExit(shorter, 8, stderrContains: "update file '\(release.name)' rejected: size differs from the signed manifest")
            #expect(!fileExists(download + "/" + release.name))

            try Data(release.bytes + [1, 2, 3]).write(to: URL(fileURLWithPath: served))
            let longer = try await sandbox.skylark(["update", "--network", network.profile, "--download", download])
            expectExit(longer, 8, stderrContains: "rejected: size differs from the signed manifest")
            #expect(longer.stderr.contains(release.name), "\(longer)")
            #expect(!fileExists(download + "/" + release.name))

            // The original file downloads again.
            try Data(release.bytes).write(to: URL(fileURLWithPath: served))
            expectExit(try await sandbox.skylark(["update", "--network", network.profile, "--download", download]), 0)
            let downloaded = readBytes(download + "/" + release.name)
            #expect(downloaded == release.bytes, "downloaded \(downloaded?.count ?? 0) bytes")
        }
    }

    @Test("invalid, tampered or missing network profile: client exits 11")
    func invalidProfile() async throws {
        try await withSandbox { sandbox in
            let network = try await sandbox.startNetwork()
            let profileText = readFile(network.profile)
            let address = "127.0.0.1:\(network.login.port)"
            #expect(profileText.contains("\"loginAddress\" : \"\(address)\""), "\(profileText)")

            // loginAddress changed after signing.
            let tampered = sandbox.path("tampered.json")
            try writeFile(tampered, profileText.replacingOccurrences(of: address, with: "127.0.0.2:\(network.login.port)"))
            for command in [["register", "alice"], ["login", "alice"]] {
                let result = try await sandbox.skylark(command + ["--network", tampered, "--state", sandbox.path("client")], password: "alice-password-1")
                expectExit(result, 11, stderrContains: "invalid network profile: signature does not match the login key")
            }
            expectExit(try await sandbox.skylark(["update", "--network", tampered]), 11, stderrContains: "invalid network profile")

            // Another login key substituted, with its own profile's signature: still not a match.
            let other = try await sandbox.initLogin("login-other", port: network.login.port)
            var swapped = try readJSONObject(network.profile)
            var body = try #require(swapped["body"] as? [String: Any])
            body["loginPublicKey"] = readFile(other + "/login-public.pem")
            swapped["body"] = body
            let swappedPath = sandbox.path("swapped.json")
            try writeJSONObject(swapped, to: swappedPath)
            expectExit(
                try await sandbox.skylark(["login", "alice", "--network", swappedPath, "--state", sandbox.path("client")], password: "alice-password-1"),
                11, stderrContains: "invalid network profile")

            // Not JSON, and missing.
            let garbage = sandbox.path("garbage.json")
            try writeFile(garbage, "this is not a profile\n")
            expectExit(
                try await sandbox.skylark(["login", "alice", "--network", garbage], password: "alice-password-1"), 11,
                stderrContains: "invalid network profile")
            expectExit(
                try await sandbox.skylark(["login", "alice", "--network", sandbox.path("missing.json")], password: "alice-password-1"), 11,
                stderrContains: "cannot read network profile")
            #expect(!fileExists(sandbox.path("client/credential.json")))
        }
    }

    @Test("a profile without an update server: update exits 8 'names no update server'")
    func profileWithoutUpdateServer() async throws {
        try await withSandbox { sandbox in
            let reservation = try sandbox.reservePort()
            let state = try await sandbox.initLogin(port: reservation.port)
            expectExit(
                try await sandbox.skylark(["update", "--network", state + "/network.json"]), 8,
                stderrContains: "the network profile names no update server")
        }
    }
}

@Suite("Server commands refuse unsafe or impossible requests", .timeLimit(.minutes(2)))
struct ServerCommandTests {
    @Test("init refuses to overwrite a key; serve needs an initialised folder; bad arguments are named")
    func loginServerCommands() async throws {
        try await withSandbox { sandbox in
            let state = try await sandbox.initLogin(port: 7000)
            let keyBefore = readFile(state + "/login-key.pem")
            #expect(try permissions(state) == 0o700)
            #expect(try permissions(state + "/login-key.pem") == 0o600)
            for name in ["login-public.pem", "accounts.sqlite", "network.json"] { #expect(fileExists(state + "/" + name), "\(name)") }

            let again = try await sandbox.run("skylark-login", ["init", "--state", state, "--key-bits", "2048"])
            #expect(again.status != 0, "\(again)")
            #expect(again.stderr.contains("already holds a login key; refusing to overwrite it"), "\(again)")
            #expect(readFile(state + "/login-key.pem") == keyBefore, "the key is unchanged")

            let empty = sandbox.path("empty")
            let serve = try await sandbox.run("skylark-login", ["serve", "--state", empty, "--listen", "127.0.0.1:0"])
            #expect(serve.status != 0, "\(serve)")
            #expect(serve.stderr.contains("holds no login key; run 'skylark-login init --state \(empty)' first"), "\(serve)")
            #expect(!serve.stdout.contains("listening"), "\(serve)")

            let badListen = try await sandbox.run("skylark-login", ["serve", "--state", state, "--listen", "nonsense"])
            #expect(badListen.status != 0, "\(badListen)")
            #expect(badListen.stderr.contains("--listen 'nonsense' is not HOST:PORT"), "\(badListen)")

            let halfUpdate = try await sandbox.run(
                "skylark-login",
                [
                    "init", "--state", sandbox.path("login-2"), "--key-bits", "2048",
                    "--update-url", "http://127.0.0.1:1",
                ])
            #expect(halfUpdate.status != 0, "\(halfUpdate)")
            #expect(halfUpdate.stderr.contains("--update-url and --update-key go together"), "\(halfUpdate)")

            let weakKey = try await sandbox.run("skylark-login", ["init", "--state", sandbox.path("login-3"), "--key-bits", "1024"])
            #expect(weakKey.status != 0, "1024-bit keys are refused: \(weakKey)")
            #expect(!fileExists(sandbox.path("login-3/login-key.pem")))
        }
    }

    @Test("update server: init refuses to overwrite, serve needs a key, publish needs a newer version")
    func updateServerCommands() async throws {
        try await withSandbox { sandbox in
            let state = try await sandbox.initUpdate()
            #expect(try permissions(state) == 0o700)
            #expect(try permissions(state + "/update-key.pem") == 0o600)
            let keyBefore = readFile(state + "/update-key.pem")

            let again = try await sandbox.run("skylark-update", ["init", "--state", state, "--key-bits", "2048"])
            #expect(again.status != 0, "\(again)")
            #expect(again.stderr.contains("already holds an update key; refusing to overwrite it"), "\(again)")
            #expect(readFile(state + "/update-key.pem") == keyBefore)

            let empty = sandbox.path("empty")
            let serve = try await sandbox.run("skylark-update", ["serve", "--state", empty, "--listen", "127.0.0.1:0"])
            #expect(serve.status != 0, "\(serve)")
            #expect(serve.stderr.contains("holds no update key; run 'skylark-update init --state \(empty)' first"), "\(serve)")

            let file = try sandbox.makeReleaseFile()
            try await sandbox.publish(state: state, version: "0.2.0", files: [file.path])
            let older = try await sandbox.run("skylark-update", ["publish", "--state", state, "--version", "0.1.9", "--file", file.path])
            #expect(older.status != 0, "\(older)")
            #expect(older.stderr.contains("version 0.1.9 is not newer than the published 0.2.0"), "\(older)")
            let badVersion = try await sandbox.run("skylark-update", ["publish", "--state", state, "--version", "1.0", "--file", file.path])
            #expect(badVersion.status != 0, "\(badVersion)")
            #expect(badVersion.stderr.contains("version '1.0' is not X.Y.Z"), "\(badVersion)")
            let noFiles = try await sandbox.run("skylark-update", ["publish", "--state", state, "--version", "0.3.0"])
            #expect(noFiles.status != 0, "\(noFiles)")
            #expect(noFiles.stderr.contains("a release needs at least one --file"), "\(noFiles)")
            let zeroDays = try await sandbox.run(
                "skylark-update",
                [
                    "publish", "--state", state, "--version", "0.3.0", "--file", file.path,
                    "--valid-for-days", "0",
                ])
            #expect(zeroDays.status != 0, "\(zeroDays)")
            #expect(zeroDays.stderr.contains("--valid-for-days must be positive"), "\(zeroDays)")
            #expect(
                try SignedDocument<ReleaseManifest>.decode(try #require(FileManager.default.contents(atPath: state + "/manifest.json"))).body.version
                    == "0.2.0",
                "refused publishes leave the manifest alone")
        }
    }

    @Test("update server serves only the manifest and release files over HTTP")
    func updateServerRoutes() async throws {
        try await withSandbox { sandbox in
            let state = try await sandbox.initUpdate()
            let file = try sandbox.makeReleaseFile("notes.txt", size: 64)
            try await sandbox.publish(state: state, version: "0.2.0", files: [file.path])
            let server = try await sandbox.serveUpdate(state: state)

            let manifest = try await httpRequest(port: server.port, method: "GET", path: "/manifest.json")
            #expect(manifest.status == 200)
            let manifestMatches = manifest.body == readBytes(server.manifestPath)
            #expect(manifestMatches)
            let released = try await httpRequest(port: server.port, method: "GET", path: "/releases/0.2.0/notes.txt")
            #expect(released.status == 200)
            let releaseMatches = released.body == file.bytes
            #expect(releaseMatches, "GET /releases/0.2.0/notes.txt returned \(released.body.count) bytes")

            for path in [
                "/update-key.pem", "/update-public.pem", "/releases/0.2.0/../../update-key.pem", "/releases/..%2f..%2fupdate-key.pem",
                "/releases/0.2.0/missing.txt", "/",
            ] {
                let answer = try await httpRequest(port: server.port, method: "GET", path: path)
                #expect(answer.status == 404, "GET \(path) → \(answer.status)")
                #expect(!answer.body.contains(subsequence: Array("PRIVATE KEY".utf8)), "GET \(path) leaked the key")
            }
            let post = try await httpRequest(port: server.port, method: "POST", path: "/manifest.json")
            #expect(post.status == 405)
            #expect(server.process.isRunning)
        }
    }
}
