import Foundation
import SkylarkTestSupport
import SkylarkWire
import Testing

@Suite("MessageDecoder")
struct MessageDecoderTests {
    static func sampleFrames() -> [LoginClientFrame] {
        (0..<4).map { index in
            var sealed = LoginSealedRequest()
            sealed.serverKeyFingerprint = Data(repeating: UInt8(index), count: 32)
            sealed.wrappedSessionKey = Data(repeating: 0xab, count: 256)
            sealed.nonce = Data(repeating: 0x01, count: 12)
            sealed.ciphertext = Data(repeating: UInt8(0x10 + index), count: 40 * index)
            var frame = LoginClientFrame()
            frame.sealed = sealed
            return frame
        }
    }

    @Test("Whole frames, several frames in one append, and one byte at a time give the same messages")
    func wholeAndTrickle() throws {
        let messages = Self.sampleFrames()
        let stream = try messages.flatMap { try MessageEncoder.encode($0) }

        var single = MessageDecoder<LoginClientFrame>()
        single.append(bytes: try MessageEncoder.encode(messages[1]))
        #expect(try single.next() == messages[1])
        #expect(try single.next() == nil)

        var whole = MessageDecoder<LoginClientFrame>()
        whole.append(bytes: stream)
        var wholeOut: [LoginClientFrame] = []
        while let message = try whole.next() { wholeOut.append(message) }
        #expect(wholeOut == messages)
        try whole.finish()

        var trickle = MessageDecoder<LoginClientFrame>()
        var trickleOut: [LoginClientFrame] = []
        for byte in stream {
            trickle.append(bytes: CollectionOfOne(byte))
            while let message = try trickle.next() { trickleOut.append(message) }
        }
        #expect(trickleOut == messages)
        #expect(trickle.bufferedByteCount == 0)
        try trickle.finish()
    }

    @Test("An oversized header throws .frame(.oversized) with only the 4 header bytes buffered")
    func oversizedHeader() {
        var decoder = MessageDecoder<LoginClientFrame>(maximumFrameSize: 4096)
        decoder.append(bytes: [0x00, 0x00, 0x10, 0x01])
        #expect(throws: WireError.frame(.oversized(length: 4097, limit: 4096))) { try decoder.next() }
        #expect(decoder.bufferedByteCount == 4)
    }

    @Test("finish() with a partial frame throws .frame(.truncated)")
    func finishTruncated() throws {
        let encoded = try MessageEncoder.encode(Self.sampleFrames()[2])
        var decoder = MessageDecoder<LoginClientFrame>()
        decoder.append(bytes: encoded.dropLast())
        #expect(try decoder.next() == nil)
        #expect(throws: WireError.frame(.truncated(buffered: encoded.count - 1))) { try decoder.finish() }
    }

