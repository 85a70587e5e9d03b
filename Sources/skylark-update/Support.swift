import Foundation
import Logging

/// Prints a one-line reason to standard error and exits non-zero.
func fail(_ reason: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("skylark-update: \(reason)\n".utf8))
    exit(code)
}

func bootstrapLogging(label: String, level: String) -> Logger {
    let level = Logger.Level(rawValue: ProcessInfo.processInfo.environment["SKYLARK_LOG_LEVEL"] ?? level) ?? .info
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
    return Logger(label: label)
}

/// Writes a line to standard output at once (unbuffered), for scripts waiting on it.
func announce(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
