import Foundation

/// A headless PulseAudio server of a test's own: its own socket and state in a temporary folder,
/// null sinks only (they run in real time; a sink's `.monitor` source is what it played). Nothing
/// of the host's sound setup is touched. `stop()` ends it (by PID) and removes the folder; it may
/// be started again on the same socket (a sound server restarted under a call).
public final class PulseAudioServer: @unchecked Sendable {
    public let directory: String
    public let socket: String
    public let sinks: [String]
    private var process: Process?

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// `address` for libpulse (`PULSE_SERVER` form).
    public var address: String { "unix:\(socket)" }

    public init(sinks: [String]) throws {
        directory = try makeTemporaryDirectory()
        socket = directory + "/native"
        self.sinks = sinks
        try start()
    }

    deinit { stop(removing: true) }

    /// Starts (or restarts) the server and waits until its socket answers.
    public func start() throws {
        guard process == nil else { return }
        guard let binary = Self.find("pulseaudio") else {
            throw Failure(description: "pulseaudio is not installed (scripts/install-deps.sh installs it)")
        }
        let config = directory + "/default.pa"
        let lines =
            ["load-module module-native-protocol-unix socket=\(socket) auth-anonymous=1"]
            + sinks.map { "load-module module-null-sink sink_name=\($0) rate=48000 channels=1" }
        try (lines.joined(separator: "\n") + "\n").write(toFile: config, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "--disable-shm=yes", "-F", config]
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in ["HOME": directory, "XDG_RUNTIME_DIR": directory, "PULSE_RUNTIME_PATH": directory, "PULSE_STATE_PATH": directory] {
            environment[key] = value
        }
        environment["PULSE_SERVER"] = nil
        process.environment = environment
        let log =
            FileHandle(forWritingAtPath: directory + "/server.log")
            ?? {
                FileManager.default.createFile(atPath: directory + "/server.log", contents: nil)
                return FileHandle(forWritingAtPath: directory + "/server.log")!
            }()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: socket) {
            guard process.isRunning, Date() < deadline else {
                let text = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
                stop(removing: false)
                throw Failure(description: "pulseaudio did not start: \(text.suffix(600))")
            }
            usleep(20_000)
        }
    }

    /// Ends the server (SIGTERM, then SIGKILL after 5 s); the folder stays for a restart.
    public func stop() { stop(removing: false) }

    private func stop(removing: Bool) {
        if let process, process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning, Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        process = nil
        try? FileManager.default.removeItem(atPath: socket)
        if removing { removeDirectory(directory) }
    }

    private static func find(_ tool: String) -> String? {
        for directory in ["/usr/bin", "/usr/local/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: "\(directory)/\(tool)") {
            return "\(directory)/\(tool)"
        }
        return nil
    }
}
