import Foundation
import SkylarkWire

/// How to reach a supernode: its node id and addresses.
public struct Contact: Hashable, Sendable, CustomStringConvertible {
    public var nodeID: NodeID
    public var name: String
    /// TCP addresses in order of preference (a supernode may also listen on 443 or 80).
    public var endpoints: [HostPort]
    public var udpEndpoint: HostPort?

    public init(nodeID: NodeID, name: String, endpoints: [HostPort], udpEndpoint: HostPort?) {
        self.nodeID = nodeID
        self.name = name
        self.endpoints = endpoints
        self.udpEndpoint = udpEndpoint
    }

    public init?(_ message: OvContact) {
        guard message.nodeID.count == NodeID.byteCount else { return nil }
        let endpoints = message.endpoints.prefix(8).compactMap(HostPort.init)
        guard !endpoints.isEmpty else { return nil }
        self.init(
            nodeID: NodeID(bytes: message.nodeID), name: String(message.name.prefix(64)), endpoints: Array(endpoints),
            udpEndpoint: message.udpEndpoint.isEmpty ? nil : HostPort(message.udpEndpoint))
    }

    public var message: OvContact {
        var contact = OvContact()
        contact.nodeID = Data(nodeID.bytes)
        contact.name = name
        contact.endpoints = endpoints.map(\.description)
        contact.udpEndpoint = udpEndpoint?.description ?? ""
        return contact
    }

    public var description: String { "\(name)@\(endpoints.first?.description ?? "?")" }
}
