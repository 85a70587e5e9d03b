import SwiftProtobuf

/// Errors from decoding signalling messages. Every one of them ends the link.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    case frame(FrameError)
    /// A whole frame arrived but is not a valid message of the expected type.
    case malformed(String)

    public var description: String {
        switch self {
        case let .frame(error): return error.description
        case let .malformed(why): return "malformed message: \(why)"
        }
    }

    /// Framing is lost or the peer speaks another protocol: the link cannot continue.
    public var endsLink: Bool { true }
}

/// Incremental decoder of length-prefixed protobuf messages.
public struct MessageDecoder<M: SwiftProtobuf.Message>: Sendable {
    private var frames: FrameDecoder

    public init(maximumFrameSize: Int = Framing.defaultMaximumFrameSize) {
        frames = FrameDecoder(maximumFrameSize: maximumFrameSize)
    }

    public var bufferedByteCount: Int { frames.bufferedByteCount }

    public mutating func append<Bytes: Sequence<UInt8>>(bytes: Bytes) {
        frames.append(bytes: bytes)
    }

    public mutating func next() throws(WireError) -> M? {
        let frame: [UInt8]?
        do { frame = try frames.next() } catch let error as FrameError { throw .frame(error) } catch { throw .malformed("\(error)") }
        guard let frame else { return nil }
        do {
            return try M(serializedBytes: frame)
        } catch {
            throw .malformed("not a \(M.protoMessageName)")
        }
    }

    public func finish() throws(WireError) {
        do { try frames.finish() } catch let error as FrameError { throw .frame(error) } catch { throw .malformed("\(error)") }
    }
}

public enum MessageEncoder {
    public static func encode<M: SwiftProtobuf.Message>(_ message: M, maximumFrameSize: Int = Framing.defaultMaximumFrameSize) throws -> [UInt8] {
        let payload: [UInt8] = try message.serializedBytes()
        return try Framing.encode(payload, maximumFrameSize: maximumFrameSize)
    }
}
