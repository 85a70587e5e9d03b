import Foundation
import SkylarkCrypto
import Testing

@testable import SkylarkOverlay

@Suite("NodeID")
struct NodeIDTests {
    /// The id with only bit `index` set (bit 0 is the most significant).
    func bit(_ index: Int) -> NodeID {
        var bytes = [UInt8](repeating: 0, count: NodeID.byteCount)
        bytes[index / 8] = 0x80 >> UInt8(index % 8)
        return NodeID(bytes: bytes)
    }

    @Test("Bytes round-trip, big-endian, through the three words")
    func bytesRoundTrip() {
        var random = SplitMix64(seed: 1)
        for _ in 0..<200 {
            let bytes = random.bytes(NodeID.byteCount)
            let id = NodeID(bytes: bytes)
            #expect(id.bytes == bytes)
            #expect(NodeID(high: id.high, middle: id.middle, low: id.low) == id)
        }
        let counting = NodeID(bytes: Array(1...20))
        #expect(counting.high == 0x0102_0304_0506_0708)
        #expect(counting.middle == 0x090A_0B0C_0D0E_0F10)
        #expect(counting.low == 0x1112_1314)
        #expect(counting.hex == "0102030405060708090a0b0c0d0e0f1011121314")
        #expect(counting.description == "010203040506")
    }

    @Test("Short input is zero-padded, long input truncated to 20 bytes")
    func padding() {
        #expect(NodeID(bytes: [0xAB]).bytes == [0xAB] + [UInt8](repeating: 0, count: 19))
        #expect(NodeID(bytes: [UInt8]()).bytes == [UInt8](repeating: 0, count: 20))
        let long = Array(0..<32) as [UInt8]
        #expect(NodeID(bytes: long).bytes == Array(long.prefix(20)))
        #expect(NodeID(bytes: SHA256.hash([1, 2, 3])) == NodeID(bytes: SHA256.hash([1, 2, 3]).prefix(20)))
    }

    @Test("Distance is XOR: symmetric, zero to self, and composes")
    func distance() {
        var random = SplitMix64(seed: 2)
        let zero = NodeID(bytes: [UInt8]())
        for _ in 0..<200 {
            let a = random.nodeID(), b = random.nodeID(), c = random.nodeID()
            #expect(a.distance(to: b) == b.distance(to: a))
            #expect(a.distance(to: a) == zero)
            #expect(a.distance(to: zero) == a)
            #expect(a.distance(to: b).distance(to: b.distance(to: c)) == a.distance(to: c))
            #expect(a.distance(to: b).bytes == zip(a.bytes, b.bytes).map { $0 ^ $1 })
            if a != b { #expect(a.distance(to: b) != zero) }
        }
    }

    @Test("leadingZeroBitCount counts across the three words")
    func leadingZeros() {
        #expect(NodeID(bytes: [UInt8]()).leadingZeroBitCount == 160)
        for index in 0..<NodeID.bitCount {
            #expect(bit(index).leadingZeroBitCount == index, "bit \(index)")
            // Lower bits set too do not change it.
            let withTail = NodeID(
                high: bit(index).high | (index < 63 ? 1 : 0), middle: bit(index).middle | (index < 127 ? 1 : 0),
                low: bit(index).low | (index < 159 ? 1 : 0))
            #expect(withTail.leadingZeroBitCount == index, "bit \(index) with tail")
        }
        // Shared prefix of two ids.
        let a = NodeID(bytes: [0b1010_0000])
        let b = NodeID(bytes: [0b1011_0000])
        #expect(a.distance(to: b).leadingZeroBitCount == 3)
    }

    @Test("Ordering is the big-endian byte order")
    func ordering() {
        var random = SplitMix64(seed: 3)
        for _ in 0..<300 {
            let a = random.nodeID()
            // Often share a prefix so that later words decide.
            let b =
                Int.random(in: 0..<3, using: &random) == 0
                ? a.randomID(
                    sharingPrefix: Int(random.next() % 160),
                    random: (random.next(), random.next(), UInt32(truncatingIfNeeded: random.next())))
                : random.nodeID()
            #expect((a < b) == a.bytes.lexicographicallyPrecedes(b.bytes))
            #expect((b < a) == b.bytes.lexicographicallyPrecedes(a.bytes))
            #expect(!(a < a))
        }
        #expect(bit(159) < bit(158))
        #expect(bit(127) < bit(64))
        #expect(bit(63) < bit(0))
        let sorted = (0..<160).map(bit).sorted()
        #expect(sorted == (0..<160).reversed().map(bit))
    }

    @Test("randomID(sharingPrefix:) shares exactly that many leading bits, for every prefix")
    func randomIDPrefix() {
        var random = SplitMix64(seed: 4)
        for _ in 0..<8 {
            let own = random.nodeID()
            for prefix in 0..<NodeID.bitCount {
                let words = (random.next(), random.next(), UInt32(truncatingIfNeeded: random.next()))
                let id = own.randomID(sharingPrefix: prefix, random: words)
                #expect(own.distance(to: id).leadingZeroBitCount == prefix, "prefix \(prefix)")
                // Edge randoms: all zeros and all ones.
                for edge in [(UInt64(0), UInt64(0), UInt32(0)), (UInt64.max, UInt64.max, UInt32.max)] {
                    #expect(own.distance(to: own.randomID(sharingPrefix: prefix, random: edge)).leadingZeroBitCount == prefix)
                }
            }
        }
        // The bits after the prefix really come from `random`.
        let own = NodeID(bytes: [UInt8]())
        let id = own.randomID(sharingPrefix: 8, random: (0x00FF_FFFF_FFFF_FFFF, 0, 0))
        #expect(id.bytes.prefix(8) == [0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        #expect(id.leadingZeroBitCount == 8)
    }

    @Test("Presence and mailbox keys are distinct, stable hashes of the name")
    func keys() {
        #expect(NodeID.presenceKey(for: "alice") == NodeID.presenceKey(for: "alice"))
        #expect(NodeID.presenceKey(for: "alice") != NodeID.mailboxKey(for: "alice"))
        #expect(NodeID.presenceKey(for: "alice") != NodeID.presenceKey(for: "bob"))
        #expect(NodeID.presenceKey(for: "alice").bytes == Array(SHA256.hash(Array("skylark-presence-v1:alice".utf8)).prefix(20)))
        #expect(NodeID.mailboxKey(for: "bob").bytes == Array(SHA256.hash(Array("skylark-mailbox-v1:bob".utf8)).prefix(20)))
    }
}
