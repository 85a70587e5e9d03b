import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import SkylarkWire

/// Serves the signed manifest and the release files over HTTP/1.1 (GET and HEAD).
public final class UpdateServer: Service, Sendable {
    private let state: UpdateServerState
    private let listen: HostPort
    private let group: any EventLoopGroup
    private let threadPool: NIOThreadPool
    private let logger: Logger
    private let onBound: @Sendable (SocketAddress) -> Void

    public init(
        state: UpdateServerState, listen: HostPort, group: any EventLoopGroup, threadPool: NIOThreadPool, logger: Logger,
        onBound: @escaping @Sendable (SocketAddress) -> Void = { _ in }
    ) {
        self.state = state
        self.listen = listen
        self.group = group
        self.threadPool = threadPool
        self.logger = logger
        self.onBound = onBound
    }

    public func run() async throws {
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: listen.host, port: listen.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        if let address = server.channel.localAddress { onBound(address) }
        logger.info("update server listening", metadata: ["update.listen": "\(server.channel.localAddress.map { "\($0)" } ?? "?")"])
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
        logger.info("update server stopped")
    }

    private func serve(_ channel: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        let peer = channel.channel.remoteAddress?.ipAddress ?? "unknown"
        do {
            try await channel.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                for try await part in inbound {
                    switch part {
                    case let .head(request): head = request
                    case .body: continue  // requests we serve carry no body; ignore any
                    case .end:
                        guard let request = head else { return }
                        head = nil
                        let keepAlive = try await respond(to: request, outbound: outbound, peer: peer)
                        if !keepAlive { return }
                    }
                }
            }
        } catch {
            logger.debug("update connection ended", metadata: ["peer.address": "\(peer)", "update.error": "\(error)"])
        }
    }

    private func respond(to request: HTTPRequestHead, outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, peer: String) async throws -> Bool {
        var status = HTTPResponseStatus.ok
        var body = ByteBuffer()
        var contentType = "application/octet-stream"
        if request.method != .GET && request.method != .HEAD {
            status = .methodNotAllowed
            body = ByteBuffer(string: "only GET and HEAD\n")
            contentType = "text/plain"
        } else if let path = UpdateRoutes.file(for: request.uri, in: state.directory),
            let data = try await threadPool.runIfActive({ FileManager.default.contents(atPath: path) })
        {
            body = ByteBuffer(bytes: data)
            if request.uri.hasPrefix(UpdateRoutes.manifestPath) { contentType = "application/json" }
        } else {
            status = .notFound
            body = ByteBuffer(string: "not found\n")
            contentType = "text/plain"
        }
        logger.info(
            "update request",
            metadata: ["peer.address": "\(peer)", "http.method": "\(request.method)", "http.uri": "\(request.uri)", "http.status": "\(status.code)"])
        let keepAlive = request.isKeepAlive
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: contentType)
        headers.add(name: "content-length", value: "\(body.readableBytes)")
        headers.add(name: "cache-control", value: "no-cache")
        headers.add(name: "connection", value: keepAlive ? "keep-alive" : "close")
        try await outbound.write(.head(HTTPResponseHead(version: request.version, status: status, headers: headers)))
        if request.method != .HEAD { try await outbound.write(.body(.byteBuffer(body))) }
        try await outbound.write(.end(nil))
        return keepAlive
    }
}