    @Test(
        "A whole frame that is not a valid message throws .malformed naming the type",
        arguments: [
            [0x0a, 0x05, 0x01],  // field 1, length 5, but only 1 byte follows
            [0x0f],  // wire type 7 does not exist
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],  // varint tag too long
            [0x0a, 0x02, 0x0a, 0x09],  // sealed request whose field 1 overruns
        ] as [[UInt8]])
    func malformedFrame(payload: [UInt8]) throws {
        var decoder = MessageDecoder<LoginClientFrame>()
        decoder.append(bytes: try Framing.encode(payload))
        let error = #expect(throws: WireError.self) { try decoder.next() }
        guard case let .malformed(why) = error else {
            Issue.record("expected .malformed, got \(String(describing: error))")
            return
        }
        #expect(why.contains("ClientFrame"))
        #expect(error?.endsLink == true)
    }

    @Test("MessageEncoder refuses a message larger than the frame limit")
    func encoderRefusesOversized() {
        var frame = LoginClientFrame()
        var sealed = LoginSealedRequest()
        sealed.ciphertext = Data(repeating: 0, count: 200)
        frame.sealed = sealed
        #expect(throws: FrameError.self) { try MessageEncoder.encode(frame, maximumFrameSize: 100) }
    }

    /// Outcome of feeding one buffer to a fresh decoder.
    enum Outcome { case threw, endedClean, endedPartial }

    /// Feeds `buffer` in random chunks, draining after each; stops at the first error as a link would.
    static func feed<M>(
        _ buffer: [UInt8], into decoder: inout MessageDecoder<M>, using rng: inout SeededGenerator,
        messages: inout Int
    ) -> Outcome {
        var offset = 0
        var pulls = 0
        while offset < buffer.count {
            let chunk = Int.random(in: 1...max(1, buffer.count - offset), using: &rng)
            let before = decoder.bufferedByteCount
            decoder.append(bytes: buffer[offset..<offset + chunk])
            #expect(decoder.bufferedByteCount == before + chunk)
            offset += chunk
            while true {
                pulls += 1
                // Each message consumes at least a 4-byte header, so this bounds a healthy decoder.
                if pulls > buffer.count / 4 + 2 * buffer.count + 10 {
                    Issue.record("decoder keeps returning messages without consuming input")
                    return .threw
                }
                let stalled = decoder.bufferedByteCount
                do {
                    guard try decoder.next() != nil else {
                        // nil means "need more bytes": asking again changes nothing.
                        #expect(decoder.bufferedByteCount == stalled)
                        let again = try decoder.next()
                        #expect(again == nil)
                        #expect(decoder.bufferedByteCount == stalled)
                        break
                    }
                    messages += 1
                    #expect(decoder.bufferedByteCount <= stalled - Framing.headerByteCount)
                } catch {
                    // Typed throws: `error` is a WireError; both kinds end the link.
                    #expect(error.endsLink)
                    return .threw
                }
            }
        }
        do {
            try decoder.finish()
            #expect(decoder.bufferedByteCount == 0)
            return .endedClean
        } catch {
            #expect(error == .frame(.truncated(buffered: decoder.bufferedByteCount)))
            return .endedPartial
        }
    }

    /// A random but valid client frame, so that some garbage buffers hold real messages.
    static func randomFrame(using rng: inout SeededGenerator) -> LoginClientFrame {
        var sealed = LoginSealedRequest()
        sealed.nonce = Data([UInt8].random(count: Int.random(in: 0...12, using: &rng), using: &rng))
        sealed.ciphertext = Data([UInt8].random(count: Int.random(in: 0...30, using: &rng), using: &rng))
        var frame = LoginClientFrame()
        if Bool.random(using: &rng) { frame.sealed = sealed }
        return frame
    }

    @Test("2,000 seeded garbage buffers in random chunks: nil, messages or WireError, never a hang")
    func garbageNeverCrashesOrHangs() throws {
        var rng = SeededGenerator(seed: 0x5EED_0F_5C71)
        var counts: [String: Int] = [:]
        var messages = 0
        for round in 0..<2000 {
            let size = Int.random(in: 0...300, using: &rng)
            var buffer: [UInt8]
            switch round % 3 {
            case 0:
                // Pure noise: mostly absurd length headers.
                buffer = [UInt8].random(count: size, using: &rng)
            case 1:
                // Plausible small length prefixes over noise, so that bodies get parsed.
                buffer = [UInt8].random(count: size, using: &rng)
                var cursor = 0
                while cursor + 4 <= buffer.count {
                    let length = Int.random(in: 0...40, using: &rng)
                    buffer.replaceSubrange(cursor..<cursor + 4, with: [0, 0, 0, UInt8(length)])
                    cursor += 4 + length
                }
            default:
                // Real messages cut at a random point, sometimes with one byte overwritten.
                buffer = []
                while buffer.count < size { buffer += try MessageEncoder.encode(Self.randomFrame(using: &rng)) }
                buffer = Array(buffer.prefix(size))
                if !buffer.isEmpty && Int.random(in: 0..<4, using: &rng) == 0 {
                    buffer[Int.random(in: 0..<buffer.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            let outcome: Outcome
            if round % 5 == 0 {
                var decoder = MessageDecoder<LoginServerFrame>(maximumFrameSize: 256)
                outcome = Self.feed(buffer, into: &decoder, using: &rng, messages: &messages)
            } else {
                var decoder = MessageDecoder<LoginClientFrame>(maximumFrameSize: 256)
                outcome = Self.feed(buffer, into: &decoder, using: &rng, messages: &messages)
            }
            counts["\(outcome)", default: 0] += 1
        }
        // The loop really exercised every path.
        #expect(counts["threw", default: 0] > 200, "\(counts)")
        #expect(counts["endedClean", default: 0] > 20, "\(counts)")
        #expect(counts["endedPartial", default: 0] > 200, "\(counts)")
        #expect(messages > 500, "\(messages) messages")
    }
}
