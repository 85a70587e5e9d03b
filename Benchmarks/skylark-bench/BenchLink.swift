import NIOCore
import SkylarkOverlay
import SkylarkWire

/// What the bench's client links share (`IdleClientHandler` in `attach`, `BenchLinkHandler` in
/// `relay`): sealing a message onto the channel, and the pings and pongs of an idle link.
protocol SealingLinkHandler: AnyObject {
    var link: SecureLink { get set }
    /// Why the link closed, for the report; the first reason wins.
    var closeReason: String? { get set }
}

extension SealingLinkHandler {
    func seal(_ message: OvLinkMessage, context: ChannelHandlerContext) {
        do {
            let bytes = try link.seal(message)
            context.writeAndFlush(NIOAny(ByteBuffer(bytes: bytes)), promise: nil)
        } catch {
            closeReason = "cannot seal: \(error)"
            context.close(promise: nil)
        }
    }

    func sendPing(id: UInt64, context: ChannelHandlerContext) {
        var message = OvLinkMessage()
        message.id = id
        message.ping = OvPing()
        seal(message, context: context)
    }

    /// Answers the supernode's keepalive ping.
    func answerPing(_ ping: OvLinkMessage, context: ChannelHandlerContext) {
        var pong = OvLinkMessage()
        pong.id = ping.id
        pong.pong = OvPong()
        seal(pong, context: context)
    }
}
