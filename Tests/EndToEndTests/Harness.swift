// The end-to-end harness: finds the built executables, starts them as child processes with their
// output captured to files, waits on conditions by polling with deadlines (never a fixed sleep),
// and guarantees that every process a test started is stopped and reaped and its temporary
// folder removed, also when an expectation fails or the test throws.

import Foundation
import SkylarkTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Executables

/// The folder holding skylark, skylark-login and skylark-update: the one holding the test bundle
/// (`.build/<triple>/debug/skylarkPackageTests.xctest` on Linux). `SKYLARK_E2E_BIN` overrides it.
enum Executables {
    static let names = ["skylark", "skylark-login", "skylark-update"]

    static let directory: Result<String, HarnessError> = {
        var starts: [String] = []
        if let override = ProcessInfo.processInfo.environment["SKYLARK_E2E_BIN"], !override.isEmpty {
            starts.append(override)
        }
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { starts.append(exe) }
        if let first = CommandLine.arguments.first, !first.isEmpty {
            starts.append(URL(fileURLWithPath: first).standardizedFileURL.path)
        }
        // Walk up from each start: the bundle is a file on Linux, a folder tree on macOS.
        var tried: [String] = []
        for start in starts {
            var folder = URL(fileURLWithPath: start).standardizedFileURL
            for _ in 0..<5 {
                if FileManager.default.isExecutableFile(atPath: folder.appendingPathComponent("skylark-login").path) {
                    return .success(folder.path)
                }
                tried.append(folder.path)
                folder.deleteLastPathComponent()
            }
        }
        return .failure(
            HarnessError(
                """
                skylark-login is not next to the test bundle (looked in: \(tried.joined(separator: ", "))). \
                Build the executables first: `swift build --build-tests`, or set SKYLARK_E2E_BIN to their folder.
                """))
    }()

    static func path(_ name: String) throws -> String {
        let folder = try directory.get()
        let path = folder + "/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw HarnessError("\(name) is missing in \(folder): build it with `swift build --build-tests`")
        }
        return path
    }
}

// MARK: - Polling

/// Polls `condition` until it holds, with a short pause between tries; throws after `timeout`.
func waitUntil(
    _ what: @autoclosure () -> String, timeout: Duration = .seconds(30),
    _ condition: () throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try condition() { return }
        guard ContinuousClock.now < deadline else { throw HarnessError("timed out after \(timeout) waiting for \(what())") }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// The same for teardown paths, which must not depend on the task not being cancelled.
@discardableResult
func waitUntilBlocking(timeout: Duration, _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else { return false }
        usleep(10_000)
    }
    return true
}

// MARK: - Files

func readFile(_ path: String) -> String {
    FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? ""
}

func writeFile(_ path: String, _ text: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

func fileExists(_ path: String) -> Bool {
    FileManager.default.fileExists(atPath: path)
}

/// Every regular file below `root`, recursively.
func allFiles(under root: String) -> [String] {
    guard let enumerator = FileManager.default.enumerator(atPath: root) else { return [] }
    var files: [String] = []
    while let relative = enumerator.nextObject() as? String {
        let path = root + "/" + relative
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
            files.append(path)
        }
    }
    return files
}

// MARK: - Processes

/// How a child process ended.
struct Termination: Equatable, CustomStringConvertible {
    var status: Int32
    var bySignal: Bool

    var description: String { bySignal ? "killed by signal \(status)" : "exit \(status)" }
}

/// One child process, its stdout and stderr captured to files.
final class ChildProcess {
    let label: String
    let stdoutPath: String
    let stderrPath: String
    private let process = Process()

    init(
        label: String, executable: String, arguments: [String], environment: [String: String],
        stdoutPath: String, stderrPath: String
    ) throws {
        self.label = label
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
        guard FileManager.default.createFile(atPath: stdoutPath, contents: nil),
            FileManager.default.createFile(atPath: stderrPath, contents: nil)
        else {
            throw HarnessError("cannot create the output files of \(label)")
        }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        defer {
            try? out.close()
            try? err.close()
        }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        do { try process.run() } catch { throw HarnessError("cannot start \(label) (\(executable)): \(error)") }
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var stdout: String { readFile(stdoutPath) }
    var stderr: String { readFile(stderrPath) }

    var termination: Termination? {
        guard !process.isRunning else { return nil }
        return Termination(status: process.terminationStatus, bySignal: process.terminationReason == .uncaughtSignal)
    }

    /// Sends `signal` to this process by its PID, only while it has not been reaped.
    func send(_ signal: Int32) {
        guard process.isRunning else { return }
        _ = kill(process.processIdentifier, signal)
    }

    /// Polls until the process has exited; throws if it has not within `timeout`.
    @discardableResult
    func waitForExit(timeout: Duration = .seconds(60)) async throws -> Termination {
        try await waitUntil("\(label) to exit", timeout: timeout) { !process.isRunning }
        return termination!
    }

    /// Polls stdout until it contains `text`; throws if the process exits first or on timeout.
    @discardableResult
    func waitForOutput(containing text: String, timeout: Duration = .seconds(30)) async throws -> String {
        var found = ""
        try await waitUntil("'\(text)' on the stdout of \(label)", timeout: timeout) {
            let output = stdout
            if output.contains(text) {
                found = output
                return true
            }
            if !process.isRunning {
                throw HarnessError("\(label) ended (\(termination!)) before printing '\(text)'\nstdout: \(stdout)\nstderr: \(stderr)")
            }
            return false
        }
        return found
    }

    /// Teardown: SIGTERM, then SIGKILL if it lingers; returns once the process is reaped.
    func stop() {
        guard process.isRunning else { return }
        send(SIGTERM)
        if waitUntilBlocking(timeout: .seconds(5), { !process.isRunning }) { return }
        send(SIGKILL)
        if !waitUntilBlocking(timeout: .seconds(10), { !process.isRunning }) {
            Issue.record("\(label) (pid \(pid)) survived SIGKILL")
        }
    }
}

/// The outcome of a command run to completion.
struct RunResult: CustomStringConvertible {
    var command: String
    var termination: Termination
    var stdout: String
    var stderr: String

