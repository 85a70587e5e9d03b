import NIOCore
import NIOPosix
import ServiceLifecycle

public struct LoopbackServerError: Error, CustomStringConvertible {
    public let description: String
}

/// Starts the server `make` builds (on a fresh one-thread event loop group and thread pool, told
/// to report its bound address through `onBound`), runs `body` with its port, and always stops the
/// server, the pool and the group afterwards.
public func withLoopbackServer<Server: Service, T: Sendable>(
    _ make: (MultiThreadedEventLoopGroup, NIOThreadPool, _ onBound: @escaping @Sendable (SocketAddress) -> Void) -> Server,
    _ body: (_ port: Int, MultiThreadedEventLoopGroup) async throws -> T
) async throws -> T {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let pool = NIOThreadPool(numberOfThreads: 1)
    pool.start()
    let bound = AsyncStream<Int>.makeStream()
    let server = make(group, pool) { address in bound.continuation.yield(address.port ?? 0) }
    let serverTask = Task {
        defer { bound.continuation.finish() }
        try await server.run()
    }
    let result: Result<T, any Error>
    do {
        var ports = bound.stream.makeAsyncIterator()
        guard let port = await ports.next(), port > 0 else { throw LoopbackServerError(description: "the server did not start") }
        result = .success(try await body(port, group))
    } catch {
        result = .failure(error)
    }
    serverTask.cancel()
    _ = try? await serverTask.value
    try await pool.shutdownGracefully()
    try await group.shutdownGracefully()
    return try result.get()
}

/// A raw TCP client on 127.0.0.1:`port`: sends `bytes` (if any), then reads until the server closes the link.
public func rawExchange(port: Int, group: any EventLoopGroup, sending bytes: [UInt8]) async throws -> [UInt8] {
    let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port) { channel in
        channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
    }
    return try await channel.executeThenClose { inbound, outbound in
        if !bytes.isEmpty { try await outbound.write(ByteBuffer(bytes: bytes)) }
        var received: [UInt8] = []
        for try await buffer in inbound { received += buffer.readableBytesView }
        return received
    }
}
