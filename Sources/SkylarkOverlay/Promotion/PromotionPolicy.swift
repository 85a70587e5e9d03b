/// Decides whether this node serves as a supernode (`--supernode auto|never|always`). Sans-I/O:
/// the adapter records dial-back results and capacity measurements, and calls `evaluate(now:)`
/// (seconds, the same clock as `startedAt`) to learn the role and a reason for `skylark status`.
///
/// Rules:
/// - `always`: supernode from the start; `never`: client forever. Evidence is recorded but ignored.
/// - `auto` starts as a client and promotes when all of these hold:
///   - uptime ≥ `minimumUptime` (a node that just started may be about to leave again);
///   - capacity is measured and meets the thresholds (cores, idle CPU fraction, and upstream
///     bandwidth when `minimumBandwidth` > 0);
///   - the last `requiredSuccesses` dial-backs from other supernodes all reached BOTH TCP and UDP
///     (a supernode must accept connections and datagrams from anyone).
/// - `auto` demotes after `requiredFailures` consecutive failed dial-backs (one that misses TCP or
///   UDP counts as failed) or when measured capacity drops below the thresholds.
/// - Hysteresis: after a role change, the role is held for `roleChangeInterval` seconds whatever
///   the evidence, so a flapping link changes the role at most once per window. The first
///   promotion is allowed as soon as the conditions hold.
public struct PromotionPolicy: Sendable {
    public enum Mode: String, Sendable, Codable, CaseIterable {
        case auto, never, always
    }

    public enum Role: String, Sendable, Codable {
        case client, supernode
    }

    public struct Configuration: Sendable, Equatable {
        public var mode: Mode
        /// Seconds since start before a promotion.
        public var minimumUptime: Double = 60
        /// Consecutive dial-backs reaching both TCP and UDP needed to promote.
        public var requiredSuccesses = 2
        /// Consecutive failed dial-backs needed to demote (at least 1).
        public var requiredFailures = 2
        /// At most one role change per this many seconds.
        public var roleChangeInterval: Double = 600
        public var minimumCores = 1
        /// Fraction of CPU time idle, 0...1.
        public var minimumIdleCPU = 0.5
        /// Bytes per second upstream; 0 means not checked.
        public var minimumBandwidth: Double = 0

        public init(mode: Mode) {
            self.mode = mode
        }
    }

    /// One dial-back result: whether another supernode could reach our public TCP and UDP ports.
    public struct Evidence: Sendable, Equatable {
        public var tcpReachable: Bool
        public var udpReachable: Bool
        public var at: Double

        public init(tcpReachable: Bool, udpReachable: Bool, at: Double) {
            self.tcpReachable = tcpReachable
            self.udpReachable = udpReachable
            self.at = at
        }

        public var reachedBoth: Bool { tcpReachable && udpReachable }
    }

    public struct Capacity: Sendable, Equatable {
        public var cores: Int
        /// Fraction of CPU time idle, 0...1.
        public var idleCPU: Double
        /// Bytes per second, when measured.
        public var upstreamBandwidth: Double?

        public init(cores: Int, idleCPU: Double, upstreamBandwidth: Double? = nil) {
            self.cores = cores
            self.idleCPU = idleCPU
            self.upstreamBandwidth = upstreamBandwidth
        }
    }

    public struct Decision: Sendable, Equatable {
        public var role: Role
        /// The role changed in this evaluation.
        public var changed: Bool
        /// A short sentence for `skylark status`.
        public var reason: String

        public init(role: Role, changed: Bool, reason: String) {
            self.role = role
            self.changed = changed
            self.reason = reason
        }
    }

    public let configuration: Configuration
    public let startedAt: Double
    public private(set) var role: Role
    /// When the role last changed; nil if it never has.
    public private(set) var lastRoleChange: Double?
    public private(set) var capacity: Capacity?
    /// The latest dial-backs, oldest first, only as many as the rules look at.
    private var recentEvidence: [Evidence] = []

    public init(configuration: Configuration, startedAt: Double) {
        self.configuration = configuration
        self.startedAt = startedAt
        self.role = configuration.mode == .always ? .supernode : .client
    }

    public mutating func record(_ evidence: Evidence) {
        // Kept in time order even if results come back out of order.
        let index = recentEvidence.lastIndex { $0.at <= evidence.at }.map { $0 + 1 } ?? 0
        recentEvidence.insert(evidence, at: index)
        let keep = max(1, configuration.requiredSuccesses, requiredFailures)
        if recentEvidence.count > keep { recentEvidence.removeFirst(recentEvidence.count - keep) }
    }

    public mutating func record(_ capacity: Capacity) {
        self.capacity = capacity
    }

