import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire
import Testing

@testable import SkylarkNode

/// Reachability on its own: when a node asks for dial-backs, what counts as reached, when it
/// promotes itself, and the dial-backs a supernode does for others.
@Suite struct ReachabilityTests {
    static let interval = 30.0

    static func monitor(_ mode: PromotionPolicy.Mode, minimumUptime: Double = 0) -> ReachabilityMonitor {
        var configuration = PromotionPolicy.Configuration(mode: mode)
        configuration.minimumUptime = minimumUptime
        return ReachabilityMonitor(configuration: configuration, interval: interval, startedAt: 0)
    }

    /// Runs one check that reaches what it is told to, answered at `at + 0.1`.
    static func check(_ monitor: inout ReachabilityMonitor, at now: Double, tcp: Bool, udp: Bool) -> PromotionPolicy.Decision? {
        #expect(monitor.isCheckDue(now: now))
        let nonce: [UInt8] = [UInt8(now.truncatingRemainder(dividingBy: 256))] + [1, 2, 3]
        monitor.started(nonce: nonce, now: now)
        #expect(!monitor.isCheckDue(now: now + 100), "one check at a time")
        monitor.tcpReached(nonce: [9, 9, 9])
        monitor.udpReached(nonce: [9, 9, 9])
        if tcp { monitor.tcpReached(nonce: nonce) }
        if udp { monitor.udpReached(nonce: nonce) }
        monitor.answered(now: now + 0.1)
        #expect(!monitor.isCheckOver(now: now + 0.5), "stray probes get half a second after the answer")
        #expect(monitor.isCheckOver(now: now + 0.6))
        return monitor.finish(now: now + 0.6, idleCPU: 0.9, cores: 2)?.decision
    }

    @Test func autoModePromotesAfterTwoConfirmedDialBacksAndNotOnProbesForAnotherCheck() {
        var monitor = Self.monitor(.auto)
        #expect(monitor.loggedIn(now: 10) == nil)
        #expect(!monitor.isCheckDue(now: 11.9), "the supernode link settles first")
        let first = Self.check(&monitor, at: 12, tcp: true, udp: false)
        #expect(first?.changed == false, "UDP was not reached: \(first?.reason ?? "-")")
        #expect(monitor.policy.failedChecksInARow == 1)
        #expect(!monitor.isCheckDue(now: 12.6 + Self.interval - 1), "next check an interval later")
        let second = Self.check(&monitor, at: 12.6 + Self.interval, tcp: true, udp: true)
        #expect(second?.changed == false, "one confirmation is not enough")
        let third = Self.check(&monitor, at: 13.2 + 2 * Self.interval, tcp: true, udp: true)
        #expect(third?.changed == true && third?.role == .supernode, "\(third?.reason ?? "-")")
        #expect(monitor.reason == third?.reason)
    }

    @Test func aCheckWithoutAnswerTimesOutAsUnreachable() {
        var monitor = Self.monitor(.auto)
        _ = monitor.loggedIn(now: 0)
        monitor.couldNotStart(now: 2)
        #expect(!monitor.isCheckDue(now: 2 + Self.interval - 0.1), "nobody to ask: wait an interval")
        monitor.started(nonce: [1], now: 40)
        monitor.tcpReached(nonce: [1])
        #expect(!monitor.isCheckOver(now: 48))
        #expect(monitor.isCheckOver(now: 48.1))
        let ended = monitor.finish(now: 48.1, idleCPU: nil, cores: 2)
        #expect(ended?.check.tcpReached == true && ended?.check.udpReached == false)
        #expect(monitor.policy.failedChecksInARow == 1)
        #expect(monitor.finish(now: 49, idleCPU: nil, cores: 2) == nil, "a check ends once")
    }

    @Test func fixedModesNeverCheck() {
        var never = Self.monitor(.never)
        #expect(never.loggedIn(now: 0) == nil)
        #expect(never.reason == "configured never")
        #expect(!never.isCheckDue(now: 1000))
        var always = Self.monitor(.always)
        let decision = always.loggedIn(now: 0)
        #expect(decision?.role == .supernode, "always: a supernode from the start")
        #expect(!always.isCheckDue(now: 1000))
    }

