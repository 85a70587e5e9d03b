/// Length-prefixed framing: a 4-byte big-endian length, then that many bytes.
///
/// Every error ends the link: after a bad length the byte stream can no longer be trusted to be
/// aligned on frame boundaries.
public enum FrameError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The peer announced a frame larger than the link allows.
    case oversized(length: Int, limit: Int)
    /// The stream ended inside a frame.
    case truncated(buffered: Int)

    public var description: String {
        switch self {
        case let .oversized(length, limit): return "frame of \(length) bytes exceeds the \(limit)-byte limit"
        case let .truncated(buffered): return "stream ended inside a frame (\(buffered) bytes buffered)"
        }
    }
}

public enum Framing {
    public static let headerByteCount = 4
    /// Default ceiling for signalling frames; a login exchange needs well under 4 KiB.
    public static let defaultMaximumFrameSize = 64 * 1024

    public static func encode(_ payload: [UInt8], maximumFrameSize: Int = defaultMaximumFrameSize) throws -> [UInt8] {
        guard payload.count <= maximumFrameSize else { throw FrameError.oversized(length: payload.count, limit: maximumFrameSize) }
        let length = UInt32(payload.count)
        var out = [UInt8]()
        out.reserveCapacity(headerByteCount + payload.count)
        out.append(UInt8(length >> 24))
        out.append(UInt8(length >> 16 & 0xff))
        out.append(UInt8(length >> 8 & 0xff))
        out.append(UInt8(length & 0xff))
        out.append(contentsOf: payload)
        return out
    }
}

/// Incremental frame parser: feed bytes as they arrive, take whole frames out.
public struct FrameDecoder: Sendable {
    public let maximumFrameSize: Int
    private var buffer: [UInt8] = []
    private var readIndex = 0

    public init(maximumFrameSize: Int = Framing.defaultMaximumFrameSize) {
        self.maximumFrameSize = maximumFrameSize
    }

    /// Bytes received but not yet returned as a frame.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    public mutating func append<Bytes: Sequence<UInt8>>(bytes: Bytes) {
        buffer.append(contentsOf: bytes)
    }

    /// The next whole frame, or nil until more bytes arrive. Throws as soon as a header announces
    /// an oversized frame, without waiting for (or buffering) its body.
    public mutating func next() throws -> [UInt8]? {
        guard bufferedByteCount >= Framing.headerByteCount else { return nil }
        let length =
            Int(buffer[readIndex]) << 24 | Int(buffer[readIndex + 1]) << 16
            | Int(buffer[readIndex + 2]) << 8 | Int(buffer[readIndex + 3])
        guard length <= maximumFrameSize else { throw FrameError.oversized(length: length, limit: maximumFrameSize) }
        guard bufferedByteCount >= Framing.headerByteCount + length else { return nil }
        let start = readIndex + Framing.headerByteCount
        let frame = Array(buffer[start..<start + length])
        readIndex = start + length
        compactIfWorthwhile()
        return frame
    }

    /// Call at end of stream: throws if a partial frame is left.
    public func finish() throws {
        if bufferedByteCount > 0 { throw FrameError.truncated(buffered: bufferedByteCount) }
    }

    private mutating func compactIfWorthwhile() {
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        } else if readIndex > 4096 && readIndex * 2 > buffer.count {
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
    }
}
