import Foundation
import NIOCore
import NIOPosix
import SkylarkOverlay
import SkylarkTraversal
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
    let relay: RelayForwarder

    func listen(on endpoint: HostPort) async throws -> any Channel {
        let identity = self.identity
        let verifier = self.verifier
        let role = self.role
        let ids = self.ids
        let sink = self.sink
        let idleTimeout = self.idleTimeout
        let relay = self.relay
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let link = try SecureLink(role: .responder(isSupernode: role.isSupernode), identity: identity.current, verifier: verifier)
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(LinkHandler(id: ids.make(), link: link, sink: sink, relay: relay))
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
        let relay = self.relay
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
                            try channel.pipeline.syncOperations.addHandler(LinkHandler(id: id, link: link, sink: sink, relay: relay))
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
        let relay = self.relay
        return try await DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            // Up to 32 datagrams per recvmmsg, each in its own 2,048-byte slot (as before, one
            // 2,048-byte buffer per datagram), and room in the kernel for bursts of relay traffic
            // while the event loop is busy (the kernel caps it at net.core.rmem_max).
            .channelOption(.datagramVectorReadMessageCount, value: DatagramHandler.vectorReadCount)
            // One recvmmsg per readiness event: a second call would mostly find the socket
            // empty (EAGAIN), a wasted system call per wake-up; epoll reports it again if not.
            .channelOption(.maxMessagesPerRead, value: 1)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 2048 * DatagramHandler.vectorReadCount))
            .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
            .channelInitializer { [relay] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramHandler(socket: index, sink: sink, relay: relay))
                }
            }
            .bind(host: endpoint.host, port: endpoint.port)
            .get()
    }
}

