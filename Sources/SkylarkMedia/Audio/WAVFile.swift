/// A 16-bit PCM WAV file read into memory as 48 kHz mono samples.
///
/// Accepted: RIFF/WAVE with a `fmt ` chunk of format 1 (PCM) or 0xFFFE (extensible, PCM
/// sub-format), 16 bits, one or two channels (two are averaged to mono), 48 kHz. Other sample
/// rates are refused with a message saying how to convert: resampling well is a job for a real
/// tool, and a silent bad one would spoil the audio comparisons the call tests make.
///
/// The reader is lenient where files in the wild are: unknown chunks are skipped, the RIFF
/// size is not trusted, and a `data` size larger than the file (a file still being written, or
/// the 0xFFFFFFFF of streaming writers) is cut to the whole samples present.
public struct WAVFile: Sendable, Equatable {
    public static let supportedSampleRate = Opus.sampleRate
    /// Bytes in the canonical header `WAVWriter` writes (RIFF, `fmt `, `data` chunk headers).
    public static let headerByteCount = 44

    /// Always 48 000 (see above).
    public let sampleRate: Int
    /// Channels in the file; `samples` is mono either way.
    public let channelCount: Int
    /// Mono samples.
    public let samples: [Int16]

    public var duration: Double { Double(samples.count) / Double(sampleRate) }

    /// In-memory audio, e.g. to write with `encoded()`.
    public init(samples: [Int16]) {
        self.sampleRate = Self.supportedSampleRate
        self.channelCount = 1
        self.samples = samples
    }

    /// Reads and parses the file at `path`.
    public init(path: String) throws(MediaError) {
        try self.init(bytes: FileIO.readAll(path: path))
    }

    /// Parses a whole WAV file.
    public init(bytes: [UInt8]) throws(MediaError) {
        guard bytes.count >= 12, bytes[0..<4].elementsEqual("RIFF".utf8), bytes[8..<12].elementsEqual("WAVE".utf8) else {
            throw .malformedWAV("no RIFF/WAVE header")
        }
        var format: (channels: Int, sampleRate: Int)?
        var data: Range<Int>?
        var offset = 12
        while offset + 8 <= bytes.count, data == nil || format == nil {
            let id = bytes[offset..<offset + 4]
            let declared = Int(bytes.readLittleEndianUInt32(at: offset + 4))
            let bodyStart = offset + 8
            let available = bytes.count - bodyStart
            if id.elementsEqual("fmt ".utf8) {
                guard declared >= 16, available >= 16 else { throw .malformedWAV("fmt chunk of \(declared) bytes") }
                format = try Self.parseFormat(bytes, at: bodyStart, size: min(declared, available))
            } else if id.elementsEqual("data".utf8) {
                data = bodyStart..<(bodyStart + min(declared, available))
            }
            // Chunks are padded to an even length (RIFF); a size running past the end stops the walk.
            let (next, overflow) = bodyStart.addingReportingOverflow(declared + declared & 1)
            if overflow { break }
            offset = next
        }
        guard let format else { throw .malformedWAV("no fmt chunk") }
        guard let data else { throw .malformedWAV("no data chunk") }
        guard format.sampleRate == Self.supportedSampleRate else {
            throw .unsupportedWAV(
                "sample rate \(format.sampleRate) Hz; only \(Self.supportedSampleRate) Hz is accepted (convert first, e.g. `sox in.wav -r 48000 out.wav`)")
        }
        let frameBytes = 2 * format.channels
        let frameCount = data.count / frameBytes
        var samples = [Int16]()
        samples.reserveCapacity(frameCount)
        var position = data.lowerBound
        for _ in 0..<frameCount {
            if format.channels == 1 {
                samples.append(bytes.readLittleEndianInt16(at: position))
            } else {
                let left = Int32(bytes.readLittleEndianInt16(at: position))
                let right = Int32(bytes.readLittleEndianInt16(at: position + 2))
                samples.append(Int16((left + right) / 2))
            }
            position += frameBytes
        }
        self.sampleRate = format.sampleRate
        self.channelCount = format.channels
        self.samples = samples
    }

