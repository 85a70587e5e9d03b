/// What a datagram on a node's UDP port is, told by its first bytes. STUN, Skylark's own
/// datagrams, relay packets and RTP media share the port (as ICE demultiplexes, RFC 7983):
/// the first byte alone tells them apart, so a node can sort — and drop — a flood before it costs
/// more than a look.
public enum DatagramKind: Sendable, Equatable, CaseIterable {
    /// STUN (RFC 5389): top two bits zero and the magic cookie.
    case stun
    /// An overlay datagram (`OvDatagram`, protobuf): host-cache queries, NAT probes, path checks.
    case overlay
    /// A relay-circuit packet (`RelayCircuits`): a marker, a leg id, then the payload.
    case relay
    /// RTP media (RFC 3550 version 2: first byte 0x80-0xBF).
    case media
    /// Anything else: dropped unread.
    case unknown

    /// First byte of an overlay datagram.
    public static let overlayMarker: UInt8 = 0xD5
    /// First byte of a relay packet.
    public static let relayMarker: UInt8 = RelayCircuits.packetMarker

    public init(_ bytes: [UInt8]) {
        guard let first = bytes.first else {
            self = .unknown
            return
        }
        switch first {
        case Self.overlayMarker: self = .overlay
        case Self.relayMarker: self = .relay
        case 0x80...0xBF: self = .media
        default: self = STUNMessage.looksLikeSTUN(bytes) ? .stun : .unknown
        }
    }

    /// An overlay datagram: the marker, then the serialized message.
    public static func overlay(_ body: [UInt8]) -> [UInt8] { [overlayMarker] + body }
}
