import SkylarkCrypto

/// A call's id: random bytes chosen by the caller, carried in every signal and path check, and
/// shown (and typed, `skylark answer ID`) as hex.
public struct CallID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// From its hex form; nil when the text is not hex.
    public init?(hex: String) {
        guard let bytes = [UInt8](hexString: hex) else { return nil }
        self.bytes = bytes
    }

    public var hex: String { bytes.hexString }
    public var description: String { hex }

    /// The order of their hex forms.
    public static func < (a: Self, b: Self) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}

/// A conference's id: random bytes chosen by its initiator, shown as hex.
public struct ConferenceID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public init?(hex: String) {
        guard let bytes = [UInt8](hexString: hex) else { return nil }
        self.bytes = bytes
    }

    public var hex: String { bytes.hexString }
    public var description: String { hex }

    /// The order of their hex forms.
    public static func < (a: Self, b: Self) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}

extension CallSession {
    public var id: CallID { CallID(callID) }
}

extension ConferenceSession {
    public var id: ConferenceID { ConferenceID(conferenceID) }
}
