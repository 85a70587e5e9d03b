import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SkylarkWire

/// What the executables share: one-line failures and warnings on standard error under the
/// executable's name, logging, endpoint options, and serving until SIGTERM or SIGINT.
public struct CommandLineTool: Sendable {
    /// Starts every failure and warning line, and labels the logger.
    public let name: String

    public init(name: String) {
        self.name = name
    }

    /// Prints a one-line reason to standard error and exits with `code`.
    public func fail(_ reason: String, code: Int32 = 1) -> Never {
        FileHandle.standardError.write(Data("\(name): \(reason)\n".utf8))
        exit(code)
    }

    public func warn(_ text: String) {
        FileHandle.standardError.write(Data("\(name): warning: \(text)\n".utf8))
    }

    /// Logs to standard error at SKYLARK_LOG_LEVEL, else `level` (the --log-level option).
    public func bootstrapLogging(level: String, fallback: Logger.Level) -> Logger {
        let level = Self.logLevel(option: level, environment: ProcessInfo.processInfo.environment, fallback: fallback)
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: name)
    }

    /// SKYLARK_LOG_LEVEL wins over the option; `fallback` when the winner names no level.
    public static func logLevel(option: String, environment: [String: String], fallback: Logger.Level) -> Logger.Level {
        Logger.Level(rawValue: environment["SKYLARK_LOG_LEVEL"] ?? option) ?? fallback
    }

    /// The HOST:PORT given to `option`, or a failure naming both.
    public func endpoint(_ text: String, option: String) -> HostPort {
        guard let endpoint = HostPort(text) else { fail("\(option) '\(text)' is not HOST:PORT") }
        return endpoint
    }

    /// The line scripts wait for once a server is bound.
    public func announceListening(on address: SocketAddress) {
        announce("\(name) listening on \(address.ipAddress ?? "?"):\(address.port ?? 0)")
    }

    /// Runs the services until SIGTERM or SIGINT; if they fail, stops the pool and exits with the error.
    public func runUntilSignalled(_ services: [any Service], logger: Logger, threadPool: NIOThreadPool? = nil) async throws {
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            try? await threadPool?.shutdownGracefully()
            fail("\(error)")
        }
        try await threadPool?.shutdownGracefully()
    }
}

/// Writes a line to standard output at once (unbuffered), for scripts waiting on it.
public func announce(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
