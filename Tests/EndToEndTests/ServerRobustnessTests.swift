// The login server under abuse (garbage, oversized frames, replays), across crashes and
// shutdowns, and with respect to the secrecy of passwords.

import Foundation
import SkylarkCrypto
import SkylarkTestSupport
import SkylarkWire
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Decodes every whole server frame in `bytes`.
private func serverFrames(_ bytes: [UInt8]) throws -> [LoginServerFrame] {
    var decoder = MessageDecoder<LoginServerFrame>(maximumFrameSize: 16 * 1024)
    decoder.append(bytes: bytes)
    var frames: [LoginServerFrame] = []
    while let frame = try decoder.next() { frames.append(frame) }
    return frames
}

private func frameCount(_ bytes: [UInt8]) -> Int { (try? serverFrames(bytes).count) ?? 0 }

/// Sends `bytes` on a fresh connection (optionally half-closing after) and collects the answer
/// until the server closes the link.
private func abuse(port: Int, _ bytes: [UInt8], halfClose: Bool = false) async throws -> (frames: [LoginServerFrame], closed: Bool) {
    let connection = try RawConnection(port: port)
    defer { connection.close() }
    try connection.send(bytes)
    if halfClose { connection.shutdownWrite() }
    let answer = try await connection.receiveUntilClosed()
    return (try serverFrames(answer.bytes), answer.closed)
}

/// A framed ClientFrame carrying `payload` sealed to `serverKey` under `sessionKey`.
private func sealedRequest(
    to serverKey: RSA.PublicKey, sessionKey: [UInt8], requestID: [UInt8] = SecureRandom.bytes(16),
    timestamp: Double = Date().timeIntervalSince1970, _ fill: (inout LoginRequestPayload) -> Void
) throws -> [UInt8] {
    var payload = LoginRequestPayload()
    payload.requestID = Data(requestID)
    payload.timestampMs = Int64(timestamp * 1000)
    fill(&payload)
    var frame = LoginClientFrame()
    frame.sealed = try LoginEnvelope.sealRequest(payload, to: serverKey, sessionKey: sessionKey)
    return try MessageEncoder.encode(frame)
}

private func registration(_ name: String, _ password: String) -> (inout LoginRequestPayload) -> Void {
    { payload in
        var register = LoginRegisterRequest()
        register.name = name
        register.password = password
        payload.register = register
    }
}

/// The plain error of a server frame, or nil if the frame is sealed.
private func plainError(_ frame: LoginServerFrame) -> LoginError? {
    if case let .error(error)? = frame.body { return error }
    return nil
}

/// The decrypted payload of a sealed server frame.
private func opened(_ frame: LoginServerFrame, sessionKey: [UInt8]) -> LoginResponsePayload? {
    guard case let .sealed(sealed)? = frame.body else { return nil }
    return LoginEnvelope.openResponse(sealed, sessionKey: sessionKey)
}

/// Resident memory of a process, in KiB (Linux /proc).
private func residentKiB(_ pid: Int32) -> Int? {
    let status = readProcFile("/proc/\(pid)/status")
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
    return line.split(separator: " ").compactMap { Int($0) }.first
}

