import Foundation
import Logging
import SkylarkCrypto
import SkylarkNode
import SkylarkTestSupport
import SkylarkWire
import Synchronization

@testable import SkylarkLoginServer

/// The shared `epoch` (2025-01-01T00:00:00Z) as the login cores' clock, Double seconds; it
/// shadows the Int64 one in this target.
let epoch = Double(SkylarkTestSupport.epoch)

/// A fresh Ed25519 public key, raw.
func makeUserKey() throws -> [UInt8] {
    try Ed25519.PrivateKey().publicKey().rawRepresentation()
}

/// scrypt parameters cheap enough for most tests (N = 2^10).
let cheapHashing = Scrypt.Parameters(n: 1 << 10, r: 8, p: 1)

func cheapConfiguration() -> LoginAuthority.Configuration {
    var configuration = LoginAuthority.Configuration()
    configuration.passwordHashing = cheapHashing
    configuration.credentialLifetime = 3600
    return configuration
}

// MARK: - Logging

/// Keeps every log line (message and metadata) so tests can look for leaks.
final class LogRecorder: Sendable {
    private let lines = Mutex<[String]>([])

    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }

    var logger: Logger {
        Logger(label: "skylark-test") { _ in RecordingLogHandler(recorder: self) }
    }
}

struct RecordingLogHandler: LogHandler {
    let recorder: LogRecorder
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        recorder.append("\(event.level) \(event.message) \(merged)")
    }
}

// MARK: - The server side in memory

/// A real SQLite store in a temporary folder and an authority over it.
final class ServerFixture {
    let directory: String
    let store: SQLiteAccountStore
    let authority: LoginAuthority
    let log = LogRecorder()
    let key: RSA.PrivateKey

    var databasePath: String { directory + "/accounts.sqlite" }

    /// The caller must call `remove()` in a `defer`.
    init(configuration: LoginAuthority.Configuration = cheapConfiguration(), key: RSA.PrivateKey = TestKeys.login) throws {
        directory = try makeTemporaryDirectory()
        do {
            store = try SQLiteAccountStore(path: directory + "/accounts.sqlite")
            self.key = key
            authority = try LoginAuthority(key: key, store: store, configuration: configuration, logger: log.logger)
        } catch {
            removeDirectory(directory)
            throw error
        }
    }

    func remove() { removeDirectory(directory) }
}

/// What one exchange produced on both sides.
struct ExchangeReport {
    /// The client's verdict: its outcome, or the typed failure it threw.
    var result: Result<LoginClientExchange.Outcome, LoginFailure>?
    /// Every answer frame the server sent, in order.
    var answerBytes: [UInt8] = []
    /// Whether the server-side connection asked for the link to be closed.
    var closed = false
    /// Actions the connection emitted before the request was complete (must stay empty).
    var prematureActions: [LoginConnection.Action] = []
    /// The client returned an outcome (or threw) before the last answer byte arrived.
    var prematureOutcome = false

    var outcome: LoginClientExchange.Outcome? {
        if case let .success(outcome)? = result { return outcome }
        return nil
    }

    var failure: LoginFailure? {
        if case let .failure(failure)? = result { return failure }
        return nil
    }

    var credential: Credential? {
        if case let .loggedIn(credential)? = outcome { return credential }
        return nil
    }
}

/// Feeds `bytes` to `connection`, all at once or one byte at a time, and carries out `.process`
/// actions on `authority` with the given `now`. Returns the bytes sent back and whether it closed.
func drive(
    _ connection: inout LoginConnection, bytes: [UInt8], authority: LoginAuthority, address: String, now: Double,
    byteByByte: Bool, report: inout ExchangeReport
) {
    var pending: [LoginConnection.Action] = []
    if byteByByte {
        for (index, byte) in bytes.enumerated() {
            let actions = connection.receive([byte])
            if index < bytes.count - 1, !actions.isEmpty { report.prematureActions += actions }
            pending += actions
        }
    } else {
        pending = connection.receive(bytes)
    }
    while !pending.isEmpty {
        let action = pending.removeFirst()
        switch action {
        case let .process(request):
            pending += connection.completed(authority.handle(request, from: address, now: now))
        case let .send(answer):
            report.answerBytes += answer
        case .close:
            report.closed = true
        }
    }
}

