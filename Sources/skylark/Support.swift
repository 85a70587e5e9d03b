import Foundation
import SkylarkCLI

#if canImport(Glibc)
    import Glibc
#endif

/// Names this executable in its failures, warnings and logs.
let tool = CommandLineTool(name: "skylark")

/// The password from SKYLARK_PASSWORD, else read from the terminal with echo off.
func readPassword(prompt: String, confirm: Bool) -> String {
    if let password = ProcessInfo.processInfo.environment["SKYLARK_PASSWORD"] { return password }
    let tty = open("/dev/tty", O_RDWR)
    guard tty >= 0 else { tool.fail("no password: set SKYLARK_PASSWORD or run on a terminal") }
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
    if confirm, ask("Repeat password: ") != password { tool.fail("the passwords differ", code: 10) }
    return password
}
