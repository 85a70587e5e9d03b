import SkylarkOverlay

/// Whether this node can be reached from outside, and so whether it should serve as a
/// supernode: in auto mode it asks for a dial-back of its advertised TCP and UDP addresses
/// every `interval` (through its supernode, or through a DHT peer once it is one), records what
/// came back as evidence, and lets the promotion policy decide, with the CPU's idle share as
/// capacity.
///
/// Sans-I/O: the reactor says when a check could be sent (`isCheckDue`, `started`), feeds in
/// what arrives (`tcpReached`, `udpReached`, `answered`) and the CPU sample it reads, and acts
/// on the decisions that come out.
struct ReachabilityMonitor {
    /// One dial-back check of our own addresses.
    struct Check: Equatable {
        var nonce: [UInt8]
        var startedAt: Double
        var tcpReached = false
        var udpReached = false
        var answeredAt: Double?
    }

    /// How long after the helper's answer stray probes may still arrive.
    static let settleTime = 0.5
    /// A check with no answer gives up after this long (counted as unreachable).
    static let checkTimeout = 8.0
    /// The first check after logging in, in seconds (the supernode link settles first).
    static let firstCheckDelay = 2.0

    let interval: Double
    private(set) var policy: PromotionPolicy
    /// Why the node has the role it has, for `status`.
    private(set) var reason = "starting"
    private(set) var check: Check?
    private(set) var nextCheck: Double = .infinity

    var mode: PromotionPolicy.Mode { policy.configuration.mode }

    init(configuration: PromotionPolicy.Configuration, interval: Double, startedAt: Double) {
        self.interval = interval
        self.policy = PromotionPolicy(configuration: configuration, startedAt: startedAt)
    }

    /// Logged in: auto mode starts checking; `always` decides at once (the caller promotes).
    mutating func loggedIn(now: Double) -> PromotionPolicy.Decision? {
        switch mode {
        case .auto:
            nextCheck = now + Self.firstCheckDelay
            return nil
        case .never:
            reason = "configured never"
            return nil
        case .always:
            let decision = policy.evaluate(now: now)
            reason = decision.reason
            return decision
        }
    }

    /// A new check should be sent now (none in flight, auto mode, its time has come).
    func isCheckDue(now: Double) -> Bool { mode == .auto && check == nil && now >= nextCheck }

    /// The check in flight has its answer (and the probes time to arrive), or has timed out.
    func isCheckOver(now: Double) -> Bool {
        guard let check, mode == .auto else { return false }
        if let answered = check.answeredAt { return now - answered >= Self.settleTime }
        return now - check.startedAt > Self.checkTimeout
    }

    /// A check went out with `nonce`.
    mutating func started(nonce: [UInt8], now: Double) {
        check = Check(nonce: nonce, startedAt: now)
    }

    /// No check could go out (no supernode yet, no peer, no address): try again next interval.
    mutating func couldNotStart(now: Double) {
        nextCheck = now + interval
    }

    /// A dial-back link with this nonce reached our TCP listener.
    mutating func tcpReached(nonce: [UInt8]) {
        if check?.nonce == nonce { check?.tcpReached = true }
    }

    /// A dial-back probe with this nonce reached our UDP port.
    mutating func udpReached(nonce: [UInt8]) {
        if check?.nonce == nonce { check?.udpReached = true }
    }

    /// The helper says it has dialled us back.
    mutating func answered(now: Double) {
        check?.answeredAt = now
    }

    /// Ends the check in flight and asks the policy, with the CPU's idle share if it was read.
    /// Returns the decision (nil if no check was in flight); the caller acts if it `changed`.
    mutating func finish(now: Double, idleCPU: Double?, cores: Int) -> (check: Check, decision: PromotionPolicy.Decision)? {
        guard let check else { return nil }
        self.check = nil
        nextCheck = now + interval
        policy.record(PromotionPolicy.Evidence(tcpReachable: check.tcpReached, udpReachable: check.udpReached, at: now))
        if let idleCPU { policy.record(PromotionPolicy.Capacity(cores: cores, idleCPU: idleCPU)) }
        let decision = policy.evaluate(now: now)
        reason = decision.reason
        return (check, decision)
    }
}
