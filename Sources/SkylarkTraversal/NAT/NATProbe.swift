import SkylarkWire

/// Classifies this node's NAT (RFC 3489 style) with the help of two supernodes. Sans-I/O: the
/// adapter performs the actions it polls, feeds back what arrives, and calls `handleTimeout(now:)`
/// at `pollTimeout()`.
///
/// Tests (each request is retransmitted every `retransmitInterval` seconds, with the same
/// transaction id, `attempts` times in all; a test fails `attempts × retransmitInterval` seconds
/// after it started without an answer):
///
/// - **I**: Binding request to the primary supernode, which reports our mapped address M1.
///   No answer: `.udpBlocked`.
/// - **II**: the primary asks *another* supernode to send a probe to M1 (a new address and port
///   this node never sent to).
/// - **III**: Binding request to the secondary supernode, which reports M2.
/// - **IV**: the primary answers from its alternate UDP port (same address, new port).
///
/// Classification:
/// - M1 is one of the local addresses (no translation): II arrives → `.open`; otherwise
///   `.portRestricted` — a stateful firewall that only lets answers in filters exactly like a
///   port-restricted NAT, and that is what decides how calls connect.
/// - M1 is translated: II arrives → `.fullCone`. Otherwise M2 ≠ M1 → `.symmetric`; otherwise
///   IV arrives → `.restricted`, else `.portRestricted`.
/// - With no secondary supernode (or one that does not answer III) there is no second mapping to
///   compare, so a symmetric NAT cannot be told from a port-restricted one; the result is then
///   `.portRestricted` (or `.restricted` when IV arrives), the safe side for hole punching.
///
/// II and IV start as soon as I has answered; III only once II has failed. Sending to the
/// secondary earlier would open our own NAT to it — and the secondary may be the very supernode
/// that sends II's probe, which would then pass and make a port-restricted NAT look full-cone.
/// So on a working network the answer comes one round trip after I for open and full-cone, and
/// one test duration (1.5 s with the defaults) plus a round trip after I for the others.
///
/// Answers with unknown transaction ids, and answers to tests already decided, are ignored.
public struct NATProbe: Sendable {
    public enum Action: Equatable, Sendable {
        /// Send a plain STUN Binding request with this transaction id.
        case sendBinding(to: HostPort, transactionID: [UInt8])
        /// Ask the supernode `via` to have ANOTHER supernode send a probe carrying
        /// `transactionID` to `replyTo` (our mapped address).
        case requestReplyFromOtherNode(via: HostPort, transactionID: [UInt8], replyTo: HostPort)
        /// Ask the supernode `via` to send a probe carrying `transactionID` to `replyTo` from its
        /// alternate UDP port.
        case requestReplyFromOtherPort(via: HostPort, transactionID: [UInt8], replyTo: HostPort)
    }

    /// One test: its request, when it started, how many times it was sent, how it ended.
    private struct Trial: Sendable {
        enum Outcome: Sendable, Equatable {
            case pending
            case answered(mapped: HostPort?)
            case failed
        }

        let transactionID: [UInt8]
        var action: Action?
        var startedAt = 0.0
        var sends = 0
        var outcome = Outcome.pending

        var isRunning: Bool { action != nil && outcome == .pending }
    }

    private enum Test: Int, CaseIterable {
        case mapping = 0, otherNode, secondMapping, otherPort
    }

    private enum State: Sendable {
        case idle
        case probing
        case finished(NATType)
    }

    public let localAddresses: [HostPort]
    public let primary: HostPort
    public let secondary: HostPort?
    public let retransmitInterval: Double
    public let attempts: Int

    private var state = State.idle
    private var trials: [Trial]
    private var pendingActions: [Action] = []