    @Test func dialBacksForOthersReportOnceWhenADialGetsThroughAllEndOrTimeRunsOut() {
        var duty = DialBackDuty()
        #expect(duty.started(token: 1, links: [10, 11], udpSent: true, now: 0) == nil)
        #expect(duty.linkEnded(token: 1, link: 10, reached: true) == DialBackDuty.Result(token: 1, tcpReached: true, udpSent: true))
        #expect(duty.linkEnded(token: 1, link: 11, reached: false) == nil, "reported once")

        #expect(duty.started(token: 2, links: [20, 21], udpSent: false, now: 0) == nil)
        #expect(duty.linkEnded(token: 2, link: 20, reached: false) == nil)
        #expect(duty.linkEnded(token: 2, link: 21, reached: false) == DialBackDuty.Result(token: 2, tcpReached: false, udpSent: false))

        #expect(duty.started(token: 3, links: [], udpSent: true, now: 0) == DialBackDuty.Result(token: 3, tcpReached: false, udpSent: true))
        #expect(duty.started(token: 4, links: [40], udpSent: true, now: 0) == nil)
        #expect(duty.expire(now: DialBackDuty.timeout - 0.1).isEmpty)
        #expect(duty.expire(now: DialBackDuty.timeout) == [DialBackDuty.Result(token: 4, tcpReached: false, udpSent: true)])
        #expect(duty.count == 0)
    }
}

/// When the node classifies its NAT again, and what a result changes; how often a lone
/// supernode dials seeds.
@Suite struct NATMonitorAndSeedTests {
    /// A probe nobody answers: UDP blocked after its retransmissions.
    static func unansweredProbe(now: Double) -> NATProbe {
        var probe = NATProbe(
            localAddresses: [HostPort(host: "192.168.1.10", port: 7100)], primary: HostPort(host: "203.0.113.1", port: 7100), secondary: nil,
            transactionIDs: (1...8).map { [UInt8](repeating: 0, count: 11) + [UInt8($0)] }.makeIterator())
        probe.start(now: now)
        while probe.poll() != nil {}
        return probe
    }

    @Test func theNATIsClassifiedSoonAfterAttachingAndAgainEveryInterval() throws {
        var monitor = NATMonitor(recheckInterval: 300)
        #expect(!monitor.isCheckDue(now: 1_000), "nothing to ask before a supernode")
        monitor.attached(observed: HostPort(host: "198.51.100.4", port: 40_000), now: 10)
        #expect(monitor.observedEndpoint == HostPort(host: "198.51.100.4", port: 40_000))
        #expect(!monitor.isCheckDue(now: 10.1) && monitor.isCheckDue(now: 10.2))
        monitor.checking(now: 10.2)
        #expect(!monitor.isCheckDue(now: 10.2 + NATMonitor.retryAfter - 0.1), "a check that could not start waits")

        monitor.start(Self.unansweredProbe(now: 11))
        #expect(!monitor.isCheckDue(now: 1_000), "one probe at a time")
        #expect(monitor.finished(now: 12) == nil, "no result yet")
        monitor.probe?.handleTimeout(now: 30)
        let result = monitor.finished(now: 30)
        let first = try #require(result)
        #expect(first.natType == .udpBlocked && first.changed)
        #expect(monitor.natType == .udpBlocked && monitor.probe == nil)
        #expect(!monitor.isCheckDue(now: 329) && monitor.isCheckDue(now: 330), "again after the recheck interval")

        monitor.start(Self.unansweredProbe(now: 330))
        monitor.probe?.handleTimeout(now: 350)
        #expect(monitor.finished(now: 350)?.changed == false, "the same answer is no change")
    }

    @Test func aLoneSupernodeDialsSeedsBackingOffToThirtySeconds() {
        var seeds = SeedSchedule()
        var attempts: [Double] = []
        var now = 0.0
        while now < 120 {
            if seeds.isAttemptDue(now: now, knowsPeers: false) { attempts.append(now) }
            now += 0.5
        }
        #expect(attempts.prefix(7) == [0, 1, 3, 7, 15, 31, 61], "\(attempts)")
        #expect(attempts.last == 91, "then every 30 s: \(attempts)")

        seeds.dialing(1)
        let whileDialling = seeds.isAttemptDue(now: 1_000, knowsPeers: false)
        #expect(!whileDialling, "not while a seed dial is out")
        seeds.dialEnded(1)
        let knowingPeers = seeds.isAttemptDue(now: 1_000, knowsPeers: true)
        #expect(!knowingPeers, "a supernode that knows peers does not dial seeds")
        let alone = seeds.isAttemptDue(now: 1_000, knowsPeers: false)
        let soonAfter = seeds.isAttemptDue(now: 1_001, knowsPeers: false)
        #expect(alone && soonAfter, "alone again, it starts over from a one-second backoff")
    }
}
