import Foundation
import SkylarkCrypto
import SkylarkNode
import SkylarkWire
import Testing

@testable import SkylarkLoginServer

@Suite struct FailureThrottleTests {
    let policy = FailureThrottle.Policy(freeFailures: 2, window: 60, baseDelay: 1, maximumDelay: 8)

    @Test func freeFailuresThenDoublingUpToTheMaximum() {
        var throttle = FailureThrottle(policy: policy)
        throttle.recordFailure("k", now: 0)
        #expect(throttle.retryAfter("k", now: 0) == nil)
        throttle.recordFailure("k", now: 1)
        #expect(throttle.retryAfter("k", now: 1) == nil)

        var delays: [Double?] = []
        for _ in 0..<6 {
            throttle.recordFailure("k", now: 2)
            delays.append(throttle.retryAfter("k", now: 2))
        }
        #expect(delays == [1, 2, 4, 8, 8, 8])
        #expect(throttle.retryAfter("k", now: 9.5) == 0.5)
        #expect(throttle.retryAfter("k", now: 10) == nil)
        #expect(throttle.retryAfter("other", now: 2) == nil, "keys are independent")
    }

    @Test func aQuietWindowStartsOver() {
        var throttle = FailureThrottle(policy: policy)
        throttle.recordFailure("k", now: 0)
        throttle.recordFailure("k", now: 10)
        // 61 s after the last failure: the count starts again, this failure is free.
        throttle.recordFailure("k", now: 71)
        #expect(throttle.retryAfter("k", now: 71) == nil)
        throttle.recordFailure("k", now: 72)
        #expect(throttle.retryAfter("k", now: 72) == nil)
        throttle.recordFailure("k", now: 73)
        #expect(throttle.retryAfter("k", now: 73) == 1)

        // Failures that each come within the window of the previous one keep counting.
        var steady = FailureThrottle(policy: policy)
        steady.recordFailure("k", now: 0)
        steady.recordFailure("k", now: 59)
        steady.recordFailure("k", now: 118)
        #expect(steady.retryAfter("k", now: 118) == 1)
    }

    @Test func successClears() {
        var throttle = FailureThrottle(policy: policy)
        for _ in 0..<5 { throttle.recordFailure("k", now: 0) }
        throttle.recordFailure("j", now: 0)
        #expect(throttle.retryAfter("k", now: 0) == 4)
        #expect(throttle.trackedKeyCount == 2)
        throttle.recordSuccess("k")
        #expect(throttle.retryAfter("k", now: 0) == nil)
        #expect(throttle.trackedKeyCount == 1)
        // The next failures are free again.
        throttle.recordFailure("k", now: 0)
        throttle.recordFailure("k", now: 0)
        #expect(throttle.retryAfter("k", now: 0) == nil)
    }

    @Test func pruningDropsQuietKeysButKeepsBlockedOnes() {
        // Blocks last longer than the window, so a blocked key can be quiet for more than a window.
        let policy = FailureThrottle.Policy(freeFailures: 1, window: 10, baseDelay: 100, maximumDelay: 100)
        var throttle = FailureThrottle(policy: policy, pruneThreshold: 3)
        throttle.recordFailure("quiet", now: 0)  // free, never blocked
        throttle.recordFailure("blocked", now: 0)
        throttle.recordFailure("blocked", now: 0)  // blocked until 100
        throttle.recordFailure("recent", now: 45)
        throttle.recordFailure("recent", now: 45)  // blocked until 145
        #expect(throttle.trackedKeyCount == 3)
        throttle.recordFailure("newest", now: 50)  // 4 keys > 3: prune
        // Exactly one key went: "quiet" (window passed, not blocked). The blocked ones stay.
        #expect(throttle.trackedKeyCount == 3)
        #expect(throttle.retryAfter("blocked", now: 50) == 50, "a blocked key survives pruning although its window passed")
        #expect(throttle.retryAfter("recent", now: 50) == 95)
        // Below the threshold nothing is pruned.
        var roomy = FailureThrottle(policy: policy, pruneThreshold: 10)
        for n in 0..<10 { roomy.recordFailure("k\(n)", now: Double(n) * 100) }
        #expect(roomy.trackedKeyCount == 10)
        roomy.recordFailure("k10", now: 5000)
        #expect(roomy.trackedKeyCount == 1, "every old, unblocked key is dropped once over the threshold")
    }
}