    /// `transactionIDs` must yield four distinct 12-byte ids, one per test (retransmissions reuse
    /// their test's id, as STUN requires). `attempts` ≥ 1, `retransmitInterval` > 0.
    public init(
        localAddresses: [HostPort], primary: HostPort, secondary: HostPort?,
        retransmitInterval: Double = 0.25, attempts: Int = 6,
        transactionIDs: some IteratorProtocol<[UInt8]>
    ) {
        precondition(attempts >= 1, "at least one attempt")
        precondition(retransmitInterval > 0, "the retransmit interval must be positive")
        var source = transactionIDs
        var ids: [[UInt8]] = []
        for _ in Test.allCases {
            guard let id = source.next(), id.count == STUNMessage.transactionIDLength, !ids.contains(id) else {
                preconditionFailure("NATProbe needs four distinct 12-byte transaction ids")
            }
            ids.append(id)
        }
        self.localAddresses = localAddresses
        self.primary = primary
        self.secondary = secondary
        self.retransmitInterval = retransmitInterval
        self.attempts = attempts
        self.trials = ids.map { Trial(transactionID: $0) }
    }

    /// Draws the four transaction ids from `generator`.
    public init(
        localAddresses: [HostPort], primary: HostPort, secondary: HostPort?,
        retransmitInterval: Double = 0.25, attempts: Int = 6,
        using generator: inout some RandomNumberGenerator
    ) {
        var ids: [[UInt8]] = []
        while ids.count < Test.allCases.count {
            let id = STUNMessage.randomTransactionID(using: &generator)
            if !ids.contains(id) { ids.append(id) }
        }
        self.init(
            localAddresses: localAddresses, primary: primary, secondary: secondary,
            retransmitInterval: retransmitInterval, attempts: attempts, transactionIDs: ids.makeIterator())
    }

    // MARK: - Outputs

    /// The classification; nil until finished.
    public var result: NATType? {
        if case let .finished(type) = state { return type }
        return nil
    }

    public var isFinished: Bool { result != nil }

    /// Our address as the primary supernode saw it (test I), once known: what peers should use.
    public var mappedAddress: HostPort? {
        if case let .answered(mapped) = trials[Test.mapping.rawValue].outcome { return mapped }
        return nil
    }

    /// The next action to perform, in order; nil when there is none for now.
    public mutating func poll() -> Action? {
        pendingActions.isEmpty ? nil : pendingActions.removeFirst()
    }

    /// When `handleTimeout(now:)` must be called next; nil before `start` and once finished.
    public func pollTimeout() -> Double? {
        guard case .probing = state else { return nil }
        return trials.filter(\.isRunning).map(nextEvent).min()
    }

    // MARK: - Inputs

    public mutating func start(now: Double) {
        guard case .idle = state else { return }
        state = .probing
        begin(.mapping, .sendBinding(to: primary, transactionID: trials[Test.mapping.rawValue].transactionID), now: now)
    }

    /// Retransmits requests that are due and fails tests whose time is up.
    public mutating func handleTimeout(now: Double) {
        guard case .probing = state else { return }
        for test in Test.allCases where trials[test.rawValue].isRunning {
            var trial = trials[test.rawValue]
            guard now >= nextEvent(trial) else { continue }
            if now >= trial.startedAt + Double(attempts) * retransmitInterval {
                trial.outcome = .failed
            } else {
                // One send however late the call; skip the slots that were missed.
                while trial.sends < attempts, trial.startedAt + Double(trial.sends) * retransmitInterval <= now {
                    trial.sends += 1
                }
                pendingActions.append(trial.action!)
            }
            trials[test.rawValue] = trial
        }
        decide(now: now)
    }

    /// A Binding success response arrived (the adapter decoded it and read XOR-MAPPED-ADDRESS).
    /// A response carrying the id of test II or IV counts as that probe arriving.
    public mutating func handleBindingResponse(transactionID: [UInt8], mappedAddress: HostPort, now: Double) {
        guard case .probing = state, let test = runningTest(transactionID) else { return }
        switch test {
        case .mapping, .secondMapping: trials[test.rawValue].outcome = .answered(mapped: mappedAddress)
        case .otherNode, .otherPort: trials[test.rawValue].outcome = .answered(mapped: nil)
        }
        decide(now: now)
    }

