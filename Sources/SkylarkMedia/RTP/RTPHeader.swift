/// Why an RTP header could not be parsed or written. Parsing sees bytes from the network, so
/// every malformed input ends here, never in a trap.
public enum RTPError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer bytes than the header announces (`needed` counts from the start of the packet).
    case truncated(needed: Int, available: Int)
    /// The version field is not 2 (RFC 3550 §5.1); STUN, DTLS and garbage land here.
    case unsupportedVersion(UInt8)
    /// A field that cannot be represented on the wire (payload type above 127, more than 15
    /// CSRCs, header-extension data not a whole number of 32-bit words or too long).
    case invalidField(String)

    public var description: String {
        switch self {
        case let .truncated(needed, available): return "RTP packet truncated: header needs \(needed) bytes, packet has \(available)"
        case let .unsupportedVersion(version): return "RTP version \(version) (expected 2)"
        case let .invalidField(why): return "invalid RTP header field: \(why)"
        }
    }
}

/// The RTP fixed header (RFC 3550 §5.1), its CSRC list and optional header extension (§5.3.1):
///
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |V=2|P|X|  CC   |M|     PT      |       sequence number         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                           timestamp                           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           synchronization source (SSRC) identifier            |
/// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
/// |            contributing source (CSRC) identifiers             |
/// |                             ....                              |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  profile-defined (16)         |  length in 32-bit words (16)  |  (only if X)
/// |                        extension data                         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Skylark uses plain RTP framing so that a capture of a call decodes as RTP/Opus in Wireshark
/// or tshark (`-d udp.port==N,rtp`), with the payload encrypted by `MediaCipher`.
///
/// The count fields (CC, X) are not stored: they follow from `csrcs` and `headerExtension`, so a
/// header value can never disagree with itself. Padding (P) is a flag only: the padding bytes
/// belong to the payload area, whose last byte gives their count (§5.1).
public struct RTPHeader: Equatable, Hashable, Sendable {
    public static let version: UInt8 = 2
    /// Bytes in the header without CSRCs or extension.
    public static let fixedByteCount = 12
    /// The dynamic payload type Skylark announces for Opus (the value WebRTC made customary).
    public static let opusPayloadType: UInt8 = 111
    /// RFC 7587: the Opus RTP clock is 48 kHz whatever the audio bandwidth.
    public static let opusClockRate = 48_000

    /// The header extension of RFC 3550 §5.3.1: a 16-bit profile-defined value and data that is
    /// a whole number of 32-bit words.
    public struct Extension: Equatable, Hashable, Sendable {
        public var profile: UInt16
        public var data: [UInt8]
        public init(profile: UInt16, data: [UInt8]) { self.profile = profile; self.data = data }
    }

    public var padding: Bool
    public var marker: Bool
    /// 7 bits (0…127).
    public var payloadType: UInt8
    public var sequenceNumber: UInt16
    public var timestamp: UInt32
    public var ssrc: UInt32
    /// At most 15 (the CC field is 4 bits).
    public var csrcs: [UInt32]
    public var headerExtension: Extension?

    public init(
        payloadType: UInt8 = RTPHeader.opusPayloadType, sequenceNumber: UInt16, timestamp: UInt32, ssrc: UInt32,
        marker: Bool = false, padding: Bool = false, csrcs: [UInt32] = [], headerExtension: Extension? = nil
    ) {
        self.payloadType = payloadType
        self.sequenceNumber = sequenceNumber
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.marker = marker
        self.padding = padding
        self.csrcs = csrcs
        self.headerExtension = headerExtension
    }

    /// The X bit.
    public var hasExtension: Bool { headerExtension != nil }
    /// The CC field.
    public var csrcCount: Int { csrcs.count }
    /// Bytes this header occupies on the wire.
    public var byteCount: Int { Self.fixedByteCount + 4 * csrcs.count + (headerExtension.map { 4 + $0.data.count } ?? 0) }

