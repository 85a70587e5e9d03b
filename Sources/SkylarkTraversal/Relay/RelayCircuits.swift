import SkylarkWire
import Synchronization

/// The relay circuits one supernode carries, as a sans-I/O table: which circuits it admitted,
/// where each side of each circuit is, and where a packet that arrives should go.
///
/// A circuit is a chain of supernodes (the caller's, two relays, the callee's). On each node a
/// circuit has two legs, one toward the caller and one toward the callee, each with its own
/// random 16-byte id (like a Tor circuit, the id changes at every hop, so a supernode may carry
/// two circuits of the same call — caller and callee on the same supernode). A packet
/// `[0xD6][leg id][payload]` arriving on one leg leaves on the other with the other leg's id;
/// the payload is media encrypted end to end, which a relay cannot read. Each leg is bound to
/// the address (or TCP link) of its neighbour; a leg that faces a client is bound by the
/// client's first packet, which must carry the leg's secret id. Packets from anywhere else are
/// dropped, so a circuit cannot be used to send to third parties. Admission is explicit: a full
/// supernode says so and the caller picks another relay.
public struct RelayCircuits: Sendable {
    /// Relay packets start with this byte (STUN starts with 0b00, RTP with 0b10, Skylark
    /// datagrams with 0xD5).
    public static let packetMarker: UInt8 = 0xD6
    public static let legIDByteCount = 16
    public static let headerByteCount = 1 + legIDByteCount

    public struct Limits: Sendable {
        public var maximumCircuits = 4_000
        /// Bytes per second each circuit may carry in each direction; packets beyond are dropped.
        public var perCircuitBandwidth: Double = 32_000
        /// Total promised bandwidth (per direction) across circuits; admission stops beyond it.
        public var totalBandwidth: Double = 50_000_000
        /// A circuit with no packet for this long is forgotten.
        public var idleTimeout: Double = 30
        public init() {}
    }

    /// Where one leg of a circuit leads.
    public enum Endpoint: Hashable, Sendable {
        case udp(HostPort)
        /// A TCP link (UDP-blocked client), by the adapter's link id.
        case link(UInt64)
    }

    public struct Leg: Sendable, Equatable {
        public var id: [UInt8]
        /// nil: faces a client and is bound by its first packet.
        public var endpoint: Endpoint?

        public init(id: [UInt8], endpoint: Endpoint?) {
            self.id = id
            self.endpoint = endpoint
        }
    }

    public enum Refusal: Error, Equatable, Sendable, CustomStringConvertible {
        case full
        case bandwidth
        case duplicate

        public var description: String {
            switch self {
            case .full: return "relay full: no more circuits"
            case .bandwidth: return "relay full: no bandwidth left"
            case .duplicate: return "circuit id already in use"
            }
        }
    }

    /// Where a packet goes: out of `endpoint`, with its id rewritten to `legID`.
    public struct Forward: Sendable, Equatable {
        public var endpoint: Endpoint
        public var legID: [UInt8]

        public init(endpoint: Endpoint, legID: [UInt8]) {
            self.endpoint = endpoint
            self.legID = legID
        }
    }

    /// A leg id as a dictionary key: a 16-byte id (every real one) packed into two words, so
    /// finding a packet's leg hashes two integers rather than an array of bytes; ids of any
    /// other length are kept as they are.
    public struct LegKey: Hashable, Sendable {
        var high: UInt64 = 0
        var low: UInt64 = 0
        var other: [UInt8]?

        public init(_ id: [UInt8]) {
            guard id.count == RelayCircuits.legIDByteCount else {
                other = id
                return
            }
            for index in 0..<8 {
                high = high << 8 | UInt64(id[index])
                low = low << 8 | UInt64(id[8 + index])
            }
        }

        /// The 16-byte id at the start of `bytes`, read where it lies (the relay's receive
        /// buffer) without making an array of it.
        public init(legIDAt bytes: UnsafeRawBufferPointer) {
            precondition(bytes.count >= RelayCircuits.legIDByteCount)
            high = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            low = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
    }

    struct Circuit: Sendable {
        var legs: [Leg]  // [toward caller, toward callee]
        var lastActivity: Double
        var bandwidth: Double
        /// Token buckets in bytes, per outgoing leg.
        var tokens: [Double]
        var lastRefill: Double
    }

