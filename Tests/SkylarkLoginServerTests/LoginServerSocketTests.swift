import Foundation
import Logging
import NIOCore
import NIOPosix
import SkylarkCrypto
import SkylarkNode
import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkLoginServer

/// The NIO adapter on a real loopback socket, with the real client adapter, both in-process.
@Suite struct LoginServerSocketTests {
    /// Starts a LoginServer on 127.0.0.1, port 0; runs `body` with its port; always stops it.
    func withServer<T: Sendable>(
        _ fixture: ServerFixture, idleTimeout: TimeAmount = .seconds(30),
        _ body: (Int, MultiThreadedEventLoopGroup) async throws -> T
    ) async throws -> T {
        try await withLoopbackServer(
            { group, pool, onBound in
                Self.server(authority: fixture.authority, idleTimeout: idleTimeout, group: group, pool: pool, logger: fixture.log.logger, onBound: onBound)
            }, body)
    }

    static func server(
        authority: LoginAuthority, idleTimeout: TimeAmount, group: any EventLoopGroup, pool: NIOThreadPool, logger: Logger,
        onBound: @escaping @Sendable (SocketAddress) -> Void
    ) -> LoginServer {
        var configuration = LoginServer.Configuration(listen: HostPort(host: "127.0.0.1", port: 0))
        configuration.idleTimeout = idleTimeout
        return LoginServer(authority: authority, configuration: configuration, group: group, threadPool: pool, logger: logger, onBound: onBound)
    }

    func expectOneMalformedFrame(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let frames = try serverFrames(bytes)
        guard frames.count == 1, case let .error(error)? = frames[0].body else {
            Issue.record("expected one plain error frame, got \(frames)", sourceLocation: sourceLocation)
            return
        }
        #expect(error.code == .malformed, sourceLocation: sourceLocation)
    }