    /// The exit status; a signal shows as 128 + its number, like a shell.
    var status: Int32 { termination.bySignal ? 128 + termination.status : termination.status }

    var description: String { "`\(command)` → \(termination)\n--- stdout:\n\(stdout)--- stderr:\n\(stderr)---" }
}

// MARK: - Sandbox

/// At most this many tests hold servers at once: keeps a 2-core box responsive enough for the
/// clients' timeouts (3 s for the update check during login).
actor SandboxGate {
    static let shared = SandboxGate(limit: 3)

    private let limit: Int
    private var active = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(limit: Int) { self.limit = limit }

    func enter() async {
        if active < limit {
            active += 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func leave() {
        if waiting.isEmpty { active -= 1 } else { waiting.removeFirst().resume() }
    }
}

/// One test's world: a temporary folder (state folders, release files, captured output) and every
/// process, port reservation and socket the test made. `tearDown` undoes all of it.
final class Sandbox {
    let root: String
    private var children: [ChildProcess] = []
    private var reservations: [PortReservation] = []
    private var runCount = 0

    init(name: String) throws {
        let slug = String(name.prefix(while: { $0 != "(" }).filter { $0.isLetter || $0.isNumber }.prefix(40))
        var template = Array((NSTemporaryDirectory() + "/skylark-e2e-\(slug)-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw HarnessError("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        root = URL(fileURLWithPath: String(cString: made)).standardizedFileURL.path
        try FileManager.default.createDirectory(atPath: root + "/logs", withIntermediateDirectories: true)
    }

    func path(_ relative: String) -> String { root + "/" + relative }

    /// A clean environment: no inherited SKYLARK_* settings, HOME inside the sandbox.
    func environment(password: String?, extra: [String: String] = [:]) -> [String: String] {
        var environment: [String: String] = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
            "HOME": root,
            "LANG": "C.UTF-8",
            // A crashing child dies at once (its "Fatal error" line still goes to stderr) instead
            // of serving on for a second or two while the backtracer runs.
            "SWIFT_BACKTRACE": "enable=no",
        ]
        if let password { environment["SKYLARK_PASSWORD"] = password }
        environment.merge(extra) { _, new in new }
        return environment
    }

    /// Starts `tool` (one of the three executables); it is stopped at teardown at the latest.
    func launch(
        _ tool: String, _ arguments: [String], password: String? = nil, environment extra: [String: String] = [:],
        label: String? = nil
    ) throws -> ChildProcess {
        try launchProgram(try Executables.path(tool), arguments, password: password, environment: extra, label: label ?? "\(tool) \(arguments.first ?? "")")
    }

    /// Starts any program (by path) the way `launch` starts ours.
    func launchProgram(
        _ executable: String, _ arguments: [String], password: String? = nil, environment extra: [String: String] = [:],
        label: String
    ) throws -> ChildProcess {
        runCount += 1
        let stem = path("logs/\(String(format: "%03d", runCount))-\(label.filter { $0.isLetter || $0.isNumber || $0 == "-" })")
        let child = try ChildProcess(
            label: label, executable: executable, arguments: arguments,
            environment: environment(password: password, extra: extra),
            stdoutPath: stem + ".out", stderrPath: stem + ".err")
        children.append(child)
        return child
    }

    /// Runs a command to completion (killed and reported if it takes longer than `timeout`).
    func run(
        _ tool: String, _ arguments: [String], password: String? = nil, environment extra: [String: String] = [:],
        timeout: Duration = .seconds(60)
    ) async throws -> RunResult {
        let child = try launch(tool, arguments, password: password, environment: extra)
        let termination: Termination
        do {
            termination = try await child.waitForExit(timeout: timeout)
        } catch {
            child.stop()
            throw HarnessError("\(tool) \(arguments.joined(separator: " ")) did not finish: \(error)\nstdout: \(child.stdout)\nstderr: \(child.stderr)")
        }
        return RunResult(
            command: ([tool] + arguments).joined(separator: " "), termination: termination,
            stdout: child.stdout, stderr: child.stderr)
    }

    /// A loopback port held bound (not listening) until released or teardown.
    func reservePort() throws -> PortReservation {
        let reservation = try PortReservation()
        reservations.append(reservation)
        return reservation
    }

    /// Every process started is stopped and reaped; the folder is removed (kept if
    /// SKYLARK_E2E_KEEP is set, for debugging).
    func tearDown() {
        for child in children { child.stop() }
        children.removeAll()
        for reservation in reservations { reservation.release() }
        reservations.removeAll()
        if ProcessInfo.processInfo.environment["SKYLARK_E2E_KEEP"] == nil {
            removeDirectory(root)
        } else {
            print("kept \(root)")
        }
    }
}

/// Runs `body` with a fresh sandbox and tears it down afterwards, whatever happens in `body`.
func withSandbox(_ name: String = #function, _ body: (Sandbox) async throws -> Void) async throws {
    await SandboxGate.shared.enter()
    let sandbox: Sandbox
    do {
        sandbox = try Sandbox(name: name)
    } catch {
        await SandboxGate.shared.leave()
        throw error
    }
    do {
        try await body(sandbox)
    } catch {
        sandbox.tearDown()
        await SandboxGate.shared.leave()
        throw error
    }
    sandbox.tearDown()
    await SandboxGate.shared.leave()
}