    public mutating func evaluate(now: Double) -> Decision {
        switch configuration.mode {
        case .always: return Decision(role: .supernode, changed: false, reason: "configured always")
        case .never: return Decision(role: .client, changed: false, reason: "configured never")
        case .auto: break
        }
        let uptime = now - startedAt
        switch role {
        case .client:
            let blockers = promotionBlockers(uptime: uptime)
            guard blockers.isEmpty else {
                return Decision(role: .client, changed: false, reason: blockers.joined(separator: "; "))
            }
            if let holding = holdingReason(now: now) {
                return Decision(role: .client, changed: false, reason: holding + "; ready to promote")
            }
            change(to: .supernode, now: now)
            let confirmations = configuration.requiredSuccesses
            return Decision(
                role: .supernode, changed: true,
                reason: "public TCP and UDP confirmed by \(confirmations) dial-back\(confirmations == 1 ? "" : "s"), uptime \(Self.seconds(uptime)) s")

        case .supernode:
            let triggers = demotionTriggers()
            guard triggers.isEmpty else {
                let why = triggers.joined(separator: "; ")
                if let holding = holdingReason(now: now) {
                    return Decision(role: .supernode, changed: false, reason: holding + "; would demote: " + why)
                }
                change(to: .client, now: now)
                return Decision(role: .client, changed: true, reason: why)
            }
            let failures = trailingFailures
            if failures > 0 {
                return Decision(
                    role: .supernode, changed: false,
                    reason: "supernode: \(failures) dial-back\(failures == 1 ? "" : "s") failed, demoting after \(requiredFailures)")
            }
            return Decision(role: .supernode, changed: false, reason: "supernode: public TCP and UDP confirmed, uptime \(Self.seconds(uptime)) s")
        }
    }

    // MARK: - Internals

    private var requiredFailures: Int { max(1, configuration.requiredFailures) }

    private var trailingSuccesses: Int { recentEvidence.reversed().prefix { $0.reachedBoth }.count }

    private var trailingFailures: Int { recentEvidence.reversed().prefix { !$0.reachedBoth }.count }

    /// Dial-back checks that failed in a row, most recent last (counted up to the number the
    /// policy keeps: at least `requiredSuccesses` and `requiredFailures`).
    public var failedChecksInARow: Int { trailingFailures }

    private mutating func change(to newRole: Role, now: Double) {
        role = newRole
        lastRoleChange = now
    }

    private func holdingReason(now: Double) -> String? {
        guard let last = lastRoleChange, now - last < configuration.roleChangeInterval else { return nil }
        return "holding role: last change \(Self.seconds(now - last)) s ago, window \(Self.seconds(configuration.roleChangeInterval)) s"
    }

    /// Everything that stops a promotion now, each as a short phrase.
    private func promotionBlockers(uptime: Double) -> [String] {
        var blockers: [String] = []
        if uptime < configuration.minimumUptime {
            blockers.append("waiting: uptime \(Self.seconds(uptime)) s of \(Self.seconds(configuration.minimumUptime)) s")
        }
        if let capacity {
            blockers += capacityShortfalls(capacity)
            if configuration.minimumBandwidth > 0, capacity.upstreamBandwidth == nil {
                blockers.append("waiting: upstream bandwidth not measured yet")
            }
        } else {
            blockers.append("waiting: CPU capacity not measured yet")
        }
        if let last = recentEvidence.last, !last.reachedBoth {
            blockers.append("not reachable: " + Self.describeFailure(last))
        } else if trailingSuccesses < configuration.requiredSuccesses {
            blockers.append(
                trailingSuccesses == 0
                    ? "waiting: no dial-back yet"
                    : "waiting: \(trailingSuccesses) of \(configuration.requiredSuccesses) dial-backs confirmed public TCP and UDP")
        }
        return blockers
    }

    /// What forces a supernode back to client.
    private func demotionTriggers() -> [String] {
        var triggers: [String] = []
        if trailingFailures >= requiredFailures, let last = recentEvidence.last {
            triggers.append("not reachable: \(Self.describeFailure(last)) (\(trailingFailures) dial-backs in a row)")
        }
        if let capacity { triggers += capacityShortfalls(capacity) }
        return triggers
    }

    private func capacityShortfalls(_ capacity: Capacity) -> [String] {
        var shortfalls: [String] = []
        if capacity.cores < configuration.minimumCores {
            shortfalls.append("not enough capacity: \(capacity.cores) core\(capacity.cores == 1 ? "" : "s"), \(configuration.minimumCores) needed")
        }
        if capacity.idleCPU < configuration.minimumIdleCPU {
            shortfalls.append("not enough capacity: idle CPU \(Self.percent(capacity.idleCPU)) %, \(Self.percent(configuration.minimumIdleCPU)) % needed")
        }
        if configuration.minimumBandwidth > 0, let bandwidth = capacity.upstreamBandwidth, bandwidth < configuration.minimumBandwidth {
            shortfalls.append("not enough capacity: upstream \(Self.seconds(bandwidth)) B/s, \(Self.seconds(configuration.minimumBandwidth)) B/s needed")
        }
        return shortfalls
    }

    private static func describeFailure(_ evidence: Evidence) -> String {
        switch (evidence.tcpReachable, evidence.udpReachable) {
        case (false, false): return "TCP and UDP dial-backs failed"
        case (false, true): return "TCP dial-back failed"
        default: return "UDP dial-back failed"
        }
    }

    /// Whole units, rounded down, for display.
    private static func seconds(_ value: Double) -> Int {
        value.isFinite ? Int(max(min(value, 1e15), -1e15).rounded(.down)) : 0
    }

    private static func percent(_ fraction: Double) -> Int {
        fraction.isFinite ? Int((max(min(fraction, 1e6), -1e6) * 100).rounded()) : 0
    }
}