    public let limits: Limits
    private var circuits: [UInt64: Circuit] = [:]
    private var legIndex: [LegKey: (circuit: UInt64, index: Int)] = [:]
    private var nextCircuit: UInt64 = 1
    private var promised: Double = 0
    public private(set) var packetsForwarded: UInt64 = 0
    public private(set) var packetsDropped: UInt64 = 0

    public init(limits: Limits = .init()) {
        self.limits = limits
    }

    public var count: Int { circuits.count }

    /// Admits a circuit joining the two legs.
    public mutating func admit(towardCaller: Leg, towardCallee: Leg, bandwidth: Double? = nil, now: Double) throws(Refusal) {
        guard towardCaller.id != towardCallee.id, legIndex[LegKey(towardCaller.id)] == nil, legIndex[LegKey(towardCallee.id)] == nil else { throw .duplicate }
        guard circuits.count < limits.maximumCircuits else { throw .full }
        let rate = min(bandwidth ?? limits.perCircuitBandwidth, limits.perCircuitBandwidth)
        guard promised + rate <= limits.totalBandwidth else { throw .bandwidth }
        promised += rate
        let key = nextCircuit
        nextCircuit += 1
        // One second of burst.
        circuits[key] = Circuit(legs: [towardCaller, towardCallee], lastActivity: now, bandwidth: rate, tokens: [rate, rate], lastRefill: now)
        legIndex[LegKey(towardCaller.id)] = (key, 0)
        legIndex[LegKey(towardCallee.id)] = (key, 1)
    }

    public func contains(leg id: [UInt8]) -> Bool { legIndex[LegKey(id)] != nil }

    /// The other leg of the circuit `id` belongs to.
    public func otherLeg(of id: [UInt8]) -> Leg? {
        guard let (key, index) = legIndex[LegKey(id)], let circuit = circuits[key] else { return nil }
        return circuit.legs[1 - index]
    }

    /// Where a packet of `byteCount` bytes that arrived on leg `id` from `source` goes, or nil to
    /// drop it. An unbound leg is bound here to `source`; after that only `source` may use it.
    public mutating func route(leg id: [UInt8], from source: Endpoint, byteCount: Int, now: Double) -> Forward? {
        route(leg: LegKey(id), from: source, byteCount: byteCount, now: now)
    }

    public mutating func route(leg legKey: LegKey, from source: Endpoint, byteCount: Int, now: Double) -> Forward? {
        guard let (key, index) = legIndex[legKey], let slot = circuits.index(forKey: key) else {
            packetsDropped += 1
            return nil
        }
        // The circuit is changed where it lies: copying it out and back would copy its arrays
        // (a heap allocation) on every packet.
        guard let forward = Self.pass(&circuits.values[slot], arrivingOn: index, from: source, byteCount: byteCount, now: now) else {
            packetsDropped += 1
            return nil
        }
        packetsForwarded += 1
        return forward
    }

    private static func pass(_ circuit: inout Circuit, arrivingOn index: Int, from source: Endpoint, byteCount: Int, now: Double) -> Forward? {
        if let bound = circuit.legs[index].endpoint {
            guard bound == source else { return nil }
        } else {
            circuit.legs[index].endpoint = source
        }
        let out = 1 - index
        let elapsed = max(0, now - circuit.lastRefill)
        circuit.lastRefill = now
        for leg in 0..<2 { circuit.tokens[leg] = min(circuit.bandwidth, circuit.tokens[leg] + elapsed * circuit.bandwidth) }
        circuit.lastActivity = now
        // Over the circuit's rate, or the far side is a client that has not bound yet.
        guard circuit.tokens[out] >= Double(byteCount), let target = circuit.legs[out].endpoint else { return nil }
        circuit.tokens[out] -= Double(byteCount)
        return Forward(endpoint: target, legID: circuit.legs[out].id)
    }

    /// Removes the circuit that leg `id` belongs to.
    @discardableResult
    public mutating func teardown(leg id: [UInt8]) -> Bool {
        guard let (key, _) = legIndex[LegKey(id)], let circuit = circuits.removeValue(forKey: key) else { return false }
        for leg in circuit.legs { legIndex[LegKey(leg.id)] = nil }
        promised -= circuit.bandwidth
        return true
    }

