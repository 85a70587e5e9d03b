/// How a node's UDP traffic is translated and filtered on its way to the internet, as classified
/// with the supernodes' help (the RFC 3489 categories, which decide how calls can connect).
public enum NATType: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// No translation and unsolicited traffic gets in: the node is publicly reachable over UDP.
    case open
    /// One mapping for all destinations; anyone may send to it.
    case fullCone = "full-cone"
    /// One mapping; only addresses the node has sent to may send back (any port).
    case restricted
    /// One mapping; only the exact address and port the node has sent to may send back.
    case portRestricted = "port-restricted"
    /// A new mapping per destination: hole punching cannot predict it, calls need a relay.
    case symmetric
    /// No UDP reaches the supernodes at all: everything goes over TCP.
    case udpBlocked = "udp-blocked"
    /// Not yet measured, or the measurement could not finish.
    case unknown

    public var description: String { rawValue }

    /// A type as another node reported it (a wire field, a stored record): anything not
    /// understood, the empty string included, is `unknown`.
    public init(reported text: String) { self = NATType(rawValue: text) ?? .unknown }

    /// Decoded leniently for the same reason: a state file holds what peers reported.
    public init(from decoder: any Decoder) throws {
        self.init(reported: try decoder.singleValueContainer().decode(String.self))
    }
}