@Suite("Login server robustness, durability and secrecy", .timeLimit(.minutes(2)))
struct ServerRobustnessTests {
    @Test("garbage and oversized frames close only their own link; the server keeps serving")
    func garbageAndOversizedFrames() async throws {
        try await withSandbox { sandbox in
            let network = try await sandbox.startNetwork(withUpdate: false)
            let port = network.login.port
            let server = network.login.process
            let serverKey = try loadPublicKey(network.login.state + "/login-public.pem")
            let rssBefore = residentKiB(server.pid)

            // Idle connections stay open meanwhile: they must not block anybody.
            let idle = try (0..<16).map { _ in try RawConnection(port: port) }
            defer { idle.forEach { $0.close() } }

            // Another protocol: "GET " reads as a 1.2 GB length.
            let http = try await abuse(port: port, Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            #expect(http.closed)
            #expect(http.frames.count == 1)
            #expect(http.frames.first.flatMap(plainError)?.code == .malformed)
            #expect(http.frames.first.flatMap(plainError)?.message.contains("exceeds the 16384-byte limit") == true)

            // A header announcing 100 MB is refused on the header.
            let huge = try await abuse(port: port, [0x06, 0x40, 0x00, 0x00])
            #expect(huge.closed)
            #expect(huge.frames.first.flatMap(plainError)?.code == .malformed)
            #expect(huge.frames.first.flatMap(plainError)?.message.contains("104857600") == true, "\(huge.frames)")

            // ... and its body is never buffered: the server closes while we are still sending.
            let flood = try RawConnection(port: port)
            try flood.send([0x06, 0x40, 0x00, 0x00])
            let pushed = flood.flood(chunk: [UInt8](repeating: 0x41, count: 64 * 1024), limit: 100 * 1024 * 1024)
            flood.close()
            #expect(pushed.sent < 100 * 1024 * 1024, "the server accepted the whole 100 MB body")
            #expect(pushed.errno == EPIPE || pushed.errno == ECONNRESET, "send ended with errno \(pushed.errno.map(String.init) ?? "none")")

            // A frame of bytes that is no protobuf message, and an empty one.
            let junk = try await abuse(port: port, [0, 0, 0, 8] + [UInt8](repeating: 0xff, count: 8))
            #expect(junk.closed)
            #expect(junk.frames.first.flatMap(plainError)?.code == .malformed)
            let empty = try await abuse(port: port, [0, 0, 0, 0])
            #expect(empty.closed)
            #expect(empty.frames.first.flatMap(plainError)?.code == .malformed)

            // Sealed to another key: KEY_MISMATCH. Sealed to ours with a garbage session key: MALFORMED.
            let otherKey = TestKeys.other.publicKey
            let foreign = try await abuse(
                port: port, try sealedRequest(to: otherKey, sessionKey: AESGCM.makeKey(), registration("mallory", "mallory-password")))
            #expect(foreign.closed)
            #expect(foreign.frames.first.flatMap(plainError)?.code == .keyMismatch)
            var broken = LoginClientFrame()
            broken.sealed = try LoginEnvelope.sealRequest(LoginRequestPayload(), to: serverKey, sessionKey: AESGCM.makeKey())
            broken.sealed.wrappedSessionKey = Data(SecureRandom.bytes(256))
            let undecryptable = try await abuse(port: port, try MessageEncoder.encode(broken))
            #expect(undecryptable.closed)
            #expect(undecryptable.frames.first.flatMap(plainError)?.code == .malformed)
            #expect(undecryptable.frames.first.flatMap(plainError)?.message == "the request could not be decrypted")

            // Still alive, memory did not balloon, and the real client is served.
            #expect(server.isRunning, "the login server died: \(server.stderr)")
            if let before = rssBefore, let after = residentKiB(server.pid) {
                #expect(after - before < 64 * 1024, "resident memory grew from \(before) KiB to \(after) KiB")
            }
            expectExit(try await sandbox.register("alice", "alice-password-1", profile: network.profile), 0)
            let login = try await sandbox.login("alice", "alice-password-1", profile: network.profile)
            expectExit(login, 0)
            #expect(login.stdout.hasPrefix("logged in as alice"), "\(login)")
            #expect(server.isRunning)
        }
    }

    @Test("a request whose frame arrives in two TCP reads is served; the server survives")
    func requestSplitAcrossReads() async throws {
        try await withSandbox { sandbox in
            let network = try await sandbox.startNetwork(withUpdate: false)
            let server = network.login.process
            let serverKey = try loadPublicKey(network.login.state + "/login-public.pem")
            let sessionKey = AESGCM.makeKey()
            let request = try sealedRequest(to: serverKey, sessionKey: sessionKey, registration("split.user", "split-password"))

            // Three bytes, and wait (via /proc/net/tcp) until the server process has read them.
            let connection = try RawConnection(port: network.login.port)
            defer { connection.close() }
            try connection.send(Array(request.prefix(3)))
            let clientPort = connection.localPort
            try await waitUntil("the login server to read the first bytes") {
                serverHasReadEverything(serverPort: network.login.port, clientPort: clientPort)
            }

            // Regression test: before commit 17a6a8b, LoginServer.serve called pending.removeFirst()
            // on an empty array when a read completed no frame, and the whole server crashed.
            try connection.send(Array(request.dropFirst(3)))
            let answer = try await connection.receive { frameCount($0) >= 1 }
            let payload = try serverFrames(answer.bytes).first.flatMap { opened($0, sessionKey: sessionKey) }
            #expect(payload?.registered.name == "split.user", "\(server.stderr.prefix(400))")
            #expect(server.isRunning, "the login server died: \(server.stderr.prefix(400))")
            expectExit(try await sandbox.register("other.user", "other-password", profile: network.profile), 0)
        }
    }

    @Test("a stream that ends inside a frame closes that link only; the server survives")
    func truncatedFrame() async throws {
        try await withSandbox { sandbox in
            let network = try await sandbox.startNetwork(withUpdate: false)
            let server = network.login.process
            // Regression test for the same partial-read crash (fixed in 17a6a8b).
            let truncated = try await abuse(port: network.login.port, [0, 0, 0, 100] + [UInt8](repeating: 1, count: 10), halfClose: true)
            #expect(truncated.closed)
            #expect(truncated.frames.isEmpty)
            #expect(server.isRunning, "the login server died: \(server.stderr.prefix(400))")
            expectExit(try await sandbox.register("alice", "alice-password-1", profile: network.profile), 0)
        }
    }

    @Test("replayed and stale requests are refused; a link carries at most 8 requests")
    func replayStaleAndRequestLimit() async throws {
        try await withSandbox { sandbox in
            let network = try await sandbox.startNetwork(withUpdate: false)
            let port = network.login.port
            let serverKey = try loadPublicKey(network.login.state + "/login-public.pem")

            // A valid registration, sent by hand: answered, and the link stays open.
            let sessionKey = AESGCM.makeKey()
            let request = try sealedRequest(to: serverKey, sessionKey: sessionKey, registration("Replay.User", "replay-password"))
            let first = try RawConnection(port: port)
            defer { first.close() }
            try first.send(request)
            let answer = try await first.receive { frameCount($0) >= 1 }
            #expect(!answer.closed)
            let registered = try #require(try serverFrames(answer.bytes).first.flatMap { opened($0, sessionKey: sessionKey) })
            #expect(registered.registered.name == "replay.user")

            // The same bytes again: REPLAYED, link closed.
            let replay = try await abuse(port: port, request)
            #expect(replay.closed)
            let replayed = try #require(replay.frames.first.flatMap { opened($0, sessionKey: sessionKey) })
            #expect(replayed.error.code == .replayed)

            // An hour-old timestamp: STALE.
            let staleKey = AESGCM.makeKey()
            let stale = try await abuse(
                port: port,
                try sealedRequest(
                    to: serverKey, sessionKey: staleKey, timestamp: Date().timeIntervalSince1970 - 3600,
                    registration("stale.user", "stale-password")))
            #expect(stale.closed)
            #expect(stale.frames.first.flatMap { opened($0, sessionKey: staleKey) }?.error.code == .stale)

            // Nine requests pipelined on one link: eight answers, then the server closes.
            var pipelined: [UInt8] = []
            let keys = (0..<9).map { _ in AESGCM.makeKey() }
            for key in keys { pipelined += try sealedRequest(to: serverKey, sessionKey: key, registration("x", "some-password")) }
            let busy = try await abuse(port: port, pipelined)
            #expect(busy.closed)
            #expect(busy.frames.count == 8)
            for (frame, key) in zip(busy.frames, keys) {
                #expect(opened(frame, sessionKey: key)?.error.code == .invalidName)
            }

            // The hand-made registration is a real account.
            expectExit(try await sandbox.register("replay.user", "other-password", profile: network.profile), 5, stderrContains: "name taken")
            expectExit(try await sandbox.login("REPLAY.USER", "replay-password", profile: network.profile), 0)
        }
    }

    @Test("an acknowledged registration survives SIGKILL; SIGTERM stops the server promptly with exit 0")
    func durabilityAndGracefulShutdown() async throws {
        try await withSandbox { sandbox in
            let network = try await sandbox.startNetwork()
            let login = network.login
            expectExit(try await sandbox.register("bob", "bob-password-1", profile: network.profile), 0)

            login.process.send(SIGKILL)
            let killed = try await login.process.waitForExit(timeout: .seconds(10))
            #expect(killed == Termination(status: SIGKILL, bySignal: true))

            let restarted = try await sandbox.serveLogin(state: login.state, port: login.port)
            let bob = try await sandbox.login("bob", "bob-password-1", profile: network.profile)
            expectExit(bob, 0)
            #expect(bob.stdout.contains("logged in as bob"), "\(bob)")
            expectExit(try await sandbox.register("BOB", "another-password", profile: network.profile), 5, stderrContains: "name taken")

            restarted.process.send(SIGTERM)
            let stopped = try await restarted.process.waitForExit(timeout: .seconds(10))
            #expect(stopped == Termination(status: 0, bySignal: false), "login server: \(stopped)\n\(restarted.process.stderr)")
            #expect(restarted.process.stderr.contains("login server stopped"))
            // Stopped means stopped: the port refuses connections now.
            #expect(throws: HarnessError.self) { try RawConnection(port: login.port) }

            let update = try #require(network.update)
            update.process.send(SIGINT)
            let updateStopped = try await update.process.waitForExit(timeout: .seconds(10))
            #expect(updateStopped == Termination(status: 0, bySignal: false), "update server: \(updateStopped)\n\(update.process.stderr)")
            #expect(update.process.stderr.contains("update server stopped"))
        }
    }

    @Test("SIGTERM while a client is connected: the server still exits 0 promptly")
    func gracefulShutdownWithOpenLinks() async throws {
        try await withSandbox { sandbox in
            let network = try await sandbox.startNetwork(withUpdate: false)
            let server = network.login.process
            let serverKey = try loadPublicKey(network.login.state + "/login-public.pem")

            // One idle link, one with an answered request still open.
            let idle = try RawConnection(port: network.login.port)
            defer { idle.close() }
            let sessionKey = AESGCM.makeKey()
            let busy = try RawConnection(port: network.login.port)
            defer { busy.close() }
            try busy.send(try sealedRequest(to: serverKey, sessionKey: sessionKey, registration("dave", "dave-password")))
            _ = try await busy.receive { frameCount($0) >= 1 }

            server.send(SIGTERM)
            let stopped = try await server.waitForExit(timeout: .seconds(10))
            #expect(stopped == Termination(status: 0, bySignal: false), "\(stopped)\n\(server.stderr)")
            #expect(try await idle.receiveUntilClosed(timeout: .seconds(5)).closed)
            #expect(try await busy.receiveUntilClosed(timeout: .seconds(5)).closed)
        }
    }

    @Test("no plaintext password in any state file or any process output")
    func noPlaintextPassword() async throws {
        try await withSandbox { sandbox in
            let password = "Zq7~canary-Ünïcødé-🦊-e2e-password"
            let wrongPassword = "Wr0ng~canary-Ω-guess-e2e"
            let verbose = ["SKYLARK_LOG_LEVEL": "trace"]
            let network = try await sandbox.startNetwork(loginEnvironment: verbose)
            let client = sandbox.path("client-alice")
            let common = ["--network", network.profile, "--state", client]

            expectExit(try await sandbox.skylark(["register", "alice"] + common, password: password, environment: verbose), 0)
            expectExit(try await sandbox.skylark(["login", "alice"] + common, password: password, environment: verbose), 0)
            expectExit(try await sandbox.skylark(["login", "alice"] + common, password: wrongPassword, environment: verbose), 3)
            expectExit(try await sandbox.skylark(["register", "alice"] + common, password: wrongPassword, environment: verbose), 5)
            expectExit(try await sandbox.skylark(["update", "--network", network.profile, "--download", sandbox.path("download")], environment: verbose), 0)

            func scan(_ moment: String) {
                let files = allFiles(under: sandbox.root)
                // The scan covers what it should: both state folders and every captured output.
                #expect(files.contains(client + "/credential.json"))
                #expect(files.contains(network.login.state + "/accounts.sqlite"))
                #expect(files.contains(network.login.process.stderrPath))
                #expect(files.filter { $0.hasPrefix(sandbox.path("logs/")) }.count >= 14)
                for secret in [password, wrongPassword] {
                    let needle = Array(secret.utf8)
                    for file in files {
                        let found = readBytes(file)?.contains(subsequence: needle) ?? false
                        #expect(!found, "\(moment): the password is in \(file)")
                    }
                }
            }
            scan("while the servers run")
            #expect(network.login.process.stderr.contains("login.name=alice"), "the server log is verbose enough to matter")

            network.login.process.send(SIGTERM)
            _ = try await network.login.process.waitForExit(timeout: .seconds(10))
            let update = try #require(network.update)
            update.process.send(SIGTERM)
            _ = try await update.process.waitForExit(timeout: .seconds(10))
            scan("after the servers stopped")
        }
    }
}
