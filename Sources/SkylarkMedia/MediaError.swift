/// Errors from the codec and the audio files. RTP parsing and media encryption have their own
/// types (`RTPError`, `MediaCipherError`) because they fail on untrusted network input, where the
/// caller drops the packet, while these fail on local mistakes or local files.
public enum MediaError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A libopus call failed; `reason` is libopus's own text (`opus_strerror`) for `code`.
    case opus(operation: String, code: Int32, reason: String)
    /// A PCM frame of the wrong length was handed to the encoder: a packet here is one to three
    /// 20 ms frames of `expected` samples.
    case wrongFrameSize(expected: Int, actual: Int)
    /// A setting outside what the codec or file format accepts (bitrate, complexity, loss, …).
    case invalidParameter(name: String, value: String)
    /// A WAV file that this code deliberately does not handle (not 16-bit PCM, not 48 kHz, …).
    case unsupportedWAV(String)
    /// Bytes that are not a well-formed WAV file.
    case malformedWAV(String)
    /// A file could not be opened, read or written; `reason` is the system's text for errno.
    case io(operation: String, path: String, reason: String)

    public var description: String {
        switch self {
        case let .opus(operation, code, reason): return "libopus \(operation) failed (\(code)): \(reason)"
        case let .wrongFrameSize(expected, actual): return "PCM for one packet must be 1, 2 or 3 frames of \(expected) samples, got \(actual)"
        case let .invalidParameter(name, value): return "invalid \(name): \(value)"
        case let .unsupportedWAV(why): return "unsupported WAV file: \(why)"
        case let .malformedWAV(why): return "malformed WAV file: \(why)"
        case let .io(operation, path, reason): return "\(operation) \(path): \(reason)"
        }
    }
}