/// Relay packets for circuits this supernode carries are forwarded right here, on the event
/// loop (the relay's hot path: a table lookup and a send); every other datagram goes to the
/// reactor. Oversized datagrams are dropped.
final class DatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    static let vectorReadCount = 32

    private let socket: Int
    private let sink: NodeEventSink
    private let relay: RelayForwarder

    init(socket: Int, sink: NodeEventSink, relay: RelayForwarder) {
        self.socket = socket
        self.sink = sink
        self.relay = relay
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let count = envelope.data.readableBytes
        guard count <= 2048 else { return }
        let start = envelope.data.readerIndex
        if count > RelayCircuits.headerByteCount,
           envelope.data.getInteger(at: start, as: UInt8.self) == RelayCircuits.packetMarker,
           let leg = envelope.data.getBytes(at: start + 1, length: RelayCircuits.legIDByteCount),
           case let now = Date().timeIntervalSince1970,
           let forward = relay.table.route(leg: leg, from: .udp(hostPort(of: envelope.remoteAddress)), byteCount: count, now: now) {
            switch forward.endpoint {
            case let .udp(target):
                guard let address = socketAddress(of: target, now: now) else { return }
                // A new buffer rather than the id rewritten in place: the received buffer is also
                // held by the pipeline's copy of the envelope, so writing into it would copy it.
                var packet = context.channel.allocator.buffer(capacity: count)
                packet.writeInteger(RelayCircuits.packetMarker)
                packet.writeBytes(forward.legID)
                packet.writeBytes(envelope.data.readableBytesView.dropFirst(RelayCircuits.headerByteCount))
                // Flushed once per read batch (channelReadComplete): one sendmmsg for the batch.
                context.write(wrapOutboundOut(AddressedEnvelope(remoteAddress: address, data: packet)), promise: nil)
                flushPending = true
            case let .link(id):
                var packet = envelope.data
                packet.setBytes(forward.legID, at: start + 1)
                relay.sendOverLink(id, packet: Array(packet.readableBytesView))
            }
            return
        }
        guard let source = HostPort(socketAddress: envelope.remoteAddress) else { return }
        sink.yield(.datagram(Array(envelope.data.readableBytesView), from: source, socket: socket))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if flushPending {
            flushPending = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    /// Relay packets forwarded since the last flush.
    private var flushPending = false
    /// The circuit table matches legs by `HostPort`; turning every packet's source into text
    /// (inet_ntop) and every target back into a socket address (inet_pton) is avoided by
    /// remembering the conversions of recent addresses, a few thousand at most.
    /// Targets with their socket address and whether a route reaches them (nil: none), checked
    /// again after `routeRecheck` seconds.
    private var hostPorts: [SocketAddress: HostPort] = [:]
    private var socketAddresses: [HostPort: (address: SocketAddress?, checkedAt: Double)] = [:]
    private static let addressCacheLimit = 16_384
    private static let routeRecheck = 5.0

    private func hostPort(of address: SocketAddress) -> HostPort {
        if let known = hostPorts[address] { return known }
        let converted = HostPort(socketAddress: address) ?? HostPort(host: "?", port: 0)
        if hostPorts.count >= Self.addressCacheLimit { hostPorts.removeAll(keepingCapacity: true) }
        hostPorts[address] = converted
        return converted
    }

    private func socketAddress(of endpoint: HostPort, now: Double) -> SocketAddress? {
        if let known = socketAddresses[endpoint], now - known.checkedAt < Self.routeRecheck { return known.address }
        let converted = sharedRoutes.canReach(endpoint) ? try? SocketAddress(ipAddress: endpoint.host, port: endpoint.port) : nil
        if socketAddresses.count >= Self.addressCacheLimit { socketAddresses.removeAll(keepingCapacity: true) }
        socketAddresses[endpoint] = (converted, now)
        return converted
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors on an unconnected UDP socket are not fatal to the socket.
    }
}

extension Channel {
    /// Sends one datagram on a UDP channel; failures are left to the protocols' timeouts. A
    /// destination without a route is skipped: the send would fail with ENETUNREACH, which makes
    /// SwiftNIO close the socket.
    func sendDatagram(_ bytes: [UInt8], to endpoint: HostPort) {
        guard Self.routes.canReach(endpoint), let address = try? SocketAddress(ipAddress: endpoint.host, port: endpoint.port) else { return }
        writeAndFlush(AddressedEnvelope(remoteAddress: address, data: ByteBuffer(bytes: bytes)), promise: nil)
    }
}

extension Channel {
    static var routes: Routes { sharedRoutes }
}

private let sharedRoutes = Routes()

/// What the relay fast path needs: the circuit table, and a way to reach TCP links (for
/// UDP-blocked clients) and the main UDP socket (for relay packets that arrived over TCP).
final class RelayForwarder: Sendable {
    let table: RelayTable
    private let sink: NodeEventSink
    private let links = Mutex<[LinkID: LinkHandle]>([:])
    private let udp = Mutex<(any Channel)?>(nil)

    init(table: RelayTable, sink: NodeEventSink) {
        self.table = table
        self.sink = sink
    }

    func register(_ handle: LinkHandle) { links.withLock { $0[handle.id] = handle } }
    func unregister(_ id: LinkID) { _ = links.withLock { $0.removeValue(forKey: id) } }
    func setUDP(_ channel: any Channel) { udp.withLock { $0 = channel } }

    func sendOverLink(_ id: LinkID, packet: [UInt8]) {
        // The supernode's own user is one end of this circuit: hand the packet to the reactor.
        if id == .local {
            sink.yield(.localRelayPacket(packet))
            return
        }
        guard let handle = links.withLock({ $0[id] }) else { return }
        var message = OvLinkMessage()
        message.relayData = OvRelayData()
        message.relayData.packet = Data(packet)
        handle.send(message)
    }

    /// A relay packet that arrived in a TCP link's RelayData: forwarded if it belongs to a circuit
    /// carried here. Returns false when it does not (it is for this node itself).
    func forwardFromLink(_ id: LinkID, packet: [UInt8]) -> Bool {
        guard let (leg, _) = RelayCircuits.parse(packet),
              let forward = table.route(leg: leg, from: .link(id), byteCount: packet.count, now: Date().timeIntervalSince1970) else { return false }
        let rewritten = RelayCircuits.packet(leg: forward.legID, payload: Array(packet[RelayCircuits.headerByteCount...]))
        switch forward.endpoint {
        case let .udp(target): udp.withLock { $0 }?.sendDatagram(rewritten, to: target)
        case let .link(other): sendOverLink(other, packet: rewritten)
        }
        return true
    }
}