    /// The wire form. Throws for values no valid header can hold rather than truncating them.
    public func encode() throws(RTPError) -> [UInt8] {
        guard payloadType <= 127 else { throw .invalidField("payload type \(payloadType) > 127") }
        guard csrcs.count <= 15 else { throw .invalidField("\(csrcs.count) CSRCs (at most 15)") }
        if let headerExtension {
            guard headerExtension.data.count % 4 == 0, headerExtension.data.count / 4 <= Int(UInt16.max) else {
                throw .invalidField("header extension of \(headerExtension.data.count) bytes (a multiple of 4, at most 262140)")
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(byteCount)
        out.append(Self.version << 6 | (padding ? 0x20 : 0) | (hasExtension ? 0x10 : 0) | UInt8(csrcs.count))
        out.append((marker ? 0x80 : 0) | payloadType)
        out.appendBigEndian(sequenceNumber)
        out.appendBigEndian(timestamp)
        out.appendBigEndian(ssrc)
        for csrc in csrcs { out.appendBigEndian(csrc) }
        if let headerExtension {
            out.appendBigEndian(headerExtension.profile)
            out.appendBigEndian(UInt16(headerExtension.data.count / 4))
            out.append(contentsOf: headerExtension.data)
        }
        return out
    }

    /// Parses the header at the start of `bytes`; the payload (and padding, if `padding` is set)
    /// starts at `payloadOffset`. Never traps: every length is checked before it is used.
    public static func decode(_ bytes: [UInt8]) throws(RTPError) -> (header: RTPHeader, payloadOffset: Int) {
        guard bytes.count >= fixedByteCount else { throw .truncated(needed: fixedByteCount, available: bytes.count) }
        let first = bytes[0]
        let version = first >> 6
        guard version == Self.version else { throw .unsupportedVersion(version) }
        let csrcCount = Int(first & 0x0F)
        var offset = fixedByteCount
        let csrcEnd = offset + 4 * csrcCount
        guard bytes.count >= csrcEnd else { throw .truncated(needed: csrcEnd, available: bytes.count) }
        var csrcs = [UInt32]()
        csrcs.reserveCapacity(csrcCount)
        while offset < csrcEnd {
            csrcs.append(bytes.readBigEndianUInt32(at: offset))
            offset += 4
        }
        var headerExtension: Extension?
        if first & 0x10 != 0 {
            guard bytes.count >= offset + 4 else { throw .truncated(needed: offset + 4, available: bytes.count) }
            let profile = bytes.readBigEndianUInt16(at: offset)
            let words = Int(bytes.readBigEndianUInt16(at: offset + 2))
            offset += 4
            let end = offset + 4 * words
            guard bytes.count >= end else { throw .truncated(needed: end, available: bytes.count) }
            headerExtension = Extension(profile: profile, data: Array(bytes[offset..<end]))
            offset = end
        }
        let header = RTPHeader(
            payloadType: bytes[1] & 0x7F,
            sequenceNumber: bytes.readBigEndianUInt16(at: 2),
            timestamp: bytes.readBigEndianUInt32(at: 4),
            ssrc: bytes.readBigEndianUInt32(at: 8),
            marker: bytes[1] & 0x80 != 0,
            padding: first & 0x20 != 0,
            csrcs: csrcs,
            headerExtension: headerExtension)
        return (header, offset)
    }

    /// The payload of a plain (unencrypted) RTP packet, with padding removed when P is set.
    /// Throws when the padding count is zero or runs into the header (RFC 3550 §5.1: the last
    /// byte counts the padding, itself included).
    public static func payload(of bytes: [UInt8], header: RTPHeader, payloadOffset: Int) throws(RTPError) -> ArraySlice<UInt8> {
        guard payloadOffset <= bytes.count else { throw .truncated(needed: payloadOffset, available: bytes.count) }
        guard header.padding else { return bytes[payloadOffset...] }
        guard let last = bytes.last, last > 0, payloadOffset + Int(last) <= bytes.count else {
            throw .invalidField("padding count \(bytes.last.map(String.init) ?? "missing") does not fit the \(bytes.count - payloadOffset)-byte payload")
        }
        return bytes[payloadOffset..<(bytes.count - Int(last))]
    }
}

extension [UInt8] {
    mutating func appendBigEndian(_ value: UInt16) {
        append(UInt8(truncatingIfNeeded: value >> 8))
        append(UInt8(truncatingIfNeeded: value))
    }

    mutating func appendBigEndian(_ value: UInt32) {
        append(UInt8(truncatingIfNeeded: value >> 24))
        append(UInt8(truncatingIfNeeded: value >> 16))
        append(UInt8(truncatingIfNeeded: value >> 8))
        append(UInt8(truncatingIfNeeded: value))
    }

    /// Callers check the bounds first; these are only reached with `offset + 2/4 <= count`.
    func readBigEndianUInt16(at offset: Int) -> UInt16 {
        UInt16(self[offset]) << 8 | UInt16(self[offset + 1])
    }

    func readBigEndianUInt32(at offset: Int) -> UInt32 {
        UInt32(self[offset]) << 24 | UInt32(self[offset + 1]) << 16 | UInt32(self[offset + 2]) << 8 | UInt32(self[offset + 3])
    }
}
