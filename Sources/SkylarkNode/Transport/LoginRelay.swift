import NIOCore
import NIOPosix
import SkylarkWire

/// A supernode's side of "login through a supernode": one sealed request to the login server,
/// one framed answer back. The bytes are sealed to the login server's key; the supernode only
/// moves them.
enum LoginRelay {
    /// The answer frame (length prefix included), or nil when the login server cannot be reached
    /// or does not answer in time.
    static func forward(_ request: [UInt8], to endpoint: HostPort, group: any EventLoopGroup, timeout: Duration) async -> [UInt8]? {
        do {
            return try await withTimeout(timeout, onTimeout: { LoginFailure.timedOut(address: endpoint.description) }) {
                let channel = try await ClientBootstrap(group: group)
                    .connectTimeout(.seconds(5))
                    .connect(host: endpoint.host, port: endpoint.port) { channel in
                        channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
                    }
                return try await channel.executeThenClose { inbound, outbound in
                    try await outbound.write(ByteBuffer(bytes: request))
                    var decoder = FrameDecoder(maximumFrameSize: 16 * 1024)
                    for try await buffer in inbound {
                        decoder.append(bytes: buffer.readableBytesView)
                        if let frame = try decoder.next() { return try Framing.encode(frame) }
                    }
                    return nil
                }
            }
        } catch {
            return nil
        }
    }
}
