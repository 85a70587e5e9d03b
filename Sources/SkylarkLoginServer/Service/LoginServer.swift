import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SkylarkWire
import Synchronization

/// The TCP adapter for `LoginConnection` and `LoginAuthority`: owns the listening socket, runs
/// each connection in a child task and the crypto on a thread pool. A `Service`: it stops
/// accepting on graceful shutdown and lets answers in flight go out.
public final class LoginServer: Service, Sendable {
    public struct Configuration: Sendable {
        public var listen: HostPort
        /// A link that sends nothing for this long is closed.
        public var idleTimeout: TimeAmount = .seconds(30)
        public var maximumRequestsPerConnection = 8

        public init(listen: HostPort) { self.listen = listen }
    }

    private let authority: LoginAuthority
    private let configuration: Configuration
    private let group: any EventLoopGroup
    private let threadPool: NIOThreadPool
    private let logger: Logger
    private let onBound: @Sendable (SocketAddress) -> Void

    /// `threadPool` runs the crypto; give it one thread per core the server may use.
    public init(
        authority: LoginAuthority, configuration: Configuration, group: any EventLoopGroup, threadPool: NIOThreadPool,
        logger: Logger, onBound: @escaping @Sendable (SocketAddress) -> Void = { _ in }
    ) {
        self.authority = authority
        self.configuration = configuration
        self.group = group
        self.threadPool = threadPool
        self.logger = logger
        self.onBound = onBound
    }

    public func run() async throws {
        let idleTimeout = configuration.idleTimeout
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            // A client may send its request and half-close; the answer must still go out.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .bind(host: configuration.listen.host, port: configuration.listen.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(CloseOnIdleHandler())
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        if let address = server.channel.localAddress { onBound(address) }
        logger.info("login server listening", metadata: ["login.listen": "\(server.channel.localAddress.map { "\($0)" } ?? "?")"])

        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
        }
        logger.info("login server stopped")
    }

    private func serve(_ channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        let address = channel.channel.remoteAddress?.ipAddress ?? "unknown"
        var connection = LoginConnection(maximumRequests: configuration.maximumRequestsPerConnection)
        let drain = ConnectionDrain(channel: channel.channel)
        do {
            try await withGracefulShutdownHandler {
                try await channel.executeThenClose { inbound, outbound in
                    var iterator = inbound.makeAsyncIterator()
                    var pending: [LoginConnection.Action] = []
                    while true {
                        // A read that completes no frame yields no action: keep reading.
                        while pending.isEmpty {
                            if let buffer = try await iterator.next() {
                                pending = connection.receive(buffer.readableBytesView)
                            } else {
                                pending = connection.endOfInput()
                                if pending.isEmpty { return }
                            }
                        }
                        let action = pending.removeFirst()
                        switch action {
                        case let .process(request):
                            guard drain.begin() else { return }
                            let authority = self.authority
                            let outcome = try await self.threadPool.runIfActive {
                                authority.handle(request, from: address, now: WallClock.now())
                            }
                            pending += connection.completed(outcome)
                        case let .send(bytes):
                            try await outbound.write(ByteBuffer(bytes: bytes))
                            // The answer is out: a server shutting down closes the link here.
                            if drain.end() { return }
                        case .close:
                            return
                        }
                    }
                }
            } onGracefulShutdown: {
                drain.shutDown()
            }
        } catch {
            logger.debug("login connection ended", metadata: ["peer.address": "\(address)", "login.error": "\(error)"])
        }
    }
}

/// Lets graceful shutdown close idle links at once while a link in the middle of a request
/// finishes it and sends the answer first.
private final class ConnectionDrain: Sendable {
    private struct State {
        var busy = false
        var shuttingDown = false
    }

    private let channel: any Channel
    private let state = Mutex(State())

    init(channel: any Channel) { self.channel = channel }

    /// Marks a request in progress; false if the server is already shutting down.
    func begin() -> Bool {
        state.withLock { state in
            guard !state.shuttingDown else { return false }
            state.busy = true
            return true
        }
    }

    /// Marks the request answered; true if the link should now close for shutdown.
    func end() -> Bool {
        state.withLock { state in
            state.busy = false
            return state.shuttingDown
        }
    }

    func shutDown() {
        let idle = state.withLock { state in
            state.shuttingDown = true
            return !state.busy
        }
        if idle { channel.close(promise: nil) }
    }
}

/// Closes a link that has been silent for the idle timeout.
private final class CloseOnIdleHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