    /// A probe from the other supernode (test II) or the other port (test IV) arrived.
    public mutating func handleProbeArrived(transactionID: [UInt8], now: Double) {
        guard case .probing = state, let test = runningTest(transactionID),
            test == .otherNode || test == .otherPort
        else { return }
        trials[test.rawValue].outcome = .answered(mapped: nil)
        decide(now: now)
    }

    // MARK: - Internals

    private func runningTest(_ transactionID: [UInt8]) -> Test? {
        Test.allCases.first { trials[$0.rawValue].transactionID == transactionID && trials[$0.rawValue].isRunning }
    }

    /// The next retransmission, or the deadline after the last one.
    private func nextEvent(_ trial: Trial) -> Double {
        trial.startedAt + Double(trial.sends) * retransmitInterval
    }

    private mutating func begin(_ test: Test, _ action: Action, now: Double) {
        trials[test.rawValue].action = action
        trials[test.rawValue].startedAt = now
        trials[test.rawValue].sends = 1
        pendingActions.append(action)
    }

    /// Starts the tests the outcomes so far call for, and finishes when the tree has an answer.
    private mutating func decide(now: Double) {
        switch trials[Test.mapping.rawValue].outcome {
        case .pending: return
        case .failed: return finish(.udpBlocked)
        case .answered(let mapped):
            let m1 = mapped!  // test I always answers with an address
            let translated = !localAddresses.contains { Self.sameAddress($0, m1) }
            if trials[Test.otherNode.rawValue].action == nil { startFollowUps(mapped: m1, translated: translated, now: now) }
            let otherNode = trials[Test.otherNode.rawValue].outcome
            if !translated {
                switch otherNode {
                case .pending: return
                case .answered: return finish(.open)
                case .failed: return finish(.portRestricted)
                }
            }
            switch otherNode {
            case .pending: return
            case .answered: return finish(.fullCone)
            case .failed: break
            }
            if let secondary, trials[Test.secondMapping.rawValue].action == nil {
                begin(.secondMapping, .sendBinding(to: secondary, transactionID: trials[Test.secondMapping.rawValue].transactionID), now: now)
                return
            }
            switch trials[Test.secondMapping.rawValue].outcome {
            case .pending where trials[Test.secondMapping.rawValue].action != nil: return
            case .answered(let m2?) where !Self.sameAddress(m2, m1): return finish(.symmetric)
            default: break  // same mapping, or no secondary / no answer: cannot tell symmetric
            }
            switch trials[Test.otherPort.rawValue].outcome {
            case .pending: return
            case .answered: return finish(.restricted)
            case .failed: return finish(.portRestricted)
            }
        }
    }

    private mutating func startFollowUps(mapped m1: HostPort, translated: Bool, now: Double) {
        begin(
            .otherNode,
            .requestReplyFromOtherNode(
                via: primary, transactionID: trials[Test.otherNode.rawValue].transactionID, replyTo: m1), now: now)
        guard translated else { return }  // no NAT: only the filtering is left to find out
        begin(
            .otherPort,
            .requestReplyFromOtherPort(
                via: primary, transactionID: trials[Test.otherPort.rawValue].transactionID, replyTo: m1), now: now)
    }

    private mutating func finish(_ type: NATType) {
        state = .finished(type)
        pendingActions.removeAll()  // retransmissions queued for tests that no longer matter
    }

    /// Same port and same address, comparing numeric addresses by value ("::1" == "0:0::1").
    static func sameAddress(_ a: HostPort, _ b: HostPort) -> Bool {
        guard a.port == b.port else { return false }
        if let x = IPAddressText.bytes(of: a.host), let y = IPAddressText.bytes(of: b.host) { return x == y }
        return a.host.lowercased() == b.host.lowercased()
    }
}
