import Foundation
import Logging
import NIOCore
import NIOPosix
import SkylarkWire

/// The TCP adapter for `LoginClientExchange`: one connection, one request, one answer.
public enum LoginClient {
    public static func perform(
        _ request: LoginClientExchange.Request, profile: VerifiedProfile, group: any EventLoopGroup,
        timeout: Duration = .seconds(15), connectTimeout: Duration = .seconds(5),
        logger: Logger
    ) async throws(LoginFailure) -> LoginClientExchange.Outcome {
        let endpoint = profile.loginEndpoint
        let exchange: LoginClientExchange
        do {
            exchange = try LoginClientExchange(request, serverKey: profile.loginKey, now: Date().timeIntervalSince1970)
        } catch {
            throw .protocolViolation("cannot build the request: \(error)")
        }
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.nanoseconds(Int64(connectTimeout.components.seconds) * 1_000_000_000 + connectTimeout.components.attoseconds / 1_000_000_000))
                .connect(host: endpoint.host, port: endpoint.port) { channel in
                    channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
                }
        } catch {
            throw .serverUnreachable(address: endpoint.description, reason: Self.reason(error))
        }
        logger.debug("connected to login server", metadata: ["login.server": "\(endpoint)"])
        do {
            return try await withTimeout(timeout, onTimeout: { LoginFailure.timedOut(address: endpoint.description) }) {
                var exchange = exchange
                return try await channel.executeThenClose { inbound, outbound in
                    try await outbound.write(ByteBuffer(bytes: exchange.requestBytes))
                    for try await buffer in inbound {
                        if let outcome = try exchange.receive(buffer.readableBytesView) { return outcome }
                    }
                    try exchange.endOfInput()
                    throw LoginFailure.protocolViolation("no answer")
                }
            }
        } catch let failure as LoginFailure {
            throw failure
        } catch {
            throw .serverUnreachable(address: endpoint.description, reason: Self.reason(error))
        }
    }

    static func reason(_ error: any Error) -> String {
        if let error = error as? IOError { return error.description }
        let text = "\(error)"
        if text.contains("connectTimeout") { return "connection timed out" }
        if text.contains("refused") || text.contains("111") { return "connection refused" }
        return text
    }
}
