import SkylarkTraversal
import SkylarkWire
import Testing

@Suite("Relay circuits")
struct RelayCircuitsTests {
    let caller = HostPort(host: "198.51.100.7", port: 40000)
    let next = HostPort(host: "203.0.113.22", port: 7100)
    let stranger = HostPort(host: "192.0.2.66", port: 5555)
    func leg(_ byte: UInt8) -> [UInt8] { [UInt8](repeating: byte, count: RelayCircuits.legIDByteCount) }

    @Test func packetsCrossTheCircuitWithTheOtherLegsID() throws {
        var table = RelayCircuits()
        try table.admit(towardCaller: .init(id: leg(1), endpoint: nil), towardCallee: .init(id: leg(2), endpoint: .udp(next)), now: 0)
        // The client's first packet binds its leg and goes on toward the callee, renamed.
        #expect(table.route(leg: leg(1), from: .udp(caller), byteCount: 100, now: 0.01) == .init(endpoint: .udp(next), legID: leg(2)))
        // The answer comes back to the bound client.
        #expect(table.route(leg: leg(2), from: .udp(next), byteCount: 100, now: 0.02) == .init(endpoint: .udp(caller), legID: leg(1)))
        #expect(table.packetsForwarded == 2)
    }

    @Test func aLegIsBoundToItsNeighbour() throws {
        var table = RelayCircuits()
        try table.admit(towardCaller: .init(id: leg(1), endpoint: nil), towardCallee: .init(id: leg(2), endpoint: .udp(next)), now: 0)
        _ = table.route(leg: leg(1), from: .udp(caller), byteCount: 100, now: 0)
        // Someone who learnt the id cannot use the circuit from elsewhere, on either leg.
        #expect(table.route(leg: leg(1), from: .udp(stranger), byteCount: 100, now: 0) == nil)
        #expect(table.route(leg: leg(2), from: .udp(stranger), byteCount: 100, now: 0) == nil)
        #expect(table.route(leg: leg(9), from: .udp(caller), byteCount: 100, now: 0) == nil)
        #expect(table.packetsDropped == 3)
    }

    @Test func admissionIsExplicitAndLimited() throws {
        var limits = RelayCircuits.Limits()
        limits.maximumCircuits = 2
        var table = RelayCircuits(limits: limits)
        try table.admit(towardCaller: .init(id: leg(1), endpoint: nil), towardCallee: .init(id: leg(2), endpoint: nil), now: 0)
        #expect(throws: RelayCircuits.Refusal.duplicate) {
            try table.admit(towardCaller: .init(id: leg(1), endpoint: nil), towardCallee: .init(id: leg(3), endpoint: nil), now: 0)
        }
        try table.admit(towardCaller: .init(id: leg(3), endpoint: nil), towardCallee: .init(id: leg(4), endpoint: nil), now: 0)
        #expect(throws: RelayCircuits.Refusal.full) {
            try table.admit(towardCaller: .init(id: leg(5), endpoint: nil), towardCallee: .init(id: leg(6), endpoint: nil), now: 0)
        }
        var narrow = RelayCircuits.Limits()
        narrow.totalBandwidth = 50_000
        narrow.perCircuitBandwidth = 32_000
        var small = RelayCircuits(limits: narrow)
        try small.admit(towardCaller: .init(id: leg(1), endpoint: nil), towardCallee: .init(id: leg(2), endpoint: nil), now: 0)
        #expect(throws: RelayCircuits.Refusal.bandwidth) {
            try small.admit(towardCaller: .init(id: leg(3), endpoint: nil), towardCallee: .init(id: leg(4), endpoint: nil), now: 0)
        }
        // Tearing one down frees its share.
        small.teardown(leg: leg(2))
        try small.admit(towardCaller: .init(id: leg(3), endpoint: nil), towardCallee: .init(id: leg(4), endpoint: nil), now: 0)
    }

    @Test func aCircuitOverItsRateDropsTheExcess() throws {
        var limits = RelayCircuits.Limits()
        limits.perCircuitBandwidth = 10_000
        var table = RelayCircuits(limits: limits)
        try table.admit(towardCaller: .init(id: leg(1), endpoint: .udp(caller)), towardCallee: .init(id: leg(2), endpoint: .udp(next)), now: 0)
        var passed = 0
        for _ in 0..<100 where table.route(leg: leg(1), from: .udp(caller), byteCount: 500, now: 0) != nil { passed += 1 }
        #expect(passed == 20)  // one second of burst at 10 kB/s
        // A second later the bucket has refilled.
        #expect(table.route(leg: leg(1), from: .udp(caller), byteCount: 500, now: 1) != nil)
    }

    @Test func idleCircuitsExpire() throws {
        var table = RelayCircuits()
        try table.admit(towardCaller: .init(id: leg(1), endpoint: .udp(caller)), towardCallee: .init(id: leg(2), endpoint: .udp(next)), now: 0)
        try table.admit(towardCaller: .init(id: leg(3), endpoint: .udp(caller)), towardCallee: .init(id: leg(4), endpoint: .udp(next)), now: 0)
        _ = table.route(leg: leg(3), from: .udp(caller), byteCount: 10, now: 25)
        #expect(Set(table.expire(now: 31)) == [leg(1), leg(2)])
        #expect(table.count == 1)
        #expect(table.route(leg: leg(1), from: .udp(caller), byteCount: 10, now: 31) == nil)
    }

    @Test func twoClientsOnOneSupernodeAndTCPLegs() throws {
        var table = RelayCircuits()
        try table.admit(towardCaller: .init(id: leg(1), endpoint: nil), towardCallee: .init(id: leg(2), endpoint: nil), now: 0)
        // Nowhere to go until the far client binds.
        #expect(table.route(leg: leg(1), from: .link(7), byteCount: 10, now: 0) == nil)
        #expect(table.route(leg: leg(2), from: .udp(caller), byteCount: 10, now: 0) == .init(endpoint: .link(7), legID: leg(1)))
        #expect(table.route(leg: leg(1), from: .link(7), byteCount: 10, now: 0) == .init(endpoint: .udp(caller), legID: leg(2)))
        #expect(table.legs(touching: .link(7)) == [leg(1)])
    }

    @Test func packetFormat() {
        let packet = RelayCircuits.packet(leg: leg(5), payload: [1, 2, 3])
        #expect(packet.first == 0xD6 && packet.count == RelayCircuits.headerByteCount + 3)
        let parsed = RelayCircuits.parse(packet)
        #expect(parsed?.legID == leg(5))
        #expect(parsed.map { Array($0.payload) } == [1, 2, 3])
        #expect(RelayCircuits.parse([0xD6, 1, 2]) == nil)
        #expect(RelayCircuits.parse([0x80] + leg(1) + [0]) == nil)
    }
}