/// One exchange: client request bytes -> LoginConnection.receive -> .process -> authority.handle
/// -> completed -> .send bytes -> client.receive. `clientNow` is the client's clock, `serverNow`
/// the server's.
func exchange(
    _ request: LoginClientExchange.Request, authority: LoginAuthority, connection: inout LoginConnection,
    clientNow: Double, serverNow: Double? = nil, address: String = "192.0.2.10",
    serverKey: RSA.PublicKey = TestKeys.login.publicKey, byteByByte: Bool = false
) throws -> ExchangeReport {
    let client = try LoginClientExchange(request, serverKey: serverKey, now: clientNow)
    return deliver(
        client, authority: authority, connection: &connection, serverNow: serverNow ?? clientNow,
        address: address, byteByByte: byteByByte)
}

/// Same as `exchange`, for a client exchange the test built (to reuse its bytes or keys).
func deliver(
    _ client: LoginClientExchange, authority: LoginAuthority, connection: inout LoginConnection,
    serverNow: Double, address: String = "192.0.2.10", byteByByte: Bool = false
) -> ExchangeReport {
    var client = client
    var report = ExchangeReport()
    drive(
        &connection, bytes: client.requestBytes, authority: authority, address: address, now: serverNow,
        byteByByte: byteByByte, report: &report)
    report.result = answer(
        &client, with: report.answerBytes, serverClosed: report.closed, byteByByte: byteByByte,
        premature: &report.prematureOutcome)
    return report
}

/// Feeds answer bytes to the client; at the end, a closed link with no answer is `endOfInput`.
func answer(
    _ client: inout LoginClientExchange, with bytes: [UInt8], serverClosed: Bool, byteByByte: Bool,
    premature: inout Bool
) -> Result<LoginClientExchange.Outcome, LoginFailure>? {
    let chunks: [[UInt8]] = byteByByte ? bytes.map { [$0] } : [bytes]
    for (index, chunk) in chunks.enumerated() {
        do throws(LoginFailure) {
            if let outcome = try client.receive(chunk) {
                if index < chunks.count - 1 { premature = true }
                return .success(outcome)
            }
        } catch {
            if index < chunks.count - 1 { premature = true }
            return .failure(error)
        }
    }
    if serverClosed {
        do throws(LoginFailure) { try client.endOfInput() } catch { return .failure(error) }
    }
    return nil
}

/// Registers `name` on a fresh connection and expects success.
@discardableResult
func register(
    _ name: String, password: String, on fixture: ServerFixture, now: Double = epoch,
    address: String = "192.0.2.10"
) throws -> ExchangeReport {
    var connection = LoginConnection()
    return try exchange(
        .register(name: name, password: password), authority: fixture.authority, connection: &connection,
        clientNow: now, address: address)
}

/// Logs `name` in on a fresh connection.
func login(
    _ name: String, password: String, key: [UInt8], on fixture: ServerFixture, now: Double = epoch,
    address: String = "192.0.2.10"
) throws -> ExchangeReport {
    var connection = LoginConnection()
    return try exchange(
        .login(name: name, password: password, userPublicKey: key), authority: fixture.authority,
        connection: &connection, clientNow: now, address: address)
}

/// Decodes every server frame in `bytes`.
func serverFrames(_ bytes: [UInt8]) throws -> [LoginServerFrame] {
    var decoder = MessageDecoder<LoginServerFrame>(maximumFrameSize: 16 * 1024)
    decoder.append(bytes: bytes)
    var frames: [LoginServerFrame] = []
    while let frame = try decoder.next() { frames.append(frame) }
    try decoder.finish()
    return frames
}
