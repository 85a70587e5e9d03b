#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writes a 16-bit PCM WAV file incrementally, keeping it valid at every moment.
///
/// The header goes out at once (with an empty data chunk), and after every `append` the
/// samples are written first and the header's two sizes second. A reader — a test, or an
/// operator running `soxi` on a call recording — therefore always finds a well-formed file
/// whose sizes never announce bytes that are not there yet; a crash leaves a playable file.
///
/// Owns one file descriptor, closed exactly once: by `close()` or, failing that, in `deinit`.
/// Not `Sendable`: appends must be serialised by their owner (the call's audio task).
public final class WAVWriter {
    public let path: String
    public let sampleRate: Int
    public let channelCount: Int
    /// Sample values written so far (all channels together).
    public private(set) var sampleCount = 0

    private var descriptor: Int32

    /// Creates (or truncates) `path` and writes the header of an empty file.
    public init(path: String, sampleRate: Int = Opus.sampleRate, channels: Int = 1) throws(MediaError) {
        guard channels == 1 || channels == 2 else { throw .invalidParameter(name: "WAV channel count", value: "\(channels) (1 or 2)") }
        guard sampleRate > 0, sampleRate <= 384_000 else { throw .invalidParameter(name: "WAV sample rate", value: "\(sampleRate) Hz") }
        let opened = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard opened >= 0 else { throw FileIO.failure("create", path) }
        self.path = path
        self.sampleRate = sampleRate
        self.channelCount = channels
        self.descriptor = opened
        // deinit closes the descriptor if this throws.
        try FileIO.writeAll(descriptor, WAVFile.header(sampleRate: sampleRate, channels: channels, dataByteCount: 0), at: 0, path: path)
    }

    deinit {
        if descriptor >= 0 { _ = FileIO.closeDescriptor(descriptor) }
    }

    /// Appends samples (interleaved if stereo) and updates the header's sizes.
    public func append(_ samples: [Int16]) throws(MediaError) {
        guard descriptor >= 0 else { throw .io(operation: "append", path: path, reason: "writer is closed") }
        guard samples.count % channelCount == 0 else {
            throw .invalidParameter(name: "sample count", value: "\(samples.count) is not a whole number of \(channelCount)-channel frames")
        }
        let newCount = sampleCount + samples.count
        // RIFF sizes are 32-bit; the RIFF size field also counts the 36 header bytes after it.
        guard newCount * 2 <= Int(UInt32.max) - 36 else {
            throw .io(operation: "append", path: path, reason: "a WAV file cannot hold more than 4 GiB of samples")
        }
        try FileIO.writeAll(descriptor, WAVFile.littleEndianBytes(samples), at: WAVFile.headerByteCount + sampleCount * 2, path: path)
        sampleCount = newCount
        try FileIO.writeAll(
            descriptor, WAVFile.header(sampleRate: sampleRate, channels: channelCount, dataByteCount: UInt32(newCount * 2)),
            at: 0, path: path)
    }

    /// Closes the file. The file is already complete; this only releases the descriptor and
    /// reports a failure the system saved for `close` (e.g. a full disk on NFS).
    public func close() throws(MediaError) {
        guard descriptor >= 0 else { return }
        let result = FileIO.closeDescriptor(descriptor)
        descriptor = -1
        if result != 0 { throw FileIO.failure("close", path) }
    }
}
