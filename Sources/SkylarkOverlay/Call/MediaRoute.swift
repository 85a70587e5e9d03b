import SkylarkWire

/// How one call packet (a path check or media) travels, and how it arrived: straight over UDP
/// to an address, or into a relay circuit — over UDP to the supernode's relay port, or over the
/// TCP link to it when UDP is blocked.
public struct MediaRoute: Sendable, Hashable, CustomStringConvertible {
    /// The peer's UDP address, or (relayed) our end of the circuit at our supernode.
    public var endpoint: HostPort
    /// Our leg's id in the circuit (relayed); nil for plain UDP.
    public var circuit: [UInt8]?
    /// Relay packets go over our TCP link to our supernode.
    public var overTCP: Bool

    public init(endpoint: HostPort, circuit: [UInt8]? = nil, overTCP: Bool = false) {
        self.endpoint = endpoint
        self.circuit = circuit
        self.overTCP = overTCP
    }

    /// Plain UDP to `endpoint`.
    public static func udp(_ endpoint: HostPort) -> MediaRoute { MediaRoute(endpoint: endpoint) }

    public var isRelayed: Bool { circuit != nil }

    /// The same way to the peer: same address and circuit (the transport may differ).
    public func sameWay(as other: MediaRoute) -> Bool { endpoint == other.endpoint && circuit == other.circuit }

    public var description: String {
        guard let circuit else { return "udp \(endpoint)" }
        return "circuit \(circuit.prefix(4).map { String(format: "%02x", $0) }.joined()) at \(endpoint)\(overTCP ? " over tcp" : "")"
    }
}
