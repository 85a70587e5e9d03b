import SkylarkCrypto
import SkylarkWire

/// A 160-bit identifier in the DHT's XOR metric space: node ids (from credentials, never chosen
/// freely) and record keys (hashes of names) share it.
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let byteCount = 20
    public static let bitCount = 160

    /// Big-endian, split into words so XOR and comparison are cheap.
    public let high: UInt64
    public let middle: UInt64
    public let low: UInt32

    public init(high: UInt64, middle: UInt64, low: UInt32) {
        self.high = high
        self.middle = middle
        self.low = low
    }

    /// The first 20 bytes of `bytes`, zero-padded if shorter.
    public init<Bytes: Collection<UInt8>>(bytes: Bytes) {
        var padded = Array(bytes.prefix(Self.byteCount))
        if padded.count < Self.byteCount { padded += [UInt8](repeating: 0, count: Self.byteCount - padded.count) }
        func word(_ range: Range<Int>) -> UInt64 { padded[range].reduce(0) { $0 << 8 | UInt64($1) } }
        high = word(0..<8)
        middle = word(8..<16)
        low = UInt32(word(16..<20))
    }

    /// The DHT key under which a user's presence and mailbox live.
    public static func key(forName canonicalName: String, domain: String) -> NodeID {
        NodeID(bytes: SHA256.hash(Array("skylark-\(domain)-v1:".utf8) + Array(canonicalName.utf8)))
    }

    public static func presenceKey(for name: String) -> NodeID { key(forName: name, domain: "presence") }
    public static func mailboxKey(for name: String) -> NodeID { key(forName: name, domain: "mailbox") }

    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Self.byteCount)
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: high >> UInt64(shift))) }
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: middle >> UInt64(shift))) }
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: low >> UInt32(shift))) }
        return out
    }

    public func distance(to other: NodeID) -> NodeID {
        NodeID(high: high ^ other.high, middle: middle ^ other.middle, low: low ^ other.low)
    }

    /// Number of leading zero bits (160 for zero): the shared prefix length of two ids when
    /// applied to their distance.
    public var leadingZeroBitCount: Int {
        if high != 0 { return high.leadingZeroBitCount }
        if middle != 0 { return 64 + middle.leadingZeroBitCount }
        return 128 + low.leadingZeroBitCount
    }

    public static func < (lhs: NodeID, rhs: NodeID) -> Bool {
        (lhs.high, lhs.middle, lhs.low) < (rhs.high, rhs.middle, rhs.low)
    }

    /// An id at exactly `prefix` shared leading bits with `self`, the rest from `random`: used
    /// to refresh a routing-table bucket.
    public func randomID(sharingPrefix prefix: Int, random: (high: UInt64, middle: UInt64, low: UInt32)) -> NodeID {
        precondition((0..<Self.bitCount).contains(prefix))
        // Keep `prefix` bits of self, flip the next one, randomise the rest.
        let randomWord = NodeID(high: random.high, middle: random.middle, low: random.low)
        let keepMask = Self.mask(leadingOnes: prefix)
        let flipBit = Self.mask(leadingOnes: prefix + 1).distance(to: keepMask)
        func pick(_ a: UInt64, _ b: UInt64, _ keep: UInt64, _ flip: UInt64) -> UInt64 { (a & keep) | (b & ~keep & ~flip) | ((a ^ flip) & flip) }
        func pick32(_ a: UInt32, _ b: UInt32, _ keep: UInt32, _ flip: UInt32) -> UInt32 { (a & keep) | (b & ~keep & ~flip) | ((a ^ flip) & flip) }
        return NodeID(
            high: pick(high, randomWord.high, keepMask.high, flipBit.high),
            middle: pick(middle, randomWord.middle, keepMask.middle, flipBit.middle),
            low: pick32(low, randomWord.low, keepMask.low, flipBit.low))
    }

    static func mask(leadingOnes count: Int) -> NodeID {
        func ones64(_ n: Int) -> UInt64 { n <= 0 ? 0 : n >= 64 ? .max : ~(UInt64.max >> UInt64(n)) }
        func ones32(_ n: Int) -> UInt32 { n <= 0 ? 0 : n >= 32 ? .max : ~(UInt32.max >> UInt32(n)) }
        return NodeID(high: ones64(count), middle: ones64(count - 64), low: ones32(count - 128))
    }

    public var hex: String { bytes.hexString }
    public var description: String { String(hex.prefix(12)) }
}
