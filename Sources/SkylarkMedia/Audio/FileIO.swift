#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The few POSIX file calls the WAV reader and writer need. POSIX rather than Foundation
/// because the writer must rewrite the header in place (`pwrite` at offset 0) after every
/// append, and errors should carry the system's own text.
enum FileIO {
    static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }

    static func failure(_ operation: String, _ path: String, _ code: Int32 = errno) -> MediaError {
        .io(operation: operation, path: path, reason: errorText(code))
    }

    /// The whole file. Reads until end of file rather than trusting a size taken beforehand,
    /// since a file being written grows while it is read.
    static func readAll(path: String) throws(MediaError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw failure("open", path) }
        defer { _ = close(descriptor) }
        var contents = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count == 0 { return contents }
            if count < 0 {
                if errno == EINTR { continue }
                throw failure("read", path)
            }
            contents.append(contentsOf: chunk[0..<count])
        }
    }

    /// `close(2)`, callable from types that have a `close()` method of their own.
    static func closeDescriptor(_ descriptor: Int32) -> Int32 { close(descriptor) }

    /// Writes all of `bytes` at `offset`, retrying short writes and interruptions.
    static func writeAll(_ descriptor: Int32, _ bytes: [UInt8], at offset: Int, path: String) throws(MediaError) {
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeBytes { raw in
                pwrite(descriptor, raw.baseAddress! + done, raw.count - done, off_t(offset + done))
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw failure("write", path)
            }
            done += count
        }
    }
}