    @Test(.timeLimit(.minutes(1)))
    func loginOverLoopbackWhileGarbageIsClosed() async throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        try await withServer(fixture) { port, group in
            let profile = try signedProfile(loginPort: port)
            let userKey = try makeUserKey()

            // A garbage sender and a legitimate registration, at the same time.
            async let garbage = rawExchange(port: port, group: group, sending: Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            async let registration = LoginClient.perform(
                .register(name: "Alice", password: "alice-password"), profile: profile,
                group: group, logger: silentLogger)
            try expectOneMalformedFrame(try await garbage)
            #expect(try await registration == .registered(name: "alice"))

            // A header announcing 1 MiB is refused at once (no waiting for the body or the idle timeout),
            // while a login goes through.
            async let oversized = rawExchange(port: port, group: group, sending: [0x00, 0x10, 0x00, 0x00])
            async let loggedIn = LoginClient.perform(
                .login(name: "alice", password: "alice-password", userPublicKey: userKey),
                profile: profile, group: group, logger: silentLogger)
            try expectOneMalformedFrame(try await oversized)
            guard case let .loggedIn(credential) = try await loggedIn else {
                Issue.record("expected a credential")
                return
            }
            #expect(credential.name == "alice")
            #expect(credential.userPublicKey == userKey)
            let verified = try Credential.verify(credential.signed, issuer: TestKeys.login.publicKey, now: Int64(Date().timeIntervalSince1970))
            #expect(verified == credential)

            // Failures come back typed over the socket too.
            await #expect(throws: LoginFailure.wrongPassword(name: "alice")) {
                try await LoginClient.perform(
                    .login(name: "alice", password: "not-the-password", userPublicKey: userKey),
                    profile: profile, group: group, logger: silentLogger)
            }
            await #expect(throws: LoginFailure.nameTaken(name: "alice")) {
                try await LoginClient.perform(
                    .register(name: "ALICE", password: "alice-password"), profile: profile,
                    group: group, logger: silentLogger)
            }
            let otherProfile = try signedProfile(loginPort: port, loginKey: TestKeys.other)
            do throws(LoginFailure) {
                _ = try await LoginClient.perform(
                    .register(name: "bob", password: "bob-password"),
                    profile: otherProfile, group: group, logger: silentLogger)
                Issue.record("a client pinning another key registered")
            } catch {
                guard case .keyMismatch = error else {
                    Issue.record("expected keyMismatch, got \(error)")
                    return
                }
                #expect(error.exitCode == 7)
            }
        }
        #expect(!fixture.log.all.contains { $0.contains("alice-password") })
        #expect(fixture.log.all.contains { $0.contains("login server listening") })
    }

    /// Known bug: `LoginServer.serve` (Sources/SkylarkLoginServer/Service/LoginServer.swift:86) calls
    /// `pending.removeFirst()` when `connection.receive` returned no action, i.e. whenever a read does
    /// not complete a frame. Two bytes from any peer crash the whole server process
    /// ("Fatal error: Can't remove first element from an empty collection"). The scenario runs in a
    /// child process (exit test) so that the crash cannot take the test runner down with it.
    @Test(.timeLimit(.minutes(1)))
    func partialFrameNeitherCrashesTheServerNorBlocksOthers() async throws {
        let directory = try makeTemporaryDirectory()
        defer { removeDirectory(directory) }
        // Run in a child process: before the fix this input crashed the whole server.
        await #expect(processExitsWith: .success) { [directory = directory as String] in
            try await Self.partialFrameScenario(directory: directory)
        }
    }

    struct ScenarioFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs in the exit test's child process: a link that sends two bytes of a header and goes
    /// silent must be closed by the idle timeout, while registrations on other links succeed.
    static func partialFrameScenario(directory: String) async throws {
        let store = try SQLiteAccountStore(path: directory + "/accounts.sqlite")
        let authority = try LoginAuthority(key: TestKeys.login, store: store, configuration: cheapConfiguration(), logger: silentLogger)
        try await withLoopbackServer({ group, pool, onBound in
            server(authority: authority, idleTimeout: .milliseconds(300), group: group, pool: pool, logger: silentLogger, onBound: onBound)
        }) { port, group in
            let profile = try signedProfile(loginPort: port)
            async let silent = rawExchange(port: port, group: group, sending: [0x00, 0x00])
            async let first = LoginClient.perform(
                .register(name: "carol", password: "carol-password"), profile: profile,
                group: group, logger: silentLogger)
            guard try await first == .registered(name: "carol") else { throw ScenarioFailure(description: "registration failed") }
            guard try await silent == [] else { throw ScenarioFailure(description: "the idle link got an answer") }
            let second = try await LoginClient.perform(
                .register(name: "dave", password: "dave-password"), profile: profile,
                group: group, logger: silentLogger)
            guard second == .registered(name: "dave") else { throw ScenarioFailure(description: "the server stopped serving") }
        }
    }

    /// A client that sends its request and then shuts down its sending half still gets its answer
    /// (LoginConnection.endOfInput: "let the answer go out").
    @Test(.timeLimit(.minutes(1)))
    func halfClosedClientStillGetsItsAnswer() async throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        try await withServer(fixture) { port, group in
            let client = try LoginClientExchange(
                .register(name: "heidi", password: "heidi-password"),
                serverKey: TestKeys.login.publicKey, now: Date().timeIntervalSince1970)
            let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true))
                }
            }
            let answer = try await channel.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(bytes: client.requestBytes))
                outbound.finish()
                var received: [UInt8] = []
                for try await buffer in inbound { received += buffer.readableBytesView }
                return received
            }
            var exchange = client
            var premature = false
            let result = SkylarkLoginServerTests.answer(&exchange, with: answer, serverClosed: true, byteByByte: false, premature: &premature)
            #expect(answer.count > 0, "no answer after a half-close")
            guard case .success(.registered(name: "heidi"))? = result else {
                Issue.record("expected registered, got \(String(describing: result))")
                return
            }
        }
    }
}
