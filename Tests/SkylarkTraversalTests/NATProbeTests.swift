import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkTraversal

/// A small network in memory: one node behind a NAT (or none), two supernodes, the primary's
/// alternate port, and a third supernode that sends test II's probe. Actions go in, timed
/// deliveries come out.
struct FakeNetwork {
    enum Kind: CaseIterable {
        case open, fullCone, restricted, portRestricted, symmetric, udpBlocked
        /// No translation, but a stateful firewall that only lets answers in.
        case firewall
    }

    enum Delivery: Equatable {
        case bindingResponse(transactionID: [UInt8], mapped: HostPort)
        case probe(transactionID: [UInt8])
    }

    static let primary = HostPort(host: "203.0.113.1", port: 3478)
    static let primaryAlternatePort = HostPort(host: "203.0.113.1", port: 3479)
    static let secondary = HostPort(host: "203.0.113.2", port: 3478)
    static let otherNode = HostPort(host: "203.0.113.9", port: 3478)
    static let privateAddress = HostPort(host: "10.0.0.2", port: 5000)
    static let publicIP = "198.51.100.7"

    let kind: Kind
    /// One-way latency, seconds.
    var latency = 0.02
    /// Datagrams to lose before delivering any (counted over everything sent).
    var lose = 0
    /// When set, the secondary supernode never answers.
    var secondaryDown = false
    private var contacted: Set<HostPort> = []
    private var symmetricMappings: [HostPort: HostPort] = [:]

    init(_ kind: Kind) { self.kind = kind }

    var localAddress: HostPort {
        kind == .open || kind == .firewall ? HostPort(host: Self.publicIP, port: 5000) : Self.privateAddress
    }

    /// The public address the node's datagrams to `destination` leave from.
    private mutating func mapping(to destination: HostPort) -> HostPort {
        switch kind {
        case .open, .firewall: return localAddress
        case .symmetric:
            if let known = symmetricMappings[destination] { return known }
            let fresh = HostPort(host: Self.publicIP, port: 40000 + symmetricMappings.count)
            symmetricMappings[destination] = fresh
            return fresh
        default: return HostPort(host: Self.publicIP, port: 40000)
        }
    }

    /// Whether a datagram from `source` to one of our public mappings gets in.
    private func admits(_ source: HostPort) -> Bool {
        switch kind {
        case .open, .fullCone: return true
        case .restricted: return contacted.contains { $0.host == source.host }
        case .portRestricted, .symmetric, .firewall: return contacted.contains(source)
        case .udpBlocked: return false
        }
    }

    private mutating func lost() -> Bool {
        guard lose > 0 else { return false }
        lose -= 1
        return true
    }

    mutating func perform(_ action: NATProbe.Action, now: Double) -> [(at: Double, delivery: Delivery)] {
        switch action {
        case let .sendBinding(destination, id):
            guard kind != .udpBlocked, !lost() else { return [] }
            if destination == Self.secondary, secondaryDown { return [] }
            contacted.insert(destination)
            let mapped = mapping(to: destination)
            guard admits(destination), !lost() else { return [] }
            return [(now + 2 * latency, .bindingResponse(transactionID: id, mapped: mapped))]
        case let .requestReplyFromOtherNode(via, id, replyTo):
            return probe(from: Self.otherNode, via: via, id: id, to: replyTo, now: now)
        case let .requestReplyFromOtherPort(via, id, replyTo):
            return probe(from: Self.primaryAlternatePort, via: via, id: id, to: replyTo, now: now)
        }
    }

    /// The request travels to the primary (over the node's link to it), which has `source` send
    /// a probe to `replyTo`; it arrives if `replyTo` is one of our mappings and the NAT admits it.
    private mutating func probe(from source: HostPort, via: HostPort, id: [UInt8], to replyTo: HostPort, now: Double) -> [(at: Double, delivery: Delivery)] {
        guard via == Self.primary, kind != .udpBlocked, !lost() else { return [] }
        let ours =
            replyTo == localAddress || replyTo == HostPort(host: Self.publicIP, port: 40000)
            || symmetricMappings.values.contains(replyTo)
        guard ours, admits(source), !lost() else { return [] }
        return [(now + 3 * latency, .probe(transactionID: id))]
    }
}