@Suite struct ReplayGuardTests {
    let id = [UInt8](repeating: 0xAB, count: 16)

    @Test func sameIdTwiceIsReplayed() {
        var guardian = ReplayGuard(window: 120)
        #expect(guardian.admit(requestID: id, timestamp: 1000, now: 1000) == .fresh)
        #expect(guardian.admit(requestID: id, timestamp: 1000, now: 1001) == .replayed)
        #expect(guardian.admit(requestID: id, timestamp: 1001, now: 1001) == .replayed, "a new timestamp does not launder an id")
        #expect(guardian.admit(requestID: [UInt8](repeating: 0xAC, count: 16), timestamp: 1001, now: 1001) == .fresh)
        #expect(guardian.rememberedCount == 2)
    }

    @Test func timestampsBeyondTheWindowAreStale() {
        var guardian = ReplayGuard(window: 120)
        #expect(guardian.admit(requestID: [1], timestamp: 1000 - 120.5, now: 1000) == .stale)
        #expect(guardian.admit(requestID: [2], timestamp: 1000 + 120.5, now: 1000) == .stale)
        #expect(guardian.admit(requestID: [3], timestamp: 1000 - 120, now: 1000) == .fresh)
        #expect(guardian.admit(requestID: [4], timestamp: 1000 + 120, now: 1000) == .fresh)
        // A stale request is not remembered: the same id with a good clock is fresh.
        #expect(guardian.admit(requestID: [1], timestamp: 1000, now: 1000) == .fresh)
        // Staleness wins over replay.
        #expect(guardian.admit(requestID: [3], timestamp: 0, now: 1000) == .stale)
    }

    @Test func anIdIsForgottenAfterTwiceTheWindow() {
        var guardian = ReplayGuard(window: 120)
        #expect(guardian.admit(requestID: id, timestamp: 0, now: 0) == .fresh)
        #expect(guardian.admit(requestID: id, timestamp: 239, now: 239) == .replayed)
        #expect(guardian.rememberedCount == 1)
        #expect(guardian.admit(requestID: id, timestamp: 240, now: 240) == .fresh)
        #expect(guardian.admit(requestID: id, timestamp: 241, now: 241) == .replayed)
    }

    @Test func manyIdsAreForgottenAndStillGuardedAfterCompaction() {
        var guardian = ReplayGuard(window: 10)
        let ids = (0..<3000).map { (n: Int) -> [UInt8] in withUnsafeBytes(of: UInt32(n).bigEndian) { Array($0) } }
        let verdicts = ids.enumerated().map { n, id in guardian.admit(requestID: id, timestamp: Double(n) / 1000, now: Double(n) / 1000) }
        #expect(verdicts.allSatisfy { $0 == .fresh })
        #expect(guardian.rememberedCount == 3000)
        // All expire by t = 23; admitting at 25 forgets them (and compacts the queue).
        #expect(guardian.admit(requestID: [9, 9, 9, 9, 9], timestamp: 25, now: 25) == .fresh)
        #expect(guardian.rememberedCount == 1)
        let again = ids.prefix(1500).map { guardian.admit(requestID: $0, timestamp: 26, now: 26) }
        #expect(again.allSatisfy { $0 == .fresh })
        let replays = ids.prefix(1500).map { guardian.admit(requestID: $0, timestamp: 27, now: 27) }
        #expect(replays.allSatisfy { $0 == .replayed })
        #expect(guardian.admit(requestID: [9, 9, 9, 9, 9], timestamp: 27, now: 27) == .replayed)
    }
}

/// The throttles through the whole stack, time passed in.
@Suite struct ThrottledLoginTests {
    static func configuration(name: FailureThrottle.Policy = .perName, address: FailureThrottle.Policy = .perAddress) -> LoginAuthority.Configuration {
        var configuration = cheapConfiguration()
        configuration.nameThrottle = name
        configuration.addressThrottle = address
        return configuration
    }

    static let tight = FailureThrottle.Policy(freeFailures: 2, window: 900, baseDelay: 10, maximumDelay: 160)