    /// Legs bound to `endpoint` (a TCP link that closed, a neighbour that died).
    public func legs(touching endpoint: Endpoint) -> [[UInt8]] {
        circuits.values.flatMap { circuit in circuit.legs.filter { $0.endpoint == endpoint }.map(\.id) }
    }

    /// Forgets idle circuits; returns the ids of their legs.
    public mutating func expire(now: Double) -> [[UInt8]] {
        let idle = circuits.filter { now - $0.value.lastActivity >= limits.idleTimeout }
        var removed: [[UInt8]] = []
        for (_, circuit) in idle {
            removed += circuit.legs.map(\.id)
            teardown(leg: circuit.legs[0].id)
        }
        return removed
    }

    /// Splits a relay packet into its leg id and payload; nil when it is not one.
    public static func parse<Bytes: RandomAccessCollection<UInt8>>(_ packet: Bytes) -> (legID: [UInt8], payload: Bytes.SubSequence)? where Bytes.Index == Int {
        guard packet.count > headerByteCount, packet[packet.startIndex] == packetMarker else { return nil }
        let idStart = packet.startIndex + 1
        return (Array(packet[idStart..<idStart + legIDByteCount]), packet[(idStart + legIDByteCount)...])
    }

    public static func packet(leg id: [UInt8], payload: [UInt8]) -> [UInt8] {
        [packetMarker] + id + payload
    }
}

/// The circuit table shared by the supernode core (which admits and tears down circuits) and
/// the packet fast path on the event loops (which routes every relay packet without a trip
/// through the reactor).
public final class RelayTable: Sendable {
    private let table: Mutex<RelayCircuits>

    public let limits: RelayCircuits.Limits

    public init(limits: RelayCircuits.Limits = .init()) {
        self.limits = limits
        table = Mutex(RelayCircuits(limits: limits))
    }

    /// The id of the leg on the far side of leg `id`'s circuit.
    public func outgoingLeg(after id: [UInt8]) -> [UInt8]? { table.withLock { $0.otherLeg(of: id)?.id } }

    public func admit(towardCaller: RelayCircuits.Leg, towardCallee: RelayCircuits.Leg, bandwidth: Double? = nil, now: Double) throws(RelayCircuits.Refusal) {
        try table.withLock { (table: inout RelayCircuits) throws(RelayCircuits.Refusal) in
            try table.admit(towardCaller: towardCaller, towardCallee: towardCallee, bandwidth: bandwidth, now: now)
        }
    }

    public func route(leg id: [UInt8], from source: RelayCircuits.Endpoint, byteCount: Int, now: Double) -> RelayCircuits.Forward? {
        table.withLock { $0.route(leg: id, from: source, byteCount: byteCount, now: now) }
    }

    public func route(leg key: RelayCircuits.LegKey, from source: RelayCircuits.Endpoint, byteCount: Int, now: Double) -> RelayCircuits.Forward? {
        table.withLock { $0.route(leg: key, from: source, byteCount: byteCount, now: now) }
    }

    /// A whole relay packet routed: as it leaves (the next leg's id written in) and where to;
    /// nil when it belongs to no circuit carried here from `source` (it is for this node).
    public func forward(_ packet: [UInt8], from source: RelayCircuits.Endpoint, now: Double) -> (packet: [UInt8], to: RelayCircuits.Endpoint)? {
        guard let (leg, _) = RelayCircuits.parse(packet),
            let forward = route(leg: leg, from: source, byteCount: packet.count, now: now)
        else { return nil }
        return (RelayCircuits.packet(leg: forward.legID, payload: Array(packet[RelayCircuits.headerByteCount...])), forward.endpoint)
    }

    @discardableResult
    public func teardown(leg id: [UInt8]) -> Bool { table.withLock { $0.teardown(leg: id) } }

    public func legs(touching endpoint: RelayCircuits.Endpoint) -> [[UInt8]] { table.withLock { $0.legs(touching: endpoint) } }

    public func expire(now: Double) -> [[UInt8]] { table.withLock { $0.expire(now: now) } }

    public var count: Int { table.withLock { $0.count } }

    public var statistics: (circuits: Int, forwarded: UInt64, dropped: UInt64) {
        table.withLock { ($0.count, $0.packetsForwarded, $0.packetsDropped) }
    }
}
