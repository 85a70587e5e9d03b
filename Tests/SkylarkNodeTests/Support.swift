import Foundation
import NIOCore
import NIOPosix
import SkylarkCrypto
import SkylarkNode
import SkylarkTestSupport
import SkylarkWire

/// A loopback port nothing listens on: bound, read, then closed again.
func closedPort(group: any EventLoopGroup) async throws -> Int {
    let channel = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress?.port ?? 0
    try await channel.close()
    return port
}

/// A throwaway TCP server on loopback: collects each connection's bytes and, once `respond`
/// returns an answer for what arrived so far, writes it and closes. `respond` returning nil for
/// ever keeps the link open until the client leaves.
final class RawServer: Sendable {
    let port: Int
    private let task: Task<Void, Never>

    private init(port: Int, task: Task<Void, Never>) {
        self.port = port
        self.task = task
    }

    static func start(group: any EventLoopGroup, respond: @escaping @Sendable ([UInt8]) -> [UInt8]?) async throws -> RawServer {
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        let port = server.channel.localAddress?.port ?? 0
        let task = Task {
            _ = try? await withThrowingDiscardingTaskGroup { tasks in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        tasks.addTask {
                            try? await connection.executeThenClose { input, output in
                                var received: [UInt8] = []
                                for try await buffer in input {
                                    received += buffer.readableBytesView
                                    if let answer = respond(received) {
                                        try await output.write(ByteBuffer(bytes: answer))
                                        return
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return RawServer(port: port, task: task)
    }

    func stop() async {
        task.cancel()
        await task.value
    }
}

/// Runs `body` with a RawServer and always stops the server afterwards.
func withRawServer<T>(
    group: any EventLoopGroup, respond: @escaping @Sendable ([UInt8]) -> [UInt8]?,
    _ body: (RawServer) async throws -> T
) async throws -> T {
    let server = try await RawServer.start(group: group, respond: respond)
    let result: Result<T, any Error>
    do { result = .success(try await body(server)) } catch { result = .failure(error) }
    await server.stop()
    return try result.get()
}

/// An HTTP/1.1 answer with `body`, for RawServer.
func httpResponse(status: String = "200 OK", body: [UInt8]) -> [UInt8] {
    Array("HTTP/1.1 \(status)\r\ncontent-length: \(body.count)\r\nconnection: close\r\n\r\n".utf8) + body
}

/// The path of a complete HTTP request head in `bytes`, or nil while it is incomplete.
func requestPath(_ bytes: [UInt8]) -> String? {
    let text = String(decoding: bytes, as: UTF8.self)
    guard text.contains("\r\n\r\n") else { return nil }
    let parts = text.split(separator: " ", maxSplits: 2)
    return parts.count >= 2 ? String(parts[1]) : ""
}

func signedManifest(_ manifest: ReleaseManifest, key: RSA.PrivateKey = TestKeys.update) throws -> [UInt8] {
    Array(try SignedDocument.sign(manifest, with: key).encoded())
}
