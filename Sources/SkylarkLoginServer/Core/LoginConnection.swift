import SkylarkWire

/// One login link, server side, as a sans-I/O state machine: bytes in, actions out.
///
/// Requests are answered one at a time in arrival order; a pipelined request waits in the decoder
/// until the previous answer is out. Any framing or decoding error ends the link after one error
/// frame, so a garbage-sending peer costs one decode, never a crash or a hang.
public struct LoginConnection: Sendable {
    public enum Action: Equatable, Sendable {
        /// Run this request through `LoginAuthority` and report back with `completed`.
        case process(LoginSealedRequest)
        case send([UInt8])
        case close
    }

    private enum State: Sendable {
        case awaitingRequest(served: Int)
        case processing(served: Int)
        case closed
    }

    public let maximumRequests: Int
    private var decoder: MessageDecoder<LoginClientFrame>
    private var state: State = .awaitingRequest(served: 0)

    public init(maximumRequests: Int = 8, maximumFrameSize: Int = 16 * 1024) {
        self.maximumRequests = maximumRequests
        self.decoder = MessageDecoder(maximumFrameSize: maximumFrameSize)
    }

    public var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    public mutating func receive<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> [Action] {
        guard !isClosed else { return [] }
        decoder.append(bytes: bytes)
        return nextRequest()
    }

    /// The answer to the request handed out by the last `.process`.
    public mutating func completed(_ outcome: LoginAuthority.Outcome) -> [Action] {
        guard case let .processing(served) = state else { return [] }
        guard let bytes = try? MessageEncoder.encode(outcome.frame) else { return closeNow() }
        if outcome.closesConnection || served >= maximumRequests {
            state = .closed
            return [.send(bytes), .close]
        }
        state = .awaitingRequest(served: served)
        return [.send(bytes)] + nextRequest()
    }

    /// The peer closed its side.
    public mutating func endOfInput() -> [Action] {
        switch state {
        case .closed: return []
        case .processing:
            // Let the answer go out; the adapter closes after writing it.
            return []
        case .awaitingRequest:
            return closeNow()
        }
    }

    private mutating func nextRequest() -> [Action] {
        guard case let .awaitingRequest(served) = state else { return [] }
        do {
            guard let frame = try decoder.next() else { return [] }
            guard case let .sealed(request)? = frame.body else {
                return fail(.malformed, "expected a sealed request")
            }
            state = .processing(served: served + 1)
            return [.process(request)]
        } catch {
            return fail(.malformed, error.description)
        }
    }

    private mutating func fail(_ code: LoginErrorCode, _ message: String) -> [Action] {
        var frame = LoginServerFrame()
        frame.error = LoginError(code, message)
        state = .closed
        guard let bytes = try? MessageEncoder.encode(frame) else { return [.close] }
        return [.send(bytes), .close]
    }

    private mutating func closeNow() -> [Action] {
        state = .closed
        return [.close]
    }
}