    private static func parseFormat(_ bytes: [UInt8], at start: Int, size: Int) throws(MediaError) -> (channels: Int, sampleRate: Int) {
        let tag = bytes.readLittleEndianUInt16(at: start)
        let channels = Int(bytes.readLittleEndianUInt16(at: start + 2))
        let sampleRate = Int(bytes.readLittleEndianUInt32(at: start + 4))
        let blockAlign = Int(bytes.readLittleEndianUInt16(at: start + 12))
        let bits = Int(bytes.readLittleEndianUInt16(at: start + 14))
        var isPCM = tag == 1
        if tag == 0xFFFE {
            // WAVE_FORMAT_EXTENSIBLE: the real format is the first two bytes of the sub-format
            // GUID, 24 bytes into the chunk.
            guard size >= 26 else { throw .malformedWAV("extensible fmt chunk of \(size) bytes") }
            isPCM = bytes.readLittleEndianUInt16(at: start + 24) == 1
        }
        guard isPCM else { throw .unsupportedWAV("format tag 0x\(String(tag, radix: 16)) is not integer PCM") }
        guard bits == 16 else { throw .unsupportedWAV("\(bits)-bit samples; only 16-bit PCM is accepted") }
        guard channels == 1 || channels == 2 else { throw .unsupportedWAV("\(channels) channels; only mono or stereo is accepted") }
        guard blockAlign == 2 * channels else { throw .malformedWAV("block align \(blockAlign) for \(channels) channel(s) of 16 bits") }
        return (channels, sampleRate)
    }

    /// The canonical 44-byte header for `dataByteCount` bytes of 16-bit PCM.
    static func header(sampleRate: Int, channels: Int, dataByteCount: UInt32) -> [UInt8] {
        var header = [UInt8]()
        header.reserveCapacity(headerByteCount)
        header.append(contentsOf: "RIFF".utf8)
        header.appendLittleEndian(UInt32(36) &+ dataByteCount)
        header.append(contentsOf: "WAVE".utf8)
        header.append(contentsOf: "fmt ".utf8)
        header.appendLittleEndian(UInt32(16))
        header.appendLittleEndian(UInt16(1))
        header.appendLittleEndian(UInt16(channels))
        header.appendLittleEndian(UInt32(sampleRate))
        header.appendLittleEndian(UInt32(sampleRate * channels * 2))
        header.appendLittleEndian(UInt16(channels * 2))
        header.appendLittleEndian(UInt16(16))
        header.append(contentsOf: "data".utf8)
        header.appendLittleEndian(dataByteCount)
        return header
    }

    /// The file's bytes: canonical header and mono 16-bit samples.
    public func encoded() -> [UInt8] {
        Self.header(sampleRate: sampleRate, channels: 1, dataByteCount: UInt32(clamping: samples.count * 2)) + Self.littleEndianBytes(samples)
    }

    static func littleEndianBytes(_ samples: [Int16]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(samples.count * 2)
        for sample in samples { out.appendLittleEndian(UInt16(bitPattern: sample)) }
        return out
    }
}

extension [UInt8] {
    mutating func appendLittleEndian(_ value: UInt16) {
        append(UInt8(truncatingIfNeeded: value))
        append(UInt8(truncatingIfNeeded: value >> 8))
    }

    mutating func appendLittleEndian(_ value: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) { append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    /// Callers check `offset + 2/4 <= count` first.
    func readLittleEndianUInt16(at offset: Int) -> UInt16 { UInt16(self[offset]) | UInt16(self[offset + 1]) << 8 }
    func readLittleEndianInt16(at offset: Int) -> Int16 { Int16(bitPattern: readLittleEndianUInt16(at: offset)) }
    func readLittleEndianUInt32(at offset: Int) -> UInt32 {
        UInt32(self[offset]) | UInt32(self[offset + 1]) << 8 | UInt32(self[offset + 2]) << 16 | UInt32(self[offset + 3]) << 24
    }
}
