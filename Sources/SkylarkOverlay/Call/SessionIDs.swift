import SkylarkCrypto

/// An id of random bytes, shown (and typed, `skylark answer ID`) as hex; `Kind` keeps ids of
/// different things apart in the type system.
public struct HexID<Kind>: Hashable, Comparable, Sendable, CustomStringConvertible {
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

public enum CallIDKind {}
public enum ConferenceIDKind {}

/// A call's id: chosen by the caller, carried in every signal and path check.
public typealias CallID = HexID<CallIDKind>
/// A conference's id: chosen by its initiator.
public typealias ConferenceID = HexID<ConferenceIDKind>

extension CallSession {
    public var id: CallID { CallID(callID) }
}

extension ConferenceSession {
    public var id: ConferenceID { ConferenceID(conferenceID) }
}
