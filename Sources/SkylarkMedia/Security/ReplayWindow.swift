/// A sliding anti-replay window over 48-bit packet indices (the scheme of RFC 3711 §3.3.2 and
/// IPsec's RFC 4303 §3.4.3): it remembers the highest index accepted and which of the
/// `size - 1` indices below it were accepted too.
///
/// - an index above the highest is fresh and moves the window up;
/// - an index inside the window is fresh once, then a duplicate;
/// - an index `size` or more below the highest is too old: it can no longer be told apart
///   from a replay, so it is refused. 128 packets is 2.56 s of 20 ms audio, far longer than any
///   packet is worth waiting for (the jitter buffer's ceiling is 200 ms).
///
/// `check` does not change the window and `accept` does: the caller checks, authenticates, and
/// only then accepts, so a forged packet can never move the window.
public struct ReplayWindow: Sendable, Equatable {
    public static let size = 128

    public enum Verdict: Sendable, Equatable {
        case fresh
        case duplicate
        case tooOld
    }

    /// The highest index accepted so far, nil before the first.
    public private(set) var highest: UInt64?
    /// Bit k set ⇔ index `highest - k` was accepted.
    private var seen: UInt128 = 0

    public init() {}

    public func check(_ index: UInt64) -> Verdict {
        guard let highest, index <= highest else { return .fresh }
        let age = highest - index
        guard age < UInt64(Self.size) else { return .tooOld }
        return seen & (UInt128(1) << age) != 0 ? .duplicate : .fresh
    }

    public mutating func accept(_ index: UInt64) {
        guard let current = highest else {
            highest = index
            seen = 1
            return
        }
        if index > current {
            let shift = index - current
            seen = shift >= UInt64(Self.size) ? 1 : seen << shift | 1
            highest = index
        } else if current - index < UInt64(Self.size) {
            seen |= UInt128(1) << (current - index)
        }
    }
}
