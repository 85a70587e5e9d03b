import Foundation
import NIOCore
import NIOPosix
import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire
import Synchronization

/// The TCP adapter of `SecureLink`: one per connection, confined to its channel's event loop.
/// It feeds bytes to the link, writes what the link says, answers keepalive pings itself, and
/// reports everything else to the node's reactor as `NodeEvent`s.
final class LinkHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let id: LinkID
    private var link: SecureLink
    private let sink: NodeEventSink
    private let handshakeTimeout: TimeAmount
    private let relay: RelayForwarder
    private var context: ChannelHandlerContext?
    private var reported = false
    private var closeReason: LinkCloseReason?

    init(id: LinkID, link: SecureLink, sink: NodeEventSink, relay: RelayForwarder, handshakeTimeout: TimeAmount = .seconds(10)) {
        self.id = id
        self.link = link
        self.sink = sink
        self.relay = relay
        self.handshakeTimeout = handshakeTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        perform(link.start())
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: handshakeTimeout) {
            let handler = loopBound.value
            if !handler.link.isEstablished && !handler.link.isClosed {
                handler.closeReason = .handshakeTimedOut
                handler.context?.close(promise: nil)
            }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        perform(link.receive(buffer.readableBytesView, now: Date().timeIntervalSince1970))
    }

    func channelInactive(context: ChannelHandlerContext) {
        _ = link.endOfInput()
        relay.unregister(id)
        reportClosed(.linkClosed(id, reason: closeReason ?? .connectionClosed))
        self.context = nil
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            closeReason = .idle
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closeReason = .channelError("\(error)")
        context.close(promise: nil)
    }

    /// Encrypts and writes one message (called on the event loop through `LinkHandle`).
    func send(_ message: OvLinkMessage) {
        guard let context, link.isEstablished else { return }
        // The peer is not reading (its send buffer is past the high-water mark): drop rather
        // than queue without bound; the protocols' timeouts and retries deal with the loss.
        guard context.channel.isWritable else {
            sink.countSendDropped()
            return
        }
        do {
            let bytes = try link.seal(message)
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: nil)
        } catch {
            closeReason = .cannotSeal("\(error)")
            context.close(promise: nil)
        }
    }

    func close(reason: LinkCloseReason) {
        closeReason = closeReason ?? reason
        context?.close(promise: nil)
    }

    /// Proves a new credential on an ANONYMOUS link (the message is bound to this link's
    /// transcript, which only the link state machine holds).
    func authenticate(requestID: UInt64, identity: LocalIdentity) {
        guard let message = try? link.authenticateMessage(requestID: requestID, identity: identity) else {
            close(reason: .cannotAuthenticate)
            return
        }
        send(message)
    }

    private func reportClosed(_ event: NodeEvent) {
        guard !reported else { return }
        reported = true
        sink.yield(event)
    }
}

extension LinkHandler: LinkActionTarget {
    var linkID: LinkID { id }

    func write(_ bytes: [UInt8]) {
        guard let context else { return }
        // What the link writes by itself once established (answers to its peer's requests) is
        // capped like any send: a peer that does not read cannot grow the buffer.
        if link.isEstablished, !context.channel.isWritable {
            sink.countSendDropped()
            return
        }
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: nil)
    }

    func established(peer: PeerIdentity?, purpose: OvLinkPurpose) {
        guard let context else { return }
        let handle = LinkHandle(id: id, channel: context.channel, handler: NIOLoopBound(self, eventLoop: context.eventLoop))
        relay.register(handle)
        sink.yield(.linkEstablished(LinkInfo(id: id, peer: peer, purpose: purpose, remote: handle.remoteEndpoint, local: handle.localEndpoint)))
    }

    func sendMessage(_ message: OvLinkMessage) { send(message) }

    func forwardRelay(_ packet: [UInt8]) -> Bool { relay.forwardFromLink(id, packet: packet) }

    func report(_ event: NodeEvent) -> Bool { sink.yield(event) }

    func closeAfterFlush(_ reason: LinkCloseReason) {
        if reason == .flooding { sink.countLinkClosedForFlooding() }
        closeReason = reason
        // Let the last frame (a refusal or a dial-back reply) go out before closing.
        context?.writeAndFlush(wrapOutboundOut(ByteBuffer()), promise: nil)
        context?.close(promise: nil)
    }
}

/// What the transport holds for a link: a Sendable way to send on it and close it.
struct LinkHandle: Sendable {
    let id: LinkID
    let channel: any Channel
    let handler: NIOLoopBound<LinkHandler>

    func send(_ message: OvLinkMessage) {
        let handler = self.handler
        channel.eventLoop.execute { handler.value.send(message) }
    }

    func close(reason: LinkCloseReason) {
        let handler = self.handler
        channel.eventLoop.execute { handler.value.close(reason: reason) }
    }

    func authenticate(requestID: UInt64, identity: LocalIdentity) {
        let handler = self.handler
        channel.eventLoop.execute { handler.value.authenticate(requestID: requestID, identity: identity) }
    }

    var remoteEndpoint: HostPort? { channel.remoteAddress.flatMap(HostPort.init(socketAddress:)) }
    var localEndpoint: HostPort? { channel.localAddress.flatMap(HostPort.init(socketAddress:)) }
}

/// Link ids, unique for the life of the process.
final class LinkIDs: Sendable {
    private let next = Atomic<UInt64>(1)
    func make() -> LinkID { next.wrappingAdd(1, ordering: .relaxed).oldValue }
}

/// Whether this node currently serves as a supernode: inbound links read it when they start.
final class RoleFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSupernode: Bool {
        get { value.load(ordering: .relaxed) }
        set { value.store(newValue, ordering: .relaxed) }
    }
}

extension HostPort {
    init?(socketAddress: SocketAddress) {
        guard let ip = socketAddress.ipAddress, let port = socketAddress.port else { return nil }
        self.init(host: ip, port: port)
    }
}