/// Sequential ids 1, 2, 3, 4 (each 12 bytes), so that tests can name them.
func transactionID(_ number: UInt8) -> [UInt8] { [UInt8](repeating: 0, count: 11) + [number] }

struct ProbeRun {
    var result: NATType?
    var finishedAt: Double
    var actions: [NATProbe.Action]
}

/// Drives a probe against `network` on a virtual clock until it finishes.
func runProbe(_ network: FakeNetwork, withSecondary: Bool = true) -> ProbeRun {
    var network = network
    var probe = NATProbe(
        localAddresses: [network.localAddress, HostPort(host: "127.0.0.1", port: 5000)],
        primary: FakeNetwork.primary, secondary: withSecondary ? FakeNetwork.secondary : nil,
        transactionIDs: (1...4).map(transactionID).makeIterator())
    var now = 0.0
    var actions: [NATProbe.Action] = []
    var inFlight: [(at: Double, delivery: FakeNetwork.Delivery)] = []
    probe.start(now: now)
    while probe.result == nil {
        while let action = probe.poll() {
            actions.append(action)
            inFlight += network.perform(action, now: now)
        }
        guard let timeout = probe.pollTimeout() else {
            Issue.record("pollTimeout is nil while the probe is unfinished")
            break
        }
        #expect(timeout >= now, "timeouts never point into the past")
        if let next = inFlight.indices.min(by: { inFlight[$0].at < inFlight[$1].at }), inFlight[next].at <= timeout {
            let (at, delivery) = inFlight.remove(at: next)
            now = at
            switch delivery {
            case let .bindingResponse(id, mapped): probe.handleBindingResponse(transactionID: id, mappedAddress: mapped, now: now)
            case let .probe(id): probe.handleProbeArrived(transactionID: id, now: now)
            }
        } else {
            now = timeout
            probe.handleTimeout(now: now)
        }
        if now > 60 {
            Issue.record("the probe did not finish in a minute of virtual time")
            break
        }
    }
    #expect(probe.pollTimeout() == nil)
    #expect(probe.poll() == nil)
    return ProbeRun(result: probe.result, finishedAt: now, actions: actions)
}

@Suite("NATProbe")
struct NATProbeTests {
    @Test(
        "Every kind of network is classified, and quickly",
        arguments: [
            (FakeNetwork.Kind.open, NATType.open),
            (.fullCone, .fullCone),
            (.restricted, .restricted),
            (.portRestricted, .portRestricted),
            (.symmetric, .symmetric),
            (.udpBlocked, .udpBlocked),
            (.firewall, .portRestricted),
        ])
    func classification(kind: FakeNetwork.Kind, expected: NATType) {
        let run = runProbe(FakeNetwork(kind))
        #expect(run.result == expected)
        switch expected {
        case .open, .fullCone: #expect(run.finishedAt < 0.5, "one round trip after test I")
        case .udpBlocked: #expect(run.finishedAt == 1.5, "six sends 0.25 s apart, then give up")
        default: #expect(run.finishedAt < 1.7, "test II's 1.5 s after test I")
        }
    }

