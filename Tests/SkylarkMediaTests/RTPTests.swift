import SkylarkTestSupport
import Testing

@testable import SkylarkMedia

@Suite("RTP header (RFC 3550)")
struct RTPTests {
    @Test("The minimal Opus header encodes to the RFC 3550 layout, byte for byte")
    func knownBytes() throws {
        let header = RTPHeader(sequenceNumber: 0x1234, timestamp: 0xDEAD_BEEF, ssrc: 0x0102_0304, marker: true)
        let bytes = try header.encode()
        #expect(bytes == [0x80, 0x80 | 111, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04])
        #expect(header.byteCount == 12)
        let (decoded, offset) = try RTPHeader.decode(bytes + [0xAA, 0xBB])
        #expect(decoded == header)
        #expect(offset == 12)
        #expect(decoded.payloadType == RTPHeader.opusPayloadType)
        #expect(decoded.marker && !decoded.padding && !decoded.hasExtension && decoded.csrcCount == 0)
    }

    @Test("Every field round-trips: padding, extension, marker, CSRCs")
    func fullRoundTrip() throws {
        let header = RTPHeader(
            payloadType: 96, sequenceNumber: 65_535, timestamp: 4_294_967_295, ssrc: 0xCAFE_F00D,
            marker: false, padding: true, csrcs: [1, 2, 0xFFFF_FFFF],
            headerExtension: .init(profile: 0xBEDE, data: [1, 2, 3, 4, 5, 6, 7, 8]))
        let bytes = try header.encode()
        #expect(bytes.count == header.byteCount)
        #expect(bytes.count == 12 + 12 + 4 + 8)
        #expect(bytes[0] == 0x80 | 0x20 | 0x10 | 3)
        // Payload "hi" plus three bytes of padding whose last byte counts them.
        let packet = bytes + Array("hi".utf8) + [0, 0, 3]
        let (decoded, offset) = try RTPHeader.decode(packet)
        #expect(decoded == header)
        #expect(offset == bytes.count)
        #expect(Array(try RTPHeader.payload(of: packet, header: decoded, payloadOffset: offset)) == Array("hi".utf8))
    }

    @Test("Unrepresentable headers are refused when encoding")
    func encodeRefuses() {
        #expect(throws: RTPError.self) { try RTPHeader(payloadType: 128, sequenceNumber: 0, timestamp: 0, ssrc: 0).encode() }
        #expect(throws: RTPError.self) { try RTPHeader(sequenceNumber: 0, timestamp: 0, ssrc: 0, csrcs: Array(0..<16)).encode() }
        #expect(throws: RTPError.self) {
            try RTPHeader(sequenceNumber: 0, timestamp: 0, ssrc: 0, headerExtension: .init(profile: 0, data: [1, 2, 3])).encode()
        }
        #expect((try? RTPHeader(sequenceNumber: 0, timestamp: 0, ssrc: 0, csrcs: Array(0..<15)).encode()) != nil)
    }

    @Test("Malformed headers give typed errors")
    func malformed() throws {
        let valid = try RTPHeader(
            sequenceNumber: 1, timestamp: 2, ssrc: 3, csrcs: [9, 9],
            headerExtension: .init(profile: 1, data: [0, 0, 0, 0])
        ).encode()
        for length in 0..<valid.count {
            #expect(throws: RTPError.self) { try RTPHeader.decode(Array(valid.prefix(length))) }
        }
        #expect(throws: RTPError.truncated(needed: 12, available: 3)) { try RTPHeader.decode([0x80, 0, 0]) }
        var version1 = valid
        version1[0] = 0x40 | (valid[0] & 0x3F)
        #expect(throws: RTPError.unsupportedVersion(1)) { try RTPHeader.decode(version1) }
        // Padding count of zero, or larger than the payload.
        let padded = try RTPHeader(sequenceNumber: 1, timestamp: 2, ssrc: 3, padding: true).encode()
        for tail in [[0], [1, 2, 9]] as [[UInt8]] {
            let packet = padded + tail
            let (header, offset) = try RTPHeader.decode(packet)
            #expect(throws: RTPError.self) { try RTPHeader.payload(of: packet, header: header, payloadOffset: offset) }
        }
    }

    @Test("Seeded random garbage never crashes the parser; whatever parses re-encodes to the same bytes")
    func garbage() throws {
        var random = SeededGenerator(seed: 3550)
        var parsed = 0
        for round in 0..<20_000 {
            var bytes = [UInt8].random(count: Int.random(in: 0...80, using: &random), using: &random)
            // Half the time force version 2, so the deeper paths (CSRCs, extension) are exercised.
            if round % 2 == 0, !bytes.isEmpty { bytes[0] = 0x80 | (bytes[0] & 0x3F) }
            guard let result = try? RTPHeader.decode(bytes) else { continue }
            let (header, offset) = result
            parsed += 1
            #expect(offset <= bytes.count)
            #expect(offset == header.byteCount)
            #expect(try header.encode() == Array(bytes.prefix(offset)))
            _ = try? RTPHeader.payload(of: bytes, header: header, payloadOffset: offset)
        }
        #expect(parsed > 1_000)
    }

    @Test("Extended sequence numbers follow wrap-around both ways")
    func sequenceExtension() {
        #expect(RTPSequence.extend(10, near: 5) == 10)
        #expect(RTPSequence.extend(2, near: 65_534) == 65_538)  // wrapped forwards
        #expect(RTPSequence.extend(65_534, near: 65_538) == 65_534)  // late, from before the wrap
        #expect(RTPSequence.extend(65_535, near: 3) == 65_535)  // nothing below cycle zero
        #expect(RTPSequence.extend(100, near: 0x3_0000 + 50) == 0x3_0000 + 100)
        #expect(RTPSequence.extend(60_000, near: 0x3_0000 + 50) == 0x2_0000 + 60_000)
        #expect(RTPSequence.extend(0, near: UInt64.max) == UInt64.max & ~0xFFFF)
    }
}
