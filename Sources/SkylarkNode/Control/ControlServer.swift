import Foundation
import NIOCore
import NIOPosix

/// The control socket (a Unix socket in the state folder, mode 0600): reads one request line,
/// hands it to the reactor with a promise, writes the answer line and closes.
enum ControlServer {
    static let maximumRequestBytes = 64 * 1024

    static func bind(path: String, group: any EventLoopGroup, sink: NodeEventSink) async throws -> any Channel {
        // A stale socket from a crashed node would make bind fail; a live one is detected first.
        if FileManager.default.fileExists(atPath: path) {
            if (try? await ControlClient.send(ControlRequest(command: .status), socketPath: path, timeout: .seconds(2))) != nil {
                throw ControlClient.Failure.alreadyRunning(path)
            }
            unlink(path)
        }
        let previous = umask(0o077)
        defer { umask(previous) }
        return try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ControlConnectionHandler(sink: sink))
                }
            }
            .bind(unixDomainSocketPath: path)
            .get()
    }
}

final class ControlConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let sink: NodeEventSink
    private var buffer: [UInt8] = []
    private var answered = false

    init(sink: NodeEventSink) { self.sink = sink }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        buffer += unwrapInboundIn(data).readableBytesView
        guard let newline = buffer.firstIndex(of: 0x0a) else {
            if buffer.count > ControlServer.maximumRequestBytes { reply(#"{"ok":false,"error":"request too large"}"#, context: context) }
            return
        }
        answered = true
        let line = Array(buffer[..<newline])
        guard let request = try? JSONDecoder().decode(ControlRequest.self, from: Data(line)) else {
            reply(#"{"ok":false,"error":"not a control request"}"#, context: context)
            return
        }
        let promise = context.eventLoop.makePromise(of: String.self)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        promise.futureResult.whenComplete { result in
            let (handler, context) = loopBound.value
            switch result {
            case let .success(answer): handler.reply(answer, context: context)
            case let .failure(error): handler.reply(#"{"ok":false,"error":"\#(error)"}"#, context: context)
            }
        }
        sink.yield(.control(request, ControlReply { promise.succeed($0) }))
    }

    private func reply(_ line: String, context: ChannelHandlerContext) {
        answered = true
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: line + "\n"))).whenComplete { _ in context.close(promise: nil) }
    }
}

/// The other end: what `skylark status`, `skylark buddy ...` and friends use.
public enum ControlClient {
    public enum Failure: Error, CustomStringConvertible {
        case notRunning(String)
        case alreadyRunning(String)
        case badAnswer
        case timedOut

        public var description: String {
            switch self {
            case let .notRunning(path): return "no node is running with this state folder (no control socket at \(path)); start one with 'skylark run'"
            case let .alreadyRunning(path): return "a node is already running with this state folder (\(path))"
            case .badAnswer: return "the node gave an answer that is not JSON"
            case .timedOut: return "the node did not answer in time"
            }
        }
    }

    /// Sends one request and returns the answer line (JSON).
    public static func send(_ request: ControlRequest, socketPath: String, timeout: TimeAmount = .seconds(20)) async throws -> String {
        guard FileManager.default.fileExists(atPath: socketPath) else { throw Failure.notRunning(socketPath) }
        let group = MultiThreadedEventLoopGroup.singleton
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: group)
                .connect(unixDomainSocketPath: socketPath) { channel in
                    channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
                }
        } catch {
            throw Failure.notRunning(socketPath)
        }
        var line = Array(try JSONEncoder().encode(request))
        line.append(0x0a)
        let bytes = line
        let deadline = NIODeadline.now() + timeout
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: bytes))
            var answer: [UInt8] = []
            for try await buffer in inbound {
                answer += buffer.readableBytesView
                if answer.last == 0x0a { break }
                if NIODeadline.now() > deadline { throw Failure.timedOut }
            }
            guard !answer.isEmpty else { throw Failure.badAnswer }
            return String(decoding: answer.dropLast(answer.last == 0x0a ? 1 : 0), as: UTF8.self)
        }
    }
}
