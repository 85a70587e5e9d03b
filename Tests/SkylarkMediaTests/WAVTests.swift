import SkylarkTestSupport
import Testing

@testable import SkylarkMedia

@Suite("WAV files")
struct WAVTests {
    /// A WAV file built by hand, independent of the writer under test.
    static func wavBytes(
        channels: UInt16 = 1, sampleRate: UInt32 = 48_000, bits: UInt16 = 16, format: UInt16 = 1,
        extraChunk: Bool = false, data: [UInt8], declaredDataSize: UInt32? = nil
    ) -> [UInt8] {
        func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
        func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
        let blockAlign = channels * bits / 8
        let fmt = le16(format) + le16(channels) + le32(sampleRate) + le32(sampleRate * UInt32(blockAlign)) + le16(blockAlign) + le16(bits)
        var body = Array("WAVE".utf8) + Array("fmt ".utf8) + le32(16) + fmt
        if extraChunk { body += Array("LIST".utf8) + le32(5) + [1, 2, 3, 4, 5, 0] }  // odd size, padded
        body += Array("data".utf8) + le32(declaredDataSize ?? UInt32(data.count)) + data
        return Array("RIFF".utf8) + le32(UInt32(body.count)) + body
    }

    @Test("A file being written parses after every append, with every sample so far")
    func writeWhileReading() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanUp() }
        let path = directory.file("recording.wav")
        let writer = try WAVWriter(path: path)
        // Valid from the start: an empty recording.
        #expect(try WAVFile(path: path).samples.isEmpty)
        var written = [Int16]()
        var random = SeededGenerator(seed: 44)
        for size in [960, 1, 0, 333, 960, 4_800, 7] {
            let chunk = (0..<size).map { _ in Int16.random(in: .min ... .max, using: &random) }
            try writer.append(chunk)
            written += chunk
            let reread = try WAVFile(path: path)
            #expect(reread.samples == written)
            #expect(reread.sampleRate == 48_000 && reread.channelCount == 1)
            // The header's sizes agree with the bytes on disk.
            let bytes = try FileIO.readAll(path: path)
            #expect(bytes.count == 44 + 2 * written.count)
            #expect(bytes.readLittleEndianUInt32(at: 4) == UInt32(36 + 2 * written.count))
            #expect(bytes.readLittleEndianUInt32(at: 40) == UInt32(2 * written.count))
        }
        #expect(writer.sampleCount == written.count)
        try writer.close()
        try writer.close()  // idempotent
        #expect(throws: MediaError.self) { try writer.append([1]) }
        #expect(try WAVFile(path: path).duration == Double(written.count) / 48_000)
    }

    @Test("Stereo is mixed down to mono; unknown chunks are skipped")
    func stereo() throws {
        // Frames (L, R): (100, 300), (-200, -400), (32767, 32767)
        let samples: [Int16] = [100, 300, -200, -400, 32_767, 32_767]
        let data = samples.flatMap { [UInt8(truncatingIfNeeded: $0), UInt8(truncatingIfNeeded: $0 >> 8)] }
        let file = try WAVFile(bytes: Self.wavBytes(channels: 2, extraChunk: true, data: data))
        #expect(file.channelCount == 2)
        #expect(file.samples == [200, -300, 32_767])
    }

    @Test("Other sample rates, sample sizes and formats are refused with a clear error")
    func refused() {
        do {
            _ = try WAVFile(bytes: Self.wavBytes(sampleRate: 44_100, data: [0, 0]))
            Issue.record("accepted 44.1 kHz")
        } catch {
            guard case let .unsupportedWAV(message) = error else { Issue.record("\(error)"); return }
            #expect(message.contains("44100") && message.contains("48000"))
        }
        #expect(throws: MediaError.self) { try WAVFile(bytes: Self.wavBytes(bits: 8, data: [0, 0])) }
        #expect(throws: MediaError.self) { try WAVFile(bytes: Self.wavBytes(format: 3, data: [0, 0, 0, 0])) }  // float
        #expect(throws: MediaError.self) { try WAVFile(bytes: Self.wavBytes(channels: 6, data: [])) }
        #expect(throws: MediaError.self) { try WAVFile(bytes: Array("RIFF....WAVE".utf8)) }
        #expect(throws: MediaError.self) { try WAVFile(bytes: Array("not a wav file at all".utf8)) }
        #expect(throws: MediaError.self) { try WAVFile(path: "/nonexistent/skylark.wav") }
    }

    @Test("A data size larger than the file is cut to the whole samples present")
    func truncated() throws {
        let file = try WAVFile(bytes: Self.wavBytes(data: [1, 0, 2, 0, 3], declaredDataSize: 0xFFFF_FFFF))
        #expect(file.samples == [1, 2])
    }

    @Test("Random bytes after a RIFF/WAVE header never crash the parser")
    func garbage() {
        var random = SeededGenerator(seed: 1)
        for _ in 0..<2_000 {
            let bytes =
                Array("RIFF".utf8) + [UInt8].random(count: 4, using: &random) + Array("WAVE".utf8)
                + [UInt8].random(count: Int.random(in: 0...64, using: &random), using: &random)
            _ = try? WAVFile(bytes: bytes)
        }
        // Chunk headers that claim huge sizes.
        _ = try? WAVFile(bytes: Self.wavBytes(data: [], declaredDataSize: 0x7FFF_FFFF))
    }

    @Test("In-memory audio encodes to a file that reads back the same")
    func encoded() throws {
        let samples = tone(1_000, count: 4_800)
        #expect(try WAVFile(bytes: WAVFile(samples: samples).encoded()).samples == samples)
    }

    @Test("A WAV source plays once (last frame padded) or loops; the sink records")
    func sourceAndSink() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanUp() }
        let samples = (0..<2_000).map { Int16($0) }
        let path = directory.file("source.wav")
        let sink = try WAVFileSink(path: path)
        try sink.write(samples)
        try sink.close()

        var once = try WAVFileSource(path: path)
        let a = try unwrap(once.nextFrame()), b = try unwrap(once.nextFrame()), c = try unwrap(once.nextFrame())
        #expect(a + b == Array(samples[0..<1_920]))
        #expect(c == Array(samples[1_920...]) + [Int16](repeating: 0, count: 960 - 80))
        #expect(once.nextFrame() == nil)

        var looping = WAVFileSource(file: WAVFile(samples: samples), loops: true)
        var played = [Int16]()
        for _ in 0..<5 { played += try unwrap(looping.nextFrame()) }
        #expect(played == Array((samples + samples + samples).prefix(4_800)))

        var empty = WAVFileSource(file: WAVFile(samples: []), loops: true)
        #expect(empty.nextFrame() == nil)
    }
}
