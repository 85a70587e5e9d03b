import Foundation

/// Log level names accepted by the executables' --log-level and SKYLARK_LOG_LEVEL.
public enum LogLevelName {
    public static let all = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
}
