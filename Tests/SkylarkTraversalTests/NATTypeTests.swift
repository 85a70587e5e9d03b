import Foundation
import SkylarkTraversal
import Testing

/// NAT kinds travel as `NATType` everywhere; on the wire and in files they are their raw strings.
@Suite struct NATTypeTests {
    @Test func aReportedTypeThatIsNotUnderstoodIsUnknown() {
        #expect(NATType(reported: "port-restricted") == .portRestricted)
        #expect(NATType(reported: "udp-blocked") == .udpBlocked)
        #expect(NATType(reported: "") == .unknown)
        #expect(NATType(reported: "Symmetric") == .unknown)
        #expect(NATType(reported: String(repeating: "x", count: 10_000)) == .unknown)
    }

    @Test func itIsStoredAsItsRawStringAndReadBackLeniently() throws {
        let encoded = try JSONEncoder().encode([NATType.fullCone, .symmetric])
        #expect(String(decoding: encoded, as: UTF8.self) == #"["full-cone","symmetric"]"#)
        // A state file written from a peer's odd report still loads: the odd value is unknown.
        let decoded = try JSONDecoder().decode([NATType].self, from: Data(#"["open","weird",""]"#.utf8))
        #expect(decoded == [.open, .unknown, .unknown])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(NATType.self, from: Data("42".utf8)) }
    }
}
