// Loopback plumbing for the end-to-end tests: port reservations, raw TCP clients, and helpers
// that initialise and start the real servers and wait (by polling) until they listen.

import Foundation
import SkylarkCrypto
import SkylarkWire
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

#if os(Linux)
    private let streamSocket = Int32(SOCK_STREAM.rawValue)
    private let noSignal = Int32(MSG_NOSIGNAL)
#else
    private let streamSocket = SOCK_STREAM
    private let noSignal: Int32 = 0
#endif

#if canImport(Glibc)
    private let systemSend = Glibc.send
    private let systemClose = Glibc.close
#else
    private let systemSend = Darwin.send
    private let systemClose = Darwin.close
#endif

private func loopback(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    return address
}

private func errnoText() -> String { String(cString: strerror(errno)) }

// MARK: - Ports

/// A free loopback port, held by a bound (not listening) socket with SO_REUSEADDR until
/// released. Nobody else gets the port from the kernel meanwhile, while a server that also sets
/// SO_REUSEADDR (both of ours do) may still bind and listen on it. Held and never listened on,
/// it is also a port where connections are refused.
final class PortReservation {
    let port: Int
    private var fd: Int32

    init() throws {
        let fd = socket(AF_INET, streamSocket, 0)
        guard fd >= 0 else { throw HarnessError("socket: \(errnoText())") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            let reason = errnoText()
            _ = systemClose(fd)
            throw HarnessError("bind 127.0.0.1:0: \(reason)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else {
            let reason = errnoText()
            _ = systemClose(fd)
            throw HarnessError("getsockname: \(reason)")
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func release() {
        if fd >= 0 {
            _ = systemClose(fd)
            fd = -1
        }
    }

    deinit { release() }
}

// MARK: - Raw TCP

/// A plain blocking TCP client on loopback, for speaking (or abusing) the wire protocols directly.
final class RawConnection {
    private var fd: Int32

    init(port: Int) throws {
        let fd = socket(AF_INET, streamSocket, 0)
        guard fd >= 0 else { throw HarnessError("socket: \(errnoText())") }
        // A send that cannot progress for 5 s fails with EAGAIN instead of hanging the test.
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let reason = errnoText()
            _ = systemClose(fd)
            throw HarnessError("connect 127.0.0.1:\(port): \(reason)")
        }
        self.fd = fd
    }

    /// Sends all of `bytes`; throws with errno's text if the connection fails first.
    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { systemSend(fd, $0.baseAddress, $0.count, noSignal) }
            if sent < 0 {
                if errno == EINTR { continue }
                throw HarnessError("send: \(errnoText()) (errno \(errno))")
            }
            offset += sent
        }
    }

    /// Sends `chunk` repeatedly until `limit` bytes are out or a send fails; returns the bytes
    /// sent and errno of the failure (nil if everything went out).
    func flood(chunk: [UInt8], limit: Int) -> (sent: Int, errno: Int32?) {
        var total = 0
        while total < limit {
            let sent = chunk.withUnsafeBytes { systemSend(fd, $0.baseAddress, min($0.count, limit - total), noSignal) }
            if sent < 0 {
                if errno == EINTR { continue }
                return (total, errno)
            }
            total += sent
        }
        return (total, nil)
    }

    /// The local (ephemeral) port of this connection.
    var localPort: Int {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    func shutdownWrite() { _ = shutdown(fd, Int32(SHUT_WR)) }

    /// Reads until `done` holds for the bytes received so far or the peer closes (EOF or reset);
    /// throws if neither happens within `timeout`.
    func receive(timeout: Duration = .seconds(10), until done: ([UInt8]) -> Bool) async throws -> (bytes: [UInt8], closed: Bool) {
        var received: [UInt8] = []
        var closed = false
        var buffer = [UInt8](repeating: 0, count: 65536)
        try await waitUntil("an answer or a close from the peer", timeout: timeout) {
            while true {
                if done(received) { return true }
                var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&descriptor, 1, 0) > 0 else { return false }
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if count > 0 {
                    received += buffer[0..<count]
                } else if count == 0 || errno == ECONNRESET {
                    closed = true
                    return true
                } else if errno != EINTR && errno != EAGAIN {
                    throw HarnessError("recv: \(errnoText())")
                }
            }
        }
        return (received, closed)
    }

    /// Reads until the peer closes (EOF or reset); throws if it does not within `timeout`.
    func receiveUntilClosed(timeout: Duration = .seconds(10)) async throws -> (bytes: [UInt8], closed: Bool) {
        try await receive(timeout: timeout) { _ in false }
    }

    func close() {
        if fd >= 0 {
            _ = systemClose(fd)
            fd = -1
        }
    }

    deinit { close() }
}