    @Test func nameThrottleBlocksEvenTheRightPasswordUntilTheDelayPasses() throws {
        let fixture = try ServerFixture(configuration: Self.configuration(name: Self.tight))
        defer { fixture.remove() }
        try register("trent", password: "trent-password", on: fixture)
        let key = try makeUserKey()
        let t0 = epoch + 50

        // Three wrong passwords, from three addresses: the name is what counts.
        for attempt in 0..<3 {
            let report = try login("trent", password: "guess-\(attempt)-xx", key: key, on: fixture, now: t0, address: "203.0.113.\(attempt)")
            #expect(report.failure == .wrongPassword(name: "trent"), "attempt \(attempt)")
        }
        // Now blocked: the right password at the same `now` is refused without being checked.
        let blocked = try login("trent", password: "trent-password", key: key, on: fixture, now: t0, address: "203.0.113.99")
        guard case let .rateLimited(retryAfter)? = blocked.failure else {
            Issue.record("expected rateLimited, got \(String(describing: blocked.result))")
            return
        }
        #expect(retryAfter >= 10)
        #expect(blocked.failure?.exitCode == 9)
        let stillBlocked = try login("trent", password: "trent-password", key: key, on: fixture, now: t0 + 9.5)
        #expect(stillBlocked.failure == .rateLimited(retryAfter: 1))

        // Past the delay: one more wrong password doubles the block to 20 s.
        #expect(try login("trent", password: "guess-again", key: key, on: fixture, now: t0 + 10.5).failure == .wrongPassword(name: "trent"))
        #expect(try login("trent", password: "trent-password", key: key, on: fixture, now: t0 + 10.5).failure == .rateLimited(retryAfter: 20))

        // Past that, the right password works, and clears the count.
        let ok = try login("trent", password: "trent-password", key: key, on: fixture, now: t0 + 31)
        #expect(ok.credential?.name == "trent", "\(String(describing: ok.result))")
        #expect(try login("trent", password: "wrong-once", key: key, on: fixture, now: t0 + 32).failure == .wrongPassword(name: "trent"))
        #expect(try login("trent", password: "trent-password", key: key, on: fixture, now: t0 + 32).credential != nil)
    }

    @Test func addressThrottleBlocksOtherNamesFromTheSameAddress() throws {
        let fixture = try ServerFixture(configuration: Self.configuration(address: Self.tight))
        defer { fixture.remove() }
        try register("victor", password: "victor-password", on: fixture, address: "198.51.100.1")
        let key = try makeUserKey()
        let attacker = "198.51.100.66"
        let t0 = epoch + 20

        for name in ["walter", "xavier", "yvonne"] {
            #expect(try login(name, password: "anything-at-all", key: key, on: fixture, now: t0, address: attacker).failure == .unknownName(name: name))
        }
        let blocked = try login("victor", password: "victor-password", key: key, on: fixture, now: t0, address: attacker)
        guard case let .rateLimited(retryAfter)? = blocked.failure else {
            Issue.record("expected rateLimited, got \(String(describing: blocked.result))")
            return
        }
        #expect(retryAfter >= 10)
        // Registration from that address is held back too.
        var connection = LoginConnection()
        let registration = try exchange(
            .register(name: "zed", password: "zed-password"), authority: fixture.authority,
            connection: &connection, clientNow: t0, address: attacker)
        #expect(registration.failure == .rateLimited(retryAfter: 10))

        // Another address is not affected, and the blocked one recovers after the delay.
        #expect(try login("victor", password: "victor-password", key: key, on: fixture, now: t0, address: "198.51.100.2").credential != nil)
        #expect(try login("victor", password: "victor-password", key: key, on: fixture, now: t0 + 11, address: attacker).credential != nil)
    }

    @Test func takenNamesCountAgainstTheAddress() throws {
        let fixture = try ServerFixture(configuration: Self.configuration(address: Self.tight))
        defer { fixture.remove() }
        try register("uma", password: "uma-password", on: fixture, address: "192.0.2.1")
        let prober = "192.0.2.2"
        for _ in 0..<3 {
            #expect(try register("uma", password: "uma-password", on: fixture, now: epoch, address: prober).failure == .nameTaken(name: "uma"))
        }
        #expect(try register("ursula", password: "ursula-password", on: fixture, now: epoch, address: prober).failure == .rateLimited(retryAfter: 10))
        #expect(try register("ursula", password: "ursula-password", on: fixture, now: epoch, address: "192.0.2.3").outcome == .registered(name: "ursula"))
    }
}
