import Foundation
import SkylarkTestSupport
import SkylarkWire
import Testing

@Suite("Framing and FrameDecoder")
struct FramingTests {
    @Test("encode writes a 4-byte big-endian length then the payload")
    func encodeLayout() throws {
        #expect(try Framing.encode([0xaa]) == [0, 0, 0, 1, 0xaa])
        #expect(try Framing.encode([]) == [0, 0, 0, 0])
        let payload = [UInt8](repeating: 7, count: 0x0102)
        #expect(try Framing.encode(payload) == [0, 0, 0x01, 0x02] + payload)
        let big = [UInt8](repeating: 1, count: 0x01_0000)
        #expect(try Array(Framing.encode(big, maximumFrameSize: 0x01_0000).prefix(4)) == [0, 1, 0, 0])
    }

    @Test("encode refuses payloads above the maximum, accepts exactly the maximum")
    func encodeRefusesOversized() throws {
        #expect(throws: FrameError.oversized(length: 65537, limit: 65536)) {
            try Framing.encode([UInt8](repeating: 0, count: Framing.defaultMaximumFrameSize + 1))
        }
        #expect(throws: FrameError.oversized(length: 11, limit: 10)) { try Framing.encode([UInt8](repeating: 0, count: 11), maximumFrameSize: 10) }
        #expect(try Framing.encode([UInt8](repeating: 0, count: 10), maximumFrameSize: 10).count == 14)
    }

    @Test("Whole frames decode in order; the buffer empties")
    func wholeFrames() throws {
        var decoder = FrameDecoder()
        decoder.append(bytes: try Framing.encode(Array("one".utf8)))
        #expect(try decoder.next() == Array("one".utf8))
        #expect(try decoder.next() == nil)
        #expect(decoder.bufferedByteCount == 0)
        try decoder.finish()
        decoder.append(bytes: try Framing.encode([]))
        #expect(try decoder.next() == [])
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test("Several frames in one append, then one byte at a time: same frames")
    func byteAtATimeEqualsWhole() throws {
        let payloads: [[UInt8]] = [Array("alpha".utf8), [], [UInt8](repeating: 0x5a, count: 300), [0], Array("omega".utf8)]
        let stream = try payloads.flatMap { try Framing.encode($0) }

        var whole = FrameDecoder()
        whole.append(bytes: stream)
        var wholeFrames: [[UInt8]] = []
        while let frame = try whole.next() { wholeFrames.append(frame) }
        #expect(wholeFrames == payloads)

        var trickle = FrameDecoder()
        var trickleFrames: [[UInt8]] = []
        for byte in stream {
            trickle.append(bytes: [byte])
            while let frame = try trickle.next() { trickleFrames.append(frame) }
        }
        #expect(trickleFrames == payloads)
        try trickle.finish()
    }

    @Test("A header announcing more than the maximum throws as soon as its 4 bytes arrive")
    func oversizedHeaderThrowsImmediately() throws {
        var decoder = FrameDecoder(maximumFrameSize: 1024)
        decoder.append(bytes: [0, 0, 4])
        #expect(try decoder.next() == nil)  // header incomplete: nothing to judge yet
        decoder.append(bytes: [1])  // 0x0401 = 1025 > 1024; no body bytes at all
        #expect(throws: FrameError.oversized(length: 1025, limit: 1024)) { try decoder.next() }
        #expect(decoder.bufferedByteCount == 4)

        var huge = FrameDecoder()
        huge.append(bytes: [0xff, 0xff, 0xff, 0xff])
        #expect(throws: FrameError.oversized(length: 0xffff_ffff, limit: Framing.defaultMaximumFrameSize)) { try huge.next() }
    }

    @Test("A frame of exactly the maximum size is accepted")
    func exactlyMaximum() throws {
        var decoder = FrameDecoder(maximumFrameSize: 16)
        decoder.append(bytes: try Framing.encode([UInt8](repeating: 3, count: 16), maximumFrameSize: 16))
        #expect(try decoder.next() == [UInt8](repeating: 3, count: 16))
    }

    @Test("finish() with a partial header or body throws truncated with the buffered count")
    func finishWithPartialFrame() throws {
        var header = FrameDecoder()
        header.append(bytes: [0, 0])
        #expect(try header.next() == nil)
        #expect(throws: FrameError.truncated(buffered: 2)) { try header.finish() }

        var body = FrameDecoder()
        body.append(bytes: try Framing.encode(Array("complete".utf8)) + [0, 0, 0, 9, 1, 2])
        #expect(try body.next() == Array("complete".utf8))
        #expect(try body.next() == nil)
        #expect(throws: FrameError.truncated(buffered: 6)) { try body.finish() }
    }

    @Test("Many frames through one decoder (buffer compaction keeps results right)")
    func manyFrames() throws {
        var rng = SeededGenerator(seed: 2024)
        var decoder = FrameDecoder()
        var expected: [[UInt8]] = []
        var received: [[UInt8]] = []
        var pending: [UInt8] = []
        for index in 0..<2000 {
            let payload = [UInt8].random(count: Int.random(in: 0...40, using: &rng), using: &rng) + [UInt8(index & 0xff)]
            expected.append(payload)
            pending += try Framing.encode(payload)
            // Hand over a random prefix of what is pending, leaving frames split across appends.
            let cut = Int.random(in: 0...pending.count, using: &rng)
            decoder.append(bytes: pending[..<cut])
            pending.removeFirst(cut)
            while let frame = try decoder.next() { received.append(frame) }
        }
        decoder.append(bytes: pending)
        while let frame = try decoder.next() { received.append(frame) }
        #expect(received == expected)
        #expect(decoder.bufferedByteCount == 0)
        try decoder.finish()
    }
}
