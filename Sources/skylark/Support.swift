import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Prints a one-line reason to standard error and exits with `code`.
func fail(_ reason: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("skylark: \(reason)\n".utf8))
    exit(code)
}

func warn(_ text: String) {
    FileHandle.standardError.write(Data("skylark: warning: \(text)\n".utf8))
}

func bootstrapLogging(level: String) -> Logger {
    let level = Logger.Level(rawValue: ProcessInfo.processInfo.environment["SKYLARK_LOG_LEVEL"] ?? level) ?? .warning
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
    return Logger(label: "skylark")
}

/// The password from SKYLARK_PASSWORD, else read from the terminal with echo off.
func readPassword(prompt: String, confirm: Bool) -> String {
    if let password = ProcessInfo.processInfo.environment["SKYLARK_PASSWORD"] { return password }
    let tty = open("/dev/tty", O_RDWR)
    guard tty >= 0 else { fail("no password: set SKYLARK_PASSWORD or run on a terminal") }
    defer { close(tty) }
    func ask(_ text: String) -> String {
        _ = text.withCString { write(tty, $0, strlen($0)) }
        var saved = termios()
        tcgetattr(tty, &saved)
        var silent = saved
        silent.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(tty, TCSAFLUSH, &silent)
        defer {
            tcsetattr(tty, TCSAFLUSH, &saved)
            _ = write(tty, "\n", 1)
        }
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while read(tty, &byte, 1) == 1, byte != 0x0a, byte != 0x0d { bytes.append(byte) }
        return String(decoding: bytes, as: UTF8.self)
    }
    let password = ask(prompt)
    if confirm, ask("Repeat password: ") != password { fail("the passwords differ", code: 10) }
    return password
}

/// Writes a line to standard output at once (unbuffered), for scripts waiting on it.
func announce(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
