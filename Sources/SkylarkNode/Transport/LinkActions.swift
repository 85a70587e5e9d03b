import SkylarkOverlay
import SkylarkWire

/// One end of a link as its transport holds it: `LinkHandler` over TCP, `MemoryLink` in the
/// in-memory network. Both carry out `SecureLink`'s actions the same way, through `perform`.
protocol LinkActionTarget: AnyObject {
    var linkID: LinkID { get }
    /// Writes handshake or sealed bytes.
    func write(_ bytes: [UInt8])
    /// The handshake finished: the transport registers the link and tells the reactor.
    func established(peer: PeerIdentity?, purpose: OvLinkPurpose)
    /// Seals and writes a message of the link's own (a pong).
    func sendMessage(_ message: OvLinkMessage)
    /// A relay packet for a circuit this supernode carries; false when it is for this node.
    func forwardRelay(_ packet: [UInt8]) -> Bool
    /// Posts to the reactor; false when the inbox refused it (too many waiting).
    func report(_ event: NodeEvent) -> Bool
    /// Writes what is pending, then closes.
    func closeAfterFlush(_ reason: LinkCloseReason)
}

extension LinkActionTarget {
    /// Carries out the link state machine's actions: keepalive pings are answered here, relay
    /// packets of circuits carried here are forwarded without the reactor, and a link that
    /// sends faster than the reactor takes its messages is closed (its flood costs only itself).
    func perform(_ actions: [SecureLink.Action]) {
        for action in actions {
            switch action {
            case let .send(bytes):
                write(bytes)
            case let .established(peer, purpose):
                established(peer: peer, purpose: purpose)
            case let .upgraded(peer):
                _ = report(.linkUpgraded(linkID, peer: peer))
            case let .message(message):
                switch message.body {
                case .ping?:
                    var pong = OvLinkMessage()
                    pong.id = message.id
                    pong.pong = OvPong()
                    sendMessage(pong)
                case .pong?:
                    continue  // its arrival already counts as traffic for the idle timer
                case let .relayData(data)? where forwardRelay(Array(data.packet)):
                    continue
                default:
                    if !report(.linkMessage(linkID, message)) {
                        closeAfterFlush(.flooding)
                        return
                    }
                }
            case let .dialBack(nonce):
                _ = report(.dialBackArrived(nonce: nonce))
            case let .close(error):
                closeAfterFlush(.link(error))
            }
        }
    }
}
