/// Slows down repeated failures for one key (a user name, or a client address). Sans-I/O: the
/// caller passes the time in, in seconds.
///
/// Policy: the first `freeFailures` failures within `window` cost nothing; each failure after
/// that blocks the key for `baseDelay`, doubling per further failure up to `maximumDelay`. A key
/// with no failure for `window` seconds starts over; a success clears it.
public struct FailureThrottle: Sendable {
    public struct Policy: Sendable, Equatable {
        public var freeFailures: Int
        public var window: Double
        public var baseDelay: Double
        public var maximumDelay: Double

        public init(freeFailures: Int, window: Double, baseDelay: Double, maximumDelay: Double) {
            self.freeFailures = freeFailures
            self.window = window
            self.baseDelay = baseDelay
            self.maximumDelay = maximumDelay
        }

        /// 5 free failures per 15 minutes, then 1 s, 2 s, 4 s … up to 15 minutes.
        public static let perName = Policy(freeFailures: 5, window: 900, baseDelay: 1, maximumDelay: 900)
        /// One address may serve many users (NAT), so it gets more room: 20 free failures.
        public static let perAddress = Policy(freeFailures: 20, window: 900, baseDelay: 1, maximumDelay: 900)
    }

    private struct Entry {
        var failures: Int
        var lastFailure: Double
        var blockedUntil: Double
    }

    public let policy: Policy
    /// Beyond this many tracked keys, entries whose window has passed are dropped.
    private let pruneThreshold: Int
    private var entries: [String: Entry] = [:]

    public init(policy: Policy, pruneThreshold: Int = 100_000) {
        self.policy = policy
        self.pruneThreshold = pruneThreshold
    }

    /// Seconds to wait before `key` may try again, or nil if it may try now.
    public func retryAfter(_ key: String, now: Double) -> Double? {
        guard let entry = entries[key], entry.blockedUntil > now else { return nil }
        return entry.blockedUntil - now
    }

    public mutating func recordFailure(_ key: String, now: Double) {
        var entry = entries[key] ?? Entry(failures: 0, lastFailure: now, blockedUntil: 0)
        if now - entry.lastFailure > policy.window { entry = Entry(failures: 0, lastFailure: now, blockedUntil: 0) }
        entry.failures += 1
        entry.lastFailure = now
        let excess = entry.failures - policy.freeFailures
        if excess > 0 {
            let delay = min(policy.maximumDelay, policy.baseDelay * Double(1 << min(excess - 1, 30)))
            entry.blockedUntil = now + delay
        }
        entries[key] = entry
        if entries.count > pruneThreshold { prune(now: now) }
    }

    public mutating func recordSuccess(_ key: String) {
        entries[key] = nil
    }

    public var trackedKeyCount: Int { entries.count }

    private mutating func prune(now: Double) {
        let window = policy.window
        entries = entries.filter { now - $0.value.lastFailure <= window || $0.value.blockedUntil > now }
    }
}
