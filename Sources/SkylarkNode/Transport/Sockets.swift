import Foundation
import NIOCore
import NIOPosix
import SkylarkOverlay
import SkylarkWire
import Synchronization

/// The node's identity as links see it when they start: none before login, then the credential.
final class IdentityBox: Sendable {
    private let value: Mutex<LocalIdentity>
    init(_ identity: LocalIdentity) { value = Mutex(identity) }
    var current: LocalIdentity {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}

/// Opening the node's sockets: TCP listeners whose connections become `SecureLink`s, outgoing
/// links, and UDP ports. Everything they receive goes to the reactor as events.
struct NodeSockets: Sendable {
    let group: any EventLoopGroup
    let identity: IdentityBox
    let verifier: Verifier
    let role: RoleFlag
    let ids: LinkIDs
    let sink: NodeEventSink
    let idleTimeout: TimeAmount

    func listen(on endpoint: HostPort) async throws -> any Channel {
        let identity = self.identity
        let verifier = self.verifier
        let role = self.role
        let ids = self.ids
        let sink = self.sink
        let idleTimeout = self.idleTimeout
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let link = try SecureLink(role: .responder(isSupernode: role.isSupernode), identity: identity.current, verifier: verifier)
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(LinkHandler(id: ids.make(), link: link, sink: sink))
                }
            }
            .bind(host: endpoint.host, port: endpoint.port)
            .get()
    }

    /// Connects to the first endpoint that answers and starts the handshake; its outcome arrives
    /// as `.linkEstablished` or `.linkClosed`. Returns a reason when no endpoint could be reached.
    func dial(_ endpoints: [HostPort], role linkRole: SecureLink.Role, id: LinkID, connectTimeout: TimeAmount) async -> String? {
        let identity = self.identity.current
        let verifier = self.verifier
        let sink = self.sink
        let idleTimeout = self.idleTimeout
        var reasons: [String] = []
        for endpoint in endpoints {
            do {
                let link = try SecureLink(role: linkRole, identity: identity, verifier: verifier)
                _ = try await ClientBootstrap(group: group)
                    .connectTimeout(connectTimeout)
                    .channelOption(.socketOption(.tcp_nodelay), value: 1)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                            try channel.pipeline.syncOperations.addHandler(LinkHandler(id: id, link: link, sink: sink))
                        }
                    }
                    .connect(host: endpoint.host, port: endpoint.port)
                    .get()
                return nil
            } catch {
                reasons.append("\(endpoint): \(LoginClient.reason(error))")
            }
        }
        return reasons.isEmpty ? "no address to dial" : reasons.joined(separator: "; ")
    }

    func udp(on endpoint: HostPort, socket index: Int) async throws -> any Channel {
        let sink = self.sink
        return try await DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramHandler(socket: index, sink: sink))
                }
            }
            .bind(host: endpoint.host, port: endpoint.port)
            .get()
    }
}

/// Hands every datagram to the reactor; oversized ones are dropped here.
final class DatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let socket: Int
    private let sink: NodeEventSink

    init(socket: Int, sink: NodeEventSink) {
        self.socket = socket
        self.sink = sink
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard envelope.data.readableBytes <= 2048, let source = HostPort(socketAddress: envelope.remoteAddress) else { return }
        sink.yield(.datagram(Array(envelope.data.readableBytesView), from: source, socket: socket))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors on an unconnected UDP socket are not fatal to the socket.
    }
}

extension Channel {
    /// Sends one datagram on a UDP channel; failures are left to the protocols' timeouts.
    func sendDatagram(_ bytes: [UInt8], to endpoint: HostPort) {
        guard let address = try? SocketAddress(ipAddress: endpoint.host, port: endpoint.port) else { return }
        writeAndFlush(AddressedEnvelope(remoteAddress: address, data: ByteBuffer(bytes: bytes)), promise: nil)
    }
}