/// A /proc file read to its end (its size reads as 0, so read until EOF).
func readProcFile(_ path: String) -> String {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return "" }
    defer { _ = systemClose(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { break }
        bytes += buffer[0..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The send and receive queues (bytes) of the loopback TCP socket bound to `localPort` and
/// connected to `remotePort`, from /proc/net/tcp; nil if there is no such socket.
func tcpQueues(localPort: Int, remotePort: Int, table: String = readProcFile("/proc/net/tcp")) -> (send: Int, receive: Int)? {
    let local = String(format: "0100007F:%04X", localPort)
    let remote = String(format: "0100007F:%04X", remotePort)
    for line in table.split(separator: "\n").dropFirst() {
        let fields = line.split(separator: " ")
        guard fields.count > 4, fields[1] == local, fields[2] == remote else { continue }
        let queues = fields[4].split(separator: ":")
        guard queues.count == 2, let send = Int(queues[0], radix: 16), let receive = Int(queues[1], radix: 16) else { continue }
        return (send, receive)
    }
    return nil
}

/// True once the server process listening on `serverPort` has read everything the client on
/// `clientPort` sent: the client's data is acknowledged (so it reached the server's socket) and
/// the server's socket holds nothing unread.
/// Also true once the connection is gone (the server closed it, or died).
func serverHasReadEverything(serverPort: Int, clientPort: Int) -> Bool {
    // /proc/net/tcp is not a snapshot: a busy table can skip a line, so absence proves little.
    let table = readProcFile("/proc/net/tcp")
    guard let client = tcpQueues(localPort: clientPort, remotePort: serverPort, table: table) else {
        return tcpQueues(localPort: clientPort, remotePort: serverPort) == nil
    }
    guard client.send == 0, let server = tcpQueues(localPort: serverPort, remotePort: clientPort, table: table) else { return false }
    return server.receive == 0
}

/// Sends one HTTP/1.1 request and returns the status code and body of the answer.
func httpRequest(port: Int, method: String, path: String) async throws -> (status: Int, body: [UInt8]) {
    let connection = try RawConnection(port: port)
    defer { connection.close() }
    try connection.send(Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n".utf8))
    let (bytes, closed) = try await connection.receiveUntilClosed()
    guard closed else { throw HarnessError("the update server kept the connection open after Connection: close") }
    let separator: [UInt8] = [13, 10, 13, 10]
    guard let end = (0...max(0, bytes.count - 4)).first(where: { bytes.count >= 4 && Array(bytes[$0..<$0 + 4]) == separator }) else {
        throw HarnessError("not an HTTP answer: \(String(decoding: bytes.prefix(200), as: UTF8.self))")
    }
    let head = String(decoding: bytes[..<end], as: UTF8.self)
    let parts = head.prefix(while: { $0 != "\r" }).split(separator: " ")
    guard parts.count >= 2, let status = Int(parts[1]) else { throw HarnessError("not an HTTP status line: \(head)") }
    return (status, Array(bytes[(end + 4)...]))
}

// MARK: - Servers

struct UpdateServerInfo {
    let state: String
    let process: ChildProcess
    let port: Int
    var url: String { "http://127.0.0.1:\(port)" }
    var publicKeyPath: String { state + "/update-public.pem" }
    var manifestPath: String { state + "/manifest.json" }
}

struct LoginServerInfo {
    let state: String
    let process: ChildProcess
    let port: Int
    var profile: String { state + "/network.json" }
}

struct ReleaseFile {
    let name: String
    let path: String
    let bytes: [UInt8]
}

/// A running login server (and, optionally, an update server with release 0.2.0 published).
struct TestNetwork {
    let update: UpdateServerInfo?
    let login: LoginServerInfo
    let release: ReleaseFile?
    var profile: String { login.profile }
}

/// Asserts the exit status and, if given, a piece of the one-line message on stderr.
func expectExit(
    _ result: RunResult, _ status: Int32, stderrContains message: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(result.status == status, "\(result)", sourceLocation: sourceLocation)
    if let message {
        #expect(result.stderr.contains(message), "expected '\(message)' on stderr of \(result)", sourceLocation: sourceLocation)
    }
}

/// The port in a "… listening on 127.0.0.1:PORT" announcement.
func announcedPort(in output: String) -> Int? {
    guard let line = output.split(separator: "\n").first(where: { $0.contains(" listening on ") }),
        let colon = line.lastIndex(of: ":")
    else { return nil }
    return Int(line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
}

extension Sandbox {
    /// Runs a command that must succeed; throws with its output if it does not.
    @discardableResult
    func runOK(_ tool: String, _ arguments: [String], password: String? = nil) async throws -> RunResult {
        let result = try await run(tool, arguments, password: password)
        guard result.status == 0 else { throw HarnessError("setup command failed: \(result)") }
        return result
    }

    /// `skylark ARGS` with the password in SKYLARK_PASSWORD.
    func skylark(_ arguments: [String], password: String? = nil, environment: [String: String] = [:]) async throws -> RunResult {
        try await run("skylark", arguments, password: password, environment: environment)
    }

    func register(_ name: String, _ password: String, profile: String, state: String? = nil) async throws -> RunResult {
        try await skylark(["register", name, "--network", profile, "--state", state ?? path("client-\(name)")], password: password)
    }

    func login(_ name: String, _ password: String, profile: String, state: String? = nil) async throws -> RunResult {
        try await skylark(["login", name, "--network", profile, "--state", state ?? path("client-\(name)")], password: password)
    }

    /// `skylark-update init` with a 2048-bit key in a new folder; returns the folder.
    func initUpdate(_ folder: String = "update") async throws -> String {
        let state = path(folder)
        try await runOK("skylark-update", ["init", "--state", state, "--key-bits", "2048"])
        return state
    }

    /// Writes a release file of `size` pseudo-random bytes (zeros included).
    func makeReleaseFile(_ name: String = "skylark-0.2.0.tar.gz", size: Int = 3000) throws -> ReleaseFile {
        try FileManager.default.createDirectory(atPath: path("release-src"), withIntermediateDirectories: true)
        var generator = SystemRandomNumberGenerator()
        var bytes = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
        if size > 10 { bytes[5] = 0 }
        let file = path("release-src/\(name)")
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        return ReleaseFile(name: name, path: file, bytes: bytes)
    }

    func publish(state: String, version: String, files: [String], extra: [String] = []) async throws {
        try await runOK(
            "skylark-update",
            ["publish", "--state", state, "--version", version, "--notes", "release \(version)"]
                + files.flatMap { ["--file", $0] } + extra)
    }

    /// `skylark-update serve` on 127.0.0.1:0; waits for its announcement and reads the port from it.
    func serveUpdate(state: String) async throws -> UpdateServerInfo {
        let process = try launch("skylark-update", ["serve", "--state", state, "--listen", "127.0.0.1:0"], label: "skylark-update serve")
        let output = try await process.waitForOutput(containing: "skylark-update listening on 127.0.0.1:")
        guard let port = announcedPort(in: output), port > 0 else { throw HarnessError("no port in '\(output)'") }
        return UpdateServerInfo(state: state, process: process, port: port)
    }

    /// `skylark-login init` (2048-bit key) whose profile names 127.0.0.1:`port`; returns the folder.
    func initLogin(_ folder: String = "login", port: Int, updateURL: String? = nil, updateKey: String? = nil) async throws -> String {
        let state = path(folder)
        var arguments = ["init", "--state", state, "--public-address", "127.0.0.1:\(port)", "--key-bits", "2048"]
        if let updateURL { arguments += ["--update-url", updateURL] }
        if let updateKey { arguments += ["--update-key", updateKey] }
        try await runOK("skylark-login", arguments)
        return state
    }

    /// `skylark-login serve` on 127.0.0.1:`port`; returns once it announced that port. A held
    /// reservation of the port is released once the server listens.
    func serveLogin(
        state: String, port: Int, reservation: PortReservation? = nil, extra: [String] = [],
        environment: [String: String] = [:]
    ) async throws -> LoginServerInfo {
        let process = try launch(
            "skylark-login", ["serve", "--state", state, "--listen", "127.0.0.1:\(port)"] + extra,
            environment: environment, label: "skylark-login serve")
        let output = try await process.waitForOutput(containing: "skylark-login listening on 127.0.0.1:")
        reservation?.release()
        guard announcedPort(in: output) == port else { throw HarnessError("login server announced '\(output)', expected port \(port)") }
        return LoginServerInfo(state: state, process: process, port: port)
    }

    /// A login server on a fresh port, initialised with `init` and started with `serve`.
    func startLogin(
        _ folder: String = "login", updateURL: String? = nil, updateKey: String? = nil, extra: [String] = [],
        environment: [String: String] = [:]
    ) async throws -> LoginServerInfo {
        let reservation = try reservePort()
        let state = try await initLogin(folder, port: reservation.port, updateURL: updateURL, updateKey: updateKey)
        return try await serveLogin(state: state, port: reservation.port, reservation: reservation, extra: extra, environment: environment)
    }

    /// Update server with release 0.2.0 published and serving, then a login server whose profile
    /// pins it (`withUpdate: false`: a login server alone).
    func startNetwork(withUpdate: Bool = true, loginExtra: [String] = [], loginEnvironment: [String: String] = [:]) async throws -> TestNetwork {
        guard withUpdate else {
            return TestNetwork(update: nil, login: try await startLogin(extra: loginExtra, environment: loginEnvironment), release: nil)
        }
        let updateState = try await initUpdate()
        let release = try makeReleaseFile()
        try await publish(state: updateState, version: "0.2.0", files: [release.path])
        let update = try await serveUpdate(state: updateState)
        let login = try await startLogin(
            updateURL: update.url, updateKey: update.publicKeyPath, extra: loginExtra,
            environment: loginEnvironment)
        return TestNetwork(update: update, login: login, release: release)
    }
}

// MARK: - Documents

/// Reads a JSON object file.
func readJSONObject(_ path: String) throws -> [String: Any] {
    guard let data = FileManager.default.contents(atPath: path),
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
    else {
        throw HarnessError("\(path) is not a JSON object")
    }
    return object
}

func writeJSONObject(_ object: [String: Any], to path: String) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    try data.write(to: URL(fileURLWithPath: path))
}

func loadPublicKey(_ pemPath: String) throws -> RSA.PublicKey {
    try RSA.PublicKey(pem: readFile(pemPath))
}

func loadPrivateKey(_ pemPath: String) throws -> RSA.PrivateKey {
    try RSA.PrivateKey(pem: readFile(pemPath))
}
