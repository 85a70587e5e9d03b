import Foundation

/// One reading of a node's two clocks, taken once per event and passed to the cores.
///
/// Deadlines, timeouts and intervals are measured on `monotonic`, which never steps, so a wall
/// clock set back an hour by NTP or by hand neither stalls the node's timers nor fires them all at
/// once. `wall` is only for what carries a timestamp out of the node or across a restart:
/// credentials and signed records checked against their expiry, messages' sent times, the host
/// cache file.
public struct Moment: Sendable, Hashable, CustomStringConvertible {
    /// Seconds on a clock that only moves forward (`CLOCK_MONOTONIC`); meaningful only as
    /// differences within one run of the node.
    public var monotonic: Double
    /// Seconds since 1970 as the host's clock says; it may jump.
    public var wall: Double

    public init(monotonic: Double, wall: Double) {
        self.monotonic = monotonic
        self.wall = wall
    }

    /// Both clocks reading `seconds` (simulations and tests, whose clocks never step unless told).
    public init(_ seconds: Double) { self.init(monotonic: seconds, wall: seconds) }

    /// The host's clocks now.
    public static func now() -> Moment { Moment(monotonic: monotonicNow(), wall: Date().timeIntervalSince1970) }

    /// The monotonic clock alone, for I/O adapters timing things per packet.
    public static func monotonicNow() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }

    /// The wall time of an earlier monotonic reading, as the wall clock reads now (what a report
    /// leaving the node says for "when this started").
    public func wallTime(at monotonicReading: Double) -> Double { wall - (monotonic - monotonicReading) }

    /// Both clocks `seconds` later.
    public func advanced(by seconds: Double) -> Moment { Moment(monotonic: monotonic + seconds, wall: wall + seconds) }

    public var description: String { "monotonic \(monotonic) s, wall \(wall) s" }
}

extension Moment: ExpressibleByFloatLiteral, ExpressibleByIntegerLiteral {
    public init(floatLiteral value: Double) { self.init(value) }
    public init(integerLiteral value: Int) { self.init(Double(value)) }
}
