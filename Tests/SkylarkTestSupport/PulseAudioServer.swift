import Foundation

/// A headless PulseAudio server of a test's own: its own socket and state in a temporary folder,
/// null sinks only (they run in real time; a sink's `.monitor` source is what it played). Nothing
/// of the host's sound setup is touched. `stop()` ends it (by PID) and removes the folder; it may
/// be started again on the same socket (a sound server restarted under a call).
public final class PulseAudioServer: @unchecked Sendable {
    public let directory: String
    public let socket: String
    public let sinks: [String]
    private var pid: pid_t?

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
        guard pid == nil else { return }
        guard let binary = Self.find("pulseaudio") else {
            throw Failure(description: "pulseaudio is not installed (scripts/install-deps.sh installs it)")
        }
        let config = directory + "/default.pa"
        let lines =
            ["load-module module-native-protocol-unix socket=\(socket) auth-anonymous=1"]
            + sinks.map { "load-module module-null-sink sink_name=\($0) rate=48000 channels=1" }
        try (lines.joined(separator: "\n") + "\n").write(toFile: config, atomically: true, encoding: .utf8)
        // posix_spawn and waitpid on this PID only: a Foundation Process here kept the end-to-end
        // harness's own Process children from being reaped (they stayed zombies).
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in ["HOME": directory, "XDG_RUNTIME_DIR": directory, "PULSE_RUNTIME_PATH": directory, "PULSE_STATE_PATH": directory] {
            environment[key] = value
        }
        environment["PULSE_SERVER"] = nil
        let arguments = [binary, "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "--disable-shm=yes", "-F", config]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, directory + "/server.log", O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, binary, &actions, nil, argv, envp)
        guard status == 0 else { throw Failure(description: "cannot start pulseaudio: \(String(cString: strerror(status)))") }
        self.pid = pid
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: socket) {
            guard isRunning, Date() < deadline else {
                let text = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
                stop(removing: false)
                throw Failure(description: "pulseaudio did not start: \(text.suffix(600))")
            }
            usleep(20_000)
        }
    }

    /// Ends the server (SIGTERM, then SIGKILL after 5 s); the folder stays for a restart.
    public func stop() { stop(removing: false) }

    private var isRunning: Bool {
        guard let pid else { return false }
        var status: Int32 = 0
        let reaped = waitpid(pid, &status, WNOHANG)
        if reaped == pid || (reaped == -1 && errno == ECHILD) {
            self.pid = nil
            return false
        }
        return true
    }

    private func stop(removing: Bool) {
        if let pid, isRunning {
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(5)
            while isRunning, Date() < deadline { usleep(20_000) }
            if isRunning {
                kill(pid, SIGKILL)
                var status: Int32 = 0
                waitpid(pid, &status, 0)
            }
        }
        pid = nil
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
