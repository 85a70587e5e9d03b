import Foundation
import SkylarkCrypto
import SkylarkNode
import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkLoginServer

@Suite struct LoginServerStateTests {
    func options(_ address: String = "127.0.0.1:7000") throws -> LoginServerState.InitOptions {
        var options = LoginServerState.InitOptions(publicAddress: address)
        options.keyBits = 2048
        options.updateURL = "http://127.0.0.1:8080"
        options.updatePublicKeyPEM = try TestKeys.other.publicKey.pem()
        options.supernodes = ["10.0.0.1:33033", "[::1]:33034"]
        return options
    }

    @Test func initialiseWritesAPrivateKeyAndAProfileClientsAccept() throws {
        let parent = try makeTemporaryDirectory()
        defer { removeDirectory(parent) }
        let state = LoginServerState(directory: parent + "/state")
        let profile = try state.initialise(try options(), now: 1_700_000_000)

        #expect(try permissions(state.keyPath) == 0o600)
        #expect(try permissions(state.directory) == 0o700)
        #expect(FileManager.default.fileExists(atPath: state.databasePath))
        let key = try state.loadKey()
        #expect(key.bits == 2048)
        let publicPEM = try #require(FileManager.default.contents(atPath: state.publicKeyPath))
        #expect(try RSA.PublicKey(pem: String(decoding: publicPEM, as: UTF8.self)) == key.publicKey)

        let verified = try VerifiedProfile.load(path: state.profilePath)
        #expect(verified.profile == profile)
        #expect(verified.loginKey == key.publicKey)
        #expect(verified.loginEndpoint == HostPort(host: "127.0.0.1", port: 7000))
        #expect(verified.updateKey == TestKeys.other.publicKey)
        #expect(verified.profile.updateURL == "http://127.0.0.1:8080")
        #expect(verified.profile.supernodes == ["10.0.0.1:33033", "[::1]:33034"])
        #expect(verified.profile.issuedAt == 1_700_000_000)

        // The profile's key and the state's store make a working server.
        let store = try state.openStore()
        let authority = try LoginAuthority(key: key, store: store, configuration: cheapConfiguration(), logger: silentLogger)
        var connection = LoginConnection()
        let report = try exchange(
            .register(name: "alice", password: "alice-password"), authority: authority, connection: &connection,
            clientNow: epoch, serverKey: verified.loginKey)
        #expect(report.outcome == .registered(name: "alice"))

        // An edited profile is refused.
        let text = String(decoding: try #require(FileManager.default.contents(atPath: state.profilePath)), as: UTF8.self)
        let edited = text.replacingOccurrences(of: "127.0.0.1:7000", with: "203.0.113.5:7000")
        #expect(edited != text)
        let editedPath = parent + "/edited.json"
        try Data(edited.utf8).write(to: URL(fileURLWithPath: editedPath))
        #expect(throws: ProfileError.self) { try VerifiedProfile.load(path: editedPath) }
    }

    @Test func secondInitialiseRefusesAndKeepsTheKey() throws {
        let parent = try makeTemporaryDirectory()
        defer { removeDirectory(parent) }
        let state = LoginServerState(directory: parent + "/state")
        try state.initialise(try options(), now: 1)
        let keyBefore = FileManager.default.contents(atPath: state.keyPath)
        let profileBefore = FileManager.default.contents(atPath: state.profilePath)
        do {
            try state.initialise(try options(), now: 2)
            Issue.record("a second initialise succeeded")
        } catch let failure as LoginServerState.Failure {
            guard case .alreadyInitialised = failure else {
                Issue.record("expected alreadyInitialised, got \(failure)")
                return
            }
        }
        #expect(FileManager.default.contents(atPath: state.keyPath) == keyBefore)
        #expect(FileManager.default.contents(atPath: state.profilePath) == profileBefore)
    }

    @Test(arguments: ["login.example", "login.example:", "login.example:99999", ":7000", "::1:7000", ""])
    func badPublicAddressIsRefused(address: String) throws {
        let parent = try makeTemporaryDirectory()
        defer { removeDirectory(parent) }
        let state = LoginServerState(directory: parent + "/state")
        do {
            try state.initialise(try options(address), now: 1)
            Issue.record("public address '\(address)' was accepted")
        } catch let failure as LoginServerState.Failure {
            guard case .io = failure else {
                Issue.record("expected io, got \(failure)")
                return
            }
        }
        #expect(!FileManager.default.fileExists(atPath: state.keyPath), "nothing is written for a refused address")
    }

    @Test func badUpdateKeyOrSupernodeIsRefused() throws {
        let parent = try makeTemporaryDirectory()
        defer { removeDirectory(parent) }
        let state = LoginServerState(directory: parent + "/state")
        var badKey = try options()
        badKey.updatePublicKeyPEM = "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n"
        #expect(throws: (any Error).self) { try state.initialise(badKey, now: 1) }
        var badSupernode = try options()
        badSupernode.supernodes = ["no-port"]
        #expect(throws: (any Error).self) { try state.initialise(badSupernode, now: 1) }
        #expect(!FileManager.default.fileExists(atPath: state.keyPath))
    }

    @Test func loadKeyBeforeInitialiseSaysNotInitialised() throws {
        let parent = try makeTemporaryDirectory()
        defer { removeDirectory(parent) }
        do {
            _ = try LoginServerState(directory: parent).loadKey()
            Issue.record("loaded a key from an empty folder")
        } catch let failure as LoginServerState.Failure {
            guard case .notInitialised = failure else {
                Issue.record("expected notInitialised, got \(failure)")
                return
            }
        }
    }
}
