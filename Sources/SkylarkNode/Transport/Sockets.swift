import Foundation
import Logging
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
    let logger: Logger

    /// Each link's send queue: past the high mark the link is not writable and `LinkHandler`
    /// drops what it is asked to send (counted) until the peer has read down to the low mark.
    /// 1 MiB is a few seconds of a relayed call over TCP, far beyond any burst of signalling.
    static let sendBufferLimit = ChannelOptions.Types.WriteBufferWaterMark(low: 256 << 10, high: 1 << 20)

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
            .childChannelOption(.writeBufferWaterMark, value: Self.sendBufferLimit)
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
                    .channelOption(.writeBufferWaterMark, value: Self.sendBufferLimit)
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

    /// A UDP port: the channel sends what the reactor sends; a `DatagramPump` reads everything
    /// that arrives (the channel itself never reads).
    func udp(on endpoint: HostPort, socket index: Int) async throws -> (channel: any Channel, pump: DatagramPump) {
        let address = try SocketAddress.makeAddressResolvingHost(endpoint.host, port: endpoint.port)
        let socket = try DatagramPump.boundSocket(address)
        // From here the channel owns the socket and closes it; the pump reads a duplicate.
        let channel = try await DatagramBootstrap(group: group)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramErrorHandler())
                }
            }
            .withBoundSocket(socket)
            .get()
        do {
            return (channel, try DatagramPump(socket: socket, index: index, sink: sink, relay: relay, logger: logger))
        } catch {
            try? await channel.close()
            throw error
        }
    }
}

/// The UDP channels only send; a failed send is left to the protocols' timeouts and must not
/// close the socket.
final class DatagramErrorHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    func errorCaught(context: ChannelHandlerContext, error: any Error) {}
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

let sharedRoutes = Routes()

/// What the relay fast path (`DatagramPump`) needs: the circuit table, and a way to reach TCP links (for
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
    /// The open link with this id (NIOTransport sends and closes through it).
    func handle(_ id: LinkID) -> LinkHandle? { links.withLock { $0[id] } }
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
        guard let (rewritten, endpoint) = table.forward(packet, from: .link(id), now: Moment.monotonicNow()) else { return false }
        switch endpoint {
        case let .udp(target): udp.withLock { $0 }?.sendDatagram(rewritten, to: target)
        case let .link(other): sendOverLink(other, packet: rewritten)
        }
        return true
    }
}
