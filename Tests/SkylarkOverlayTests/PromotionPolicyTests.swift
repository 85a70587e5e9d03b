import Testing

@testable import SkylarkOverlay

@Suite("PromotionPolicy")
struct PromotionPolicyTests {
    typealias Policy = PromotionPolicy
    let roomy = Policy.Capacity(cores: 4, idleCPU: 0.9, upstreamBandwidth: 1_000_000)

    func reachable(_ at: Double) -> Policy.Evidence { .init(tcpReachable: true, udpReachable: true, at: at) }

    func auto(startedAt: Double = 0) -> Policy {
        var policy = Policy(configuration: .init(mode: .auto), startedAt: startedAt)
        policy.record(roomy)
        return policy
    }

    @Test("always is a supernode and never a client, whatever the evidence")
    func alwaysAndNever() {
        var always = Policy(configuration: .init(mode: .always), startedAt: 0)
        var never = Policy(configuration: .init(mode: .never), startedAt: 0)
        #expect(always.role == .supernode)
        #expect(never.role == .client)
        for step in 0..<20 {
            let now = Double(step) * 100
            let evidence = Policy.Evidence(tcpReachable: step % 2 == 0, udpReachable: true, at: now)
            always.record(evidence)
            never.record(evidence)
            never.record(roomy)
            #expect(always.evaluate(now: now) == .init(role: .supernode, changed: false, reason: "configured always"))
            #expect(never.evaluate(now: now) == .init(role: .client, changed: false, reason: "configured never"))
        }
    }

    @Test("Promotion needs the uptime and consecutive TCP+UDP successes")
    func promotion() {
        var policy = auto(startedAt: 1000)
        #expect(policy.evaluate(now: 1005).reason.contains("waiting: no dial-back yet"))
        policy.record(reachable(1010))
        policy.record(reachable(1015))
        let early = policy.evaluate(now: 1020)
        #expect(early == .init(role: .client, changed: false, reason: "waiting: uptime 20 s of 60 s"))

        let promoted = policy.evaluate(now: 1075)
        #expect(promoted == .init(role: .supernode, changed: true, reason: "public TCP and UDP confirmed by 2 dial-backs, uptime 75 s"))
        #expect(policy.role == .supernode)
        #expect(policy.evaluate(now: 1080).changed == false)
    }

    @Test("Successes must be consecutive and cover both TCP and UDP")
    func consecutiveSuccesses() {
        var policy = auto()
        policy.record(reachable(100))
        #expect(policy.evaluate(now: 101).reason == "waiting: 1 of 2 dial-backs confirmed public TCP and UDP")
        policy.record(.init(tcpReachable: false, udpReachable: true, at: 110))
        #expect(policy.evaluate(now: 111) == .init(role: .client, changed: false, reason: "not reachable: TCP dial-back failed"))
        policy.record(reachable(120))
        #expect(policy.evaluate(now: 121).role == .client, "success, failure, success is not two in a row")
        policy.record(.init(tcpReachable: true, udpReachable: false, at: 130))
        #expect(policy.evaluate(now: 131).reason == "not reachable: UDP dial-back failed")
        policy.record(.init(tcpReachable: false, udpReachable: false, at: 140))
        #expect(policy.evaluate(now: 141).reason == "not reachable: TCP and UDP dial-backs failed")
        policy.record(reachable(150))
        policy.record(reachable(160))
        #expect(policy.evaluate(now: 161).changed)
    }

    @Test("Evidence arriving out of order is placed by its time")
    func outOfOrderEvidence() {
        var policy = auto()
        policy.record(reachable(100))
        policy.record(reachable(110))
        policy.record(.init(tcpReachable: false, udpReachable: true, at: 90))  // an old result, late
        #expect(policy.evaluate(now: 120).role == .supernode)
    }

