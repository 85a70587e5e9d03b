import SkylarkOverlay

/// Why a link (or a dial that never became one) ended: told to the reactor by the link's
/// handler, or chosen by the reactor when it closes a link itself. Compared by case, logged by
/// `description`.
enum LinkCloseReason: Sendable, Equatable, CustomStringConvertible {
    // The connection's own end.
    case connectionClosed
    case idle
    case handshakeTimedOut
    case channelError(String)
    case cannotSeal(String)
    /// The link state machine closed it (a failed handshake, a bad frame, a finished dial-back).
    case link(SecureLink.LinkError)
    /// It sent messages faster than the node could take them (NodeInbox).
    case flooding
    /// A dial that reached no endpoint (each endpoint's failure, in order).
    case unreachable(String)

    // Closed by this node.
    case cannotAuthenticate
    case notASupernode
    case unexpectedPurpose
    case replaced
    case nodeStopping
    case promotedToSupernode
    case noLongerASupernode
    case anotherSupernodeAnsweredFirst
    case handedOver
    case authenticationRefused

    var description: String {
        switch self {
        case .connectionClosed: return "connection closed"
        case .idle: return "idle"
        case .handshakeTimedOut: return "handshake timed out"
        case let .channelError(why): return why
        case let .cannotSeal(why): return "cannot seal: \(why)"
        case let .link(error): return error.description
        case .flooding: return "too many messages waiting: the link sends faster than the node takes them"
        case let .unreachable(why): return why
        case .cannotAuthenticate: return "cannot authenticate"
        case .notASupernode: return "not a supernode"
        case .unexpectedPurpose: return "unexpected link purpose"
        case .replaced: return "replaced"
        case .nodeStopping: return "node stopping"
        case .promotedToSupernode: return "promoted to supernode"
        case .noLongerASupernode: return "no longer a supernode"
        case .anotherSupernodeAnsweredFirst: return "another supernode answered first"
        case .handedOver: return "handed over"
        case .authenticationRefused: return "authentication refused"
        }
    }
}
