import Foundation
import SkylarkCrypto
import SkylarkNode
import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkLoginServer

/// The client core (`LoginClientExchange`) against the server cores (`LoginConnection` +
/// `LoginAuthority`), bytes shuttled in memory, over a real SQLite store.
@Suite struct LoginExchangeTests {
    @Test func registerThenLoginIssuesAVerifiableCredential() throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }

        let registered = try register("Alice", password: "correct horse", on: fixture)
        #expect(registered.outcome == .registered(name: "alice"))
        #expect(registered.closed == false, "a successful registration keeps the link open")

        let userKey = try makeUserKey()
        let now = epoch + 100
        let report = try login("ALICE", password: "correct horse", key: userKey, on: fixture, now: now)
        let credential = try #require(report.credential, "login failed: \(String(describing: report.result))")

        // The credential as the client got it is exactly what the server's key signed.
        let verified = try Credential.verify(credential.signed, issuer: TestKeys.login.publicKey, now: Int64(now))
        #expect(verified == credential)
        #expect(throws: Credential.Invalid.badSignature) {
            try Credential.verify(credential.signed, issuer: TestKeys.other.publicKey, now: Int64(now))
        }
        #expect(credential.name == "alice")
        #expect(credential.userPublicKey == userKey)
        #expect(credential.nodeID == Array(SHA256.hash(userKey).prefix(20)))
        #expect(credential.nodeID.count == 20)
        #expect(credential.issuedAt == Int64(now))
        #expect(credential.expiresAt == Int64(now) + 3600)
    }

    @Test func serialsStrictlyIncreaseAcrossLogins() throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        try register("bob", password: "bob-password", on: fixture)
        try register("carol", password: "carol-password", on: fixture)

        var serials: [UInt64] = []
        for round in 0..<4 {
            let name = round.isMultiple(of: 2) ? "bob" : "carol"
            let report = try login(name, password: "\(name)-password", key: try makeUserKey(), on: fixture, now: epoch + Double(round))
            serials.append(try #require(report.credential).serial)
        }
        #expect(serials == serials.sorted())
        #expect(Set(serials).count == serials.count, "serials repeat: \(serials)")
        #expect(zip(serials, serials.dropFirst()).allSatisfy { $0 < $1 })
    }

    @Test func severalRequestsOnOneLink() throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        var connection = LoginConnection()
        let key = try makeUserKey()
        let first = try exchange(
            .register(name: "dave", password: "dave-password"), authority: fixture.authority,
            connection: &connection, clientNow: epoch)
        #expect(first.outcome == .registered(name: "dave"))
        let second = try exchange(
            .login(name: "dave", password: "dave-password", userPublicKey: key), authority: fixture.authority,
            connection: &connection, clientNow: epoch + 1)
        #expect(second.credential?.name == "dave")
        #expect(!connection.isClosed)
    }

    @Test func oneByteAtATimeBothWays() throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        var connection = LoginConnection()
        let registered = try exchange(
            .register(name: "erin", password: "erin-password"), authority: fixture.authority,
            connection: &connection, clientNow: epoch, byteByByte: true)
        #expect(registered.outcome == .registered(name: "erin"))
        #expect(registered.prematureActions.isEmpty)
        #expect(!registered.prematureOutcome)

        let key = try makeUserKey()
        let loggedIn = try exchange(
            .login(name: "erin", password: "erin-password", userPublicKey: key), authority: fixture.authority,
            connection: &connection, clientNow: epoch + 1, byteByByte: true)
        #expect(loggedIn.credential?.userPublicKey == key)
        #expect(loggedIn.prematureActions.isEmpty)
        #expect(!loggedIn.prematureOutcome)

        // Failures travel byte by byte too.
        let wrong = try exchange(
            .login(name: "erin", password: "not-her-password", userPublicKey: key), authority: fixture.authority,
            connection: &connection, clientNow: epoch + 2, byteByByte: true)
        #expect(wrong.failure == .wrongPassword(name: "erin"))
        #expect(!wrong.prematureOutcome)
    }

    @Test func defaultScryptParametersWork() throws {
        #expect(LoginAuthority.Configuration().passwordHashing == Scrypt.Parameters(n: 1 << 14, r: 8, p: 1))
        #expect(LoginAuthority.Configuration().credentialLifetime == 24 * 3600)
        let fixture = try ServerFixture(configuration: LoginAuthority.Configuration())
        defer { fixture.remove() }

        #expect(try register("frank", password: "frank-password", on: fixture).outcome == .registered(name: "frank"))
        let stored = try #require(try fixture.store.account(named: "frank"))
        #expect(stored.parameters == .interactive)
        #expect(stored.salt.count == 16)

        let key = try makeUserKey()
        let report = try login("frank", password: "frank-password", key: key, on: fixture, now: epoch + 5)
        let credential = try #require(report.credential)
        #expect(credential.expiresAt == Int64(epoch + 5) + 24 * 3600)
        #expect(try login("frank", password: "frank-passwore", key: key, on: fixture, now: epoch + 6).failure == .wrongPassword(name: "frank"))
    }

    // MARK: - Names and passwords

    @Test func namesAreUniqueCaseInsensitivelyAfterNFKC() throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        #expect(try register("Alice", password: "password-1", on: fixture).outcome == .registered(name: "alice"))

        for variant in ["ALICE", "alice", "\u{FF41}\u{FF4C}\u{FF49}\u{FF43}\u{FF45}", "\u{FF21}lice"] {
            let report = try register(variant, password: "password-2", on: fixture, address: "198.51.100.\(variant.count)")
            #expect(report.failure == .nameTaken(name: "alice"), "\(variant)")
            #expect(report.failure?.exitCode == 5)
        }
        // The fullwidth spelling logs in to the same account.
        let key = try makeUserKey()
        let report = try login("\u{FF21}\u{FF2C}\u{FF29}\u{FF23}\u{FF25}", password: "password-1", key: key, on: fixture)
        #expect(report.credential?.name == "alice")
    }

    @Test(arguments: ["al", "1alice", "alice smith", "alice@example", "", String(repeating: "a", count: 33)])
    func invalidNamesAreRefused(name: String) throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        let report = try register(name, password: "good-password", on: fixture)
        guard case .invalidName? = report.failure else {
            Issue.record("expected invalidName, got \(String(describing: report.result))")
            return
        }
        #expect(report.failure?.exitCode == 10)
        #expect(try fixture.store.account(named: name.lowercased()) == nil)
    }

    @Test(arguments: ["", "1234567", "\u{00E9}\u{00E9}\u{00E9}\u{00E9}\u{00E9}\u{00E9}\u{00E9}"])
    func weakPasswordsAreRefused(password: String) throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        let report = try register("grace", password: password, on: fixture)
        guard case .weakPassword? = report.failure else {
            Issue.record("expected weakPassword, got \(String(describing: report.result))")
            return
        }
        #expect(report.failure?.exitCode == 10)
        #expect(try fixture.store.account(named: "grace") == nil)
        // Eight characters are enough.
        #expect(try register("grace", password: "12345678", on: fixture).outcome == .registered(name: "grace"))
    }

    @Test func wrongPasswordAndUnknownName() throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        try register("heidi", password: "heidi-password", on: fixture)
        let key = try makeUserKey()

        let wrong = try login("Heidi", password: "heidi-passw0rd", key: key, on: fixture)
        #expect(wrong.failure == .wrongPassword(name: "heidi"))
        #expect(wrong.failure?.exitCode == 3)
        #expect(wrong.closed == false)

        let unknown = try login("ivan", password: "heidi-password", key: key, on: fixture)
        #expect(unknown.failure == .unknownName(name: "ivan"))
        #expect(unknown.failure?.exitCode == 4)

        // The right password still works after one miss.
        #expect(try login("heidi", password: "heidi-password", key: key, on: fixture).credential != nil)
    }

    @Test func passwordNeverReachesTheLogs() throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        let password = "s3cret-Pa55phrase"
        try register("judy", password: password, on: fixture)
        _ = try register("judy", password: password, on: fixture)
        _ = try login("judy", password: password + "x", key: try makeUserKey(), on: fixture)
        _ = try login("judy", password: password, key: try makeUserKey(), on: fixture)
        let lines = fixture.log.all
        #expect(lines.count >= 4, "the authority logs each decision")
        #expect(lines.contains { $0.contains("judy") })
        #expect(!lines.contains { $0.contains("s3cret") })
    }

    // MARK: - Replay and clocks

    @Test func identicalRequestBytesTwiceAreRefusedAsReplayed() throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        let client = try LoginClientExchange(
            .register(name: "mallory", password: "mallory-password"),
            serverKey: TestKeys.login.publicKey, now: epoch)
        var connection = LoginConnection()
        let first = deliver(client, authority: fixture.authority, connection: &connection, serverNow: epoch)
        #expect(first.outcome == .registered(name: "mallory"))
        #expect(!first.closed)

        // The very same bytes again on the same link (the copy of the client holds the same keys).
        let second = deliver(client, authority: fixture.authority, connection: &connection, serverNow: epoch + 1)
        let frames = try serverFrames(second.answerBytes)
        #expect(frames.count == 1)
        guard case .sealed? = frames.first?.body else {
            Issue.record("a replay is answered sealed, got \(String(describing: frames.first))")
            return
        }
        let failure = try #require(second.failure)
        guard case .clockOrReplay = failure else {
            Issue.record("expected clockOrReplay, got \(failure)")
            return
        }
        #expect(second.closed)
        #expect(connection.isClosed)

        // And on a fresh link: still a replay.
        var fresh = LoginConnection()
        let third = deliver(client, authority: fixture.authority, connection: &fresh, serverNow: epoch + 2)
        guard case .clockOrReplay? = third.failure else {
            Issue.record("expected clockOrReplay, got \(String(describing: third.result))")
            return
        }
        #expect(third.closed)
    }

    @Test func clientClockTenMinutesOffIsRefused() throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        try register("niaj", password: "niaj-password", on: fixture)
        for skew in [-600.0, 600.0] {
            var connection = LoginConnection()
            let report = try exchange(
                .login(name: "niaj", password: "niaj-password", userPublicKey: try makeUserKey()),
                authority: fixture.authority, connection: &connection,
                clientNow: epoch + 1000 + skew, serverNow: epoch + 1000)
            guard case .clockOrReplay? = report.failure else {
                Issue.record("skew \(skew): expected clockOrReplay, got \(String(describing: report.result))")
                continue
            }
            #expect(report.failure?.exitCode == 1)
            #expect(report.closed)
        }
        // A client within the window is fine.
        var connection = LoginConnection()
        let ok = try exchange(
            .login(name: "niaj", password: "niaj-password", userPublicKey: try makeUserKey()),
            authority: fixture.authority, connection: &connection,
            clientNow: epoch + 1000 - 60, serverNow: epoch + 1000)
        #expect(ok.credential != nil, "\(String(describing: ok.result))")
    }

    // MARK: - Keys

    @Test func clientPinnedToAnotherKeyGetsPlainKeyMismatch() throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        var connection = LoginConnection()
        let report = try exchange(
            .register(name: "olivia", password: "olivia-password"), authority: fixture.authority,
            connection: &connection, clientNow: epoch, serverKey: TestKeys.other.publicKey)
        let frames = try serverFrames(report.answerBytes)
        #expect(frames.count == 1)
        guard case let .error(error)? = frames.first?.body else {
            Issue.record("expected a plain error frame, got \(String(describing: frames.first))")
            return
        }
        #expect(error.code == .keyMismatch)
        #expect(report.closed)
        #expect(connection.isClosed)
        guard case .keyMismatch? = report.failure else {
            Issue.record("expected keyMismatch, got \(String(describing: report.result))")
            return
        }
        #expect(report.failure?.exitCode == 7)
        #expect(try fixture.store.account(named: "olivia") == nil)
    }

    @Test func impostorServerThatAnswersAnywayIsAKeyMismatch() throws {
        // The profile pins TestKeys.login; the server actually holds TestKeys.other and, instead of
        // admitting it, answers a sealed "registered" under a session key it made up.
        let client = try LoginClientExchange(
            .register(name: "peggy", password: "peggy-password"),
            serverKey: TestKeys.login.publicKey, now: epoch)
        var connection = LoginConnection()
        let actions = connection.receive(client.requestBytes)
        guard case let .process(request)? = actions.first else {
            Issue.record("expected .process, got \(actions)")
            return
        }
        // The impostor cannot unwrap the session key.
        #expect(throws: LoginEnvelope.OpenError.self) {
            _ = try LoginEnvelope.openRequest(request, with: TestKeys.other, fingerprint: try TestKeys.other.publicKey.fingerprint())
        }
        var payload = LoginResponsePayload()
        payload.requestID = Data(SecureRandom.bytes(16))
        var registered = LoginRegistered()
        registered.name = "peggy"
        payload.registered = registered
        var frame = LoginServerFrame()
        frame.sealed = try LoginEnvelope.sealResponse(payload, sessionKey: AESGCM.makeKey())
        var clientCopy = client
        var premature = false
        let result = answer(&clientCopy, with: try MessageEncoder.encode(frame), serverClosed: false, byteByByte: false, premature: &premature)
        guard case .failure(.keyMismatch)? = result else {
            Issue.record("expected keyMismatch, got \(String(describing: result))")
            return
        }

        // A server holding the other key for real answers a plain KEY_MISMATCH.
        let impostor = try ServerFixture(key: TestKeys.other)
        defer { impostor.remove() }
        var impostorLink = LoginConnection()
        let report = deliver(client, authority: impostor.authority, connection: &impostorLink, serverNow: epoch)
        guard case .keyMismatch? = report.failure else {
            Issue.record("expected keyMismatch, got \(String(describing: report.result))")
            return
        }
        #expect(report.closed)
    }

    @Test func loginWithABadUserKeyIsRefused() throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        try register("quentin", password: "quentin-password", on: fixture)
        let report = try login("quentin", password: "quentin-password", key: [UInt8](repeating: 7, count: 31), on: fixture)
        guard case .protocolViolation? = report.failure else {
            Issue.record("expected protocolViolation (server MALFORMED), got \(String(describing: report.result))")
            return
        }
    }
}