    @Test("Capacity below a threshold blocks promotion and says which")
    func capacityBlocks() {
        var config = Policy.Configuration(mode: .auto)
        config.minimumCores = 2
        config.minimumBandwidth = 500_000
        var policy = Policy(configuration: config, startedAt: 0)
        policy.record(reachable(100))
        policy.record(reachable(110))
        #expect(policy.evaluate(now: 120).reason.contains("CPU capacity not measured"))

        policy.record(Policy.Capacity(cores: 1, idleCPU: 0.9, upstreamBandwidth: 1_000_000))
        var decision = policy.evaluate(now: 130)
        #expect(decision.role == .client)
        #expect(decision.reason == "not enough capacity: 1 core, 2 needed")

        policy.record(Policy.Capacity(cores: 8, idleCPU: 0.3, upstreamBandwidth: 1_000_000))
        decision = policy.evaluate(now: 140)
        #expect(decision.reason == "not enough capacity: idle CPU 30 %, 50 % needed")

        policy.record(Policy.Capacity(cores: 8, idleCPU: 0.9, upstreamBandwidth: 100_000))
        #expect(policy.evaluate(now: 150).reason == "not enough capacity: upstream 100000 B/s, 500000 B/s needed")

        policy.record(Policy.Capacity(cores: 8, idleCPU: 0.9, upstreamBandwidth: nil))
        #expect(policy.evaluate(now: 160).reason == "waiting: upstream bandwidth not measured yet")

        policy.record(Policy.Capacity(cores: 8, idleCPU: 0.9, upstreamBandwidth: 600_000))
        #expect(policy.evaluate(now: 170).changed)
    }

    @Test("Several blockers are all named")
    func severalBlockers() {
        var policy = Policy(configuration: .init(mode: .auto), startedAt: 0)
        policy.record(Policy.Capacity(cores: 1, idleCPU: 0.1))
        policy.record(.init(tcpReachable: false, udpReachable: true, at: 5))
        let reason = policy.evaluate(now: 10).reason
        #expect(reason == "waiting: uptime 10 s of 60 s; not enough capacity: idle CPU 10 %, 50 % needed; not reachable: TCP dial-back failed")
    }

    @Test("Demotion after consecutive failures, once the window has passed")
    func demotion() {
        var policy = auto()
        policy.record(reachable(60))
        policy.record(reachable(65))
        #expect(policy.evaluate(now: 70).changed)

        policy.record(.init(tcpReachable: false, udpReachable: true, at: 100))
        #expect(policy.evaluate(now: 101) == .init(role: .supernode, changed: false, reason: "supernode: 1 dial-back failed, demoting after 2"))
        policy.record(.init(tcpReachable: false, udpReachable: true, at: 110))
        let held = policy.evaluate(now: 110)
        #expect(held.role == .supernode)
        #expect(held.reason.hasPrefix("holding role: last change 40 s ago, window 600 s"))
        #expect(held.reason.contains("TCP dial-back failed"))

        let demoted = policy.evaluate(now: 670)
        #expect(demoted.role == .client)
        #expect(demoted.changed)
        #expect(demoted.reason == "not reachable: TCP dial-back failed (2 dial-backs in a row)")

        // And back: the window applies to the promotion as well.
        policy.record(reachable(700))
        policy.record(reachable(710))
        #expect(policy.evaluate(now: 720).reason == "holding role: last change 50 s ago, window 600 s; ready to promote")
        #expect(policy.evaluate(now: 1270).changed)
    }

    @Test("A supernode whose capacity drops is demoted")
    func capacityDemotes() {
        var policy = auto()
        policy.record(reachable(60))
        policy.record(reachable(65))
        #expect(policy.evaluate(now: 70).role == .supernode)
        policy.record(Policy.Capacity(cores: 4, idleCPU: 0.05))
        let decision = policy.evaluate(now: 700)
        #expect(decision == .init(role: .client, changed: true, reason: "not enough capacity: idle CPU 5 %, 50 % needed"))
    }

    /// Runs an hour of dial-backs every 5 s, evaluating after each; returns when the role changed.
    func flap(_ pattern: [Bool]) -> [Double] {
        var policy = auto()
        var changes: [Double] = []
        var step = 0
        for second in stride(from: 0.0, through: 3600, by: 5) {
            let ok = pattern[step % pattern.count]
            step += 1
            policy.record(.init(tcpReachable: ok, udpReachable: ok, at: second))
            if policy.evaluate(now: second).changed { changes.append(second) }
        }
        return changes
    }

    @Test("A flapping link changes the role at most once per window")
    func flapping() {
        // Strict alternation never gives two successes in a row: no promotion at all.
        #expect(flap([true, false]).isEmpty)

        // Two up, two down: each pair alone would flip the role; hysteresis spaces the flips.
        let changes = flap([true, true, false, false])
        #expect(changes.count >= 2, "the policy does act, just not at every flap")
        #expect(changes.count <= 7)
        for (earlier, later) in zip(changes, changes.dropFirst()) {
            #expect(later - earlier >= 600)
        }
    }
}