    @Test("No NAT: only test II follows test I")
    func openRunsOnlyTestII() {
        let run = runProbe(FakeNetwork(.open))
        #expect(
            run.actions == [
                .sendBinding(to: FakeNetwork.primary, transactionID: transactionID(1)),
                .requestReplyFromOtherNode(via: FakeNetwork.primary, transactionID: transactionID(2), replyTo: FakeNetwork(.open).localAddress),
            ])
    }

    @Test("Behind a NAT, II and IV start together; III (to the secondary) only after II failed")
    func followUpsInOrder() {
        let run = runProbe(FakeNetwork(.portRestricted))
        let mapped = HostPort(host: FakeNetwork.publicIP, port: 40000)
        #expect(
            Array(run.actions.prefix(3)) == [
                .sendBinding(to: FakeNetwork.primary, transactionID: transactionID(1)),
                .requestReplyFromOtherNode(via: FakeNetwork.primary, transactionID: transactionID(2), replyTo: mapped),
                .requestReplyFromOtherPort(via: FakeNetwork.primary, transactionID: transactionID(4), replyTo: mapped),
            ])
        // Sending to the secondary earlier would open our NAT to a supernode that may be the one
        // sending II's probe: the secondary is contacted only after every II attempt went out.
        let secondaryAt = run.actions.firstIndex { if case .sendBinding(to: FakeNetwork.secondary, _) = $0 { true } else { false } }
        let lastOtherNode = run.actions.lastIndex { if case .requestReplyFromOtherNode = $0 { true } else { false } }
        #expect(secondaryAt != nil && lastOtherNode != nil && secondaryAt! > lastOtherNode!)
    }

    @Test("Without a secondary supernode a symmetric NAT reads as port-restricted; restricted is still found")
    func noSecondary() {
        #expect(runProbe(FakeNetwork(.symmetric), withSecondary: false).result == .portRestricted)
        #expect(runProbe(FakeNetwork(.restricted), withSecondary: false).result == .restricted)
        #expect(runProbe(FakeNetwork(.fullCone), withSecondary: false).result == .fullCone)
        let run = runProbe(FakeNetwork(.portRestricted), withSecondary: false)
        #expect(run.result == .portRestricted)
        #expect(!run.actions.contains { if case .sendBinding(to: FakeNetwork.secondary, _) = $0 { true } else { false } })
    }

    @Test("A secondary that never answers counts as no secondary")
    func deadSecondary() {
        var network = FakeNetwork(.symmetric)
        network.secondaryDown = true
        #expect(runProbe(network).result == .portRestricted)
        var restricted = FakeNetwork(.restricted)
        restricted.secondaryDown = true
        #expect(runProbe(restricted).result == .restricted)
    }

    @Test("Lost first packets are recovered by retransmission, with the same transaction id")
    func retransmission() {
        for kind in [FakeNetwork.Kind.fullCone, .symmetric, .open] {
            var network = FakeNetwork(kind)
            network.lose = 2
            let run = runProbe(network)
            #expect(run.result == runProbe(FakeNetwork(kind)).result)
            let testI = run.actions.filter { $0 == .sendBinding(to: FakeNetwork.primary, transactionID: transactionID(1)) }
            #expect(testI.count >= 2, "test I was sent again")
            #expect(run.finishedAt < 2.5, "two lost sends cost two retransmit intervals")
        }
    }

    @Test("UDP blocked: six sends at 0, 0.25 … 1.25 s, then the verdict at 1.5 s")
    func retransmitSchedule() throws {
        var probe = NATProbe(
            localAddresses: [FakeNetwork.privateAddress], primary: FakeNetwork.primary, secondary: FakeNetwork.secondary,
            transactionIDs: (1...4).map(transactionID).makeIterator())
        probe.start(now: 100)
        var sendTimes: [Double] = []
        var now = 100.0
        while probe.result == nil {
            while probe.poll() != nil { sendTimes.append(now) }
            now = try #require(probe.pollTimeout())
            probe.handleTimeout(now: now)
        }
        #expect(sendTimes == [100, 100.25, 100.5, 100.75, 101, 101.25])
        #expect(now == 101.5)
        #expect(probe.result == .udpBlocked)
    }

    @Test("A late timeout sends once, skips the missed slots, and still fails on time")
    func lateTimeout() {
        var probe = NATProbe(
            localAddresses: [FakeNetwork.privateAddress], primary: FakeNetwork.primary, secondary: nil,
            transactionIDs: (1...4).map(transactionID).makeIterator())
        probe.start(now: 0)
        _ = probe.poll()
        probe.handleTimeout(now: 0.9)
        #expect(probe.poll() != nil)
        #expect(probe.poll() == nil, "one send, not three")
        #expect(probe.pollTimeout() == 1.0)
        probe.handleTimeout(now: 7)
        #expect(probe.result == .udpBlocked)
    }

    @Test("Unknown, duplicate and misdirected answers are ignored")
    func ignoresStrayAnswers() {
        var probe = NATProbe(
            localAddresses: [FakeNetwork.privateAddress], primary: FakeNetwork.primary, secondary: FakeNetwork.secondary,
            transactionIDs: (1...4).map(transactionID).makeIterator())
        #expect(probe.pollTimeout() == nil, "nothing to time before start")
        probe.start(now: 0)
        #expect(probe.poll() == .sendBinding(to: FakeNetwork.primary, transactionID: transactionID(1)))

        let mapped = HostPort(host: FakeNetwork.publicIP, port: 40000)
        probe.handleBindingResponse(transactionID: transactionID(9), mappedAddress: mapped, now: 0.01)
        probe.handleProbeArrived(transactionID: transactionID(1), now: 0.01)  // test I is not a probe
        probe.handleProbeArrived(transactionID: transactionID(2), now: 0.01)  // test II not started yet
        #expect(probe.poll() == nil)
        #expect(probe.mappedAddress == nil)
        #expect(probe.result == nil)
        #expect(probe.pollTimeout() == 0.25)

        probe.handleBindingResponse(transactionID: transactionID(1), mappedAddress: mapped, now: 0.04)
        #expect(probe.mappedAddress == mapped)
        var started: [NATProbe.Action] = []
        while let action = probe.poll() { started.append(action) }
        #expect(started.count == 2, "II and IV; III waits for II")

        // A late duplicate of test I with another address changes nothing.
        probe.handleBindingResponse(transactionID: transactionID(1), mappedAddress: HostPort(host: "192.0.2.99", port: 1), now: 0.05)
        #expect(probe.mappedAddress == mapped)
        #expect(probe.poll() == nil)

        // An early answer for test III (not started yet) is ignored. Test IV arrives; test II is
        // still pending, so no verdict yet.
        probe.handleBindingResponse(transactionID: transactionID(3), mappedAddress: mapped, now: 0.08)
        probe.handleProbeArrived(transactionID: transactionID(4), now: 0.1)
        probe.handleProbeArrived(transactionID: transactionID(4), now: 0.11)
        #expect(probe.result == nil)
        #expect(probe.pollTimeout() != nil)

        // Test II times out; test III then goes out and finds the same mapping: restricted.
        while probe.result == nil, let timeout = probe.pollTimeout() {
            probe.handleTimeout(now: timeout)
            while let action = probe.poll() {
                if case .sendBinding(FakeNetwork.secondary, let id) = action {
                    probe.handleBindingResponse(transactionID: id, mappedAddress: mapped, now: timeout + 0.01)
                }
            }
        }
        #expect(probe.result == .restricted)
        #expect(probe.pollTimeout() == nil)

        // After the verdict, nothing moves it.
        probe.handleProbeArrived(transactionID: transactionID(2), now: 5)
        probe.handleTimeout(now: 10)
        #expect(probe.result == .restricted)
        #expect(probe.poll() == nil)
    }

    @Test("A Binding response carrying test II's id counts as test II's probe")
    func bindingResponseAsProbe() {
        var probe = NATProbe(
            localAddresses: [FakeNetwork.privateAddress], primary: FakeNetwork.primary, secondary: nil,
            transactionIDs: (1...4).map(transactionID).makeIterator())
        probe.start(now: 0)
        probe.handleBindingResponse(transactionID: transactionID(1), mappedAddress: HostPort(host: FakeNetwork.publicIP, port: 40000), now: 0.04)
        probe.handleBindingResponse(transactionID: transactionID(2), mappedAddress: HostPort(host: "203.0.113.9", port: 1), now: 0.1)
        #expect(probe.result == .fullCone)
    }

    @Test("Mapped addresses compare by value: an IPv6 local address in another spelling is still 'no NAT'")
    func addressComparison() {
        var probe = NATProbe(
            localAddresses: [HostPort(host: "2001:DB8:0::5", port: 5000)], primary: FakeNetwork.primary, secondary: nil,
            transactionIDs: (1...4).map(transactionID).makeIterator())
        probe.start(now: 0)
        probe.handleBindingResponse(transactionID: transactionID(1), mappedAddress: HostPort(host: "2001:db8::5", port: 5000), now: 0.04)
        probe.handleProbeArrived(transactionID: transactionID(2), now: 0.1)
        #expect(probe.result == .open)
    }

    @Test("Seeded random transaction ids are distinct and replayable")
    func randomIDs() {
        var a = SeededGenerator(seed: 3), b = SeededGenerator(seed: 3)
        var first = NATProbe(localAddresses: [], primary: FakeNetwork.primary, secondary: FakeNetwork.secondary, using: &a)
        var second = NATProbe(localAddresses: [], primary: FakeNetwork.primary, secondary: FakeNetwork.secondary, using: &b)
        first.start(now: 0)
        second.start(now: 0)
        let action = first.poll()
        #expect(action == second.poll())
        guard case let .sendBinding(_, id)? = action else {
            Issue.record("expected a Binding request")
            return
        }
        #expect(id.count == 12)
    }
}
