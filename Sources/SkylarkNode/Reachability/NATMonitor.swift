import SkylarkTraversal
import SkylarkWire

/// What the node knows of its own network: the NAT type and public UDP mapping (from a
/// `NATProbe` run with supernodes' help), the address our supernode sees us at, and when to look
/// again — soon after attaching, again in 5 s when only one supernode could help (a symmetric NAT
/// then looks port-restricted), otherwise every recheck interval.
///
/// Sans-I/O: the reactor starts the probe it builds, carries out the probe's actions and feeds
/// it what arrives; `finished` says what was learnt.
struct NATMonitor {
    /// A classification that compared only one supernode is repeated this soon (seconds).
    static let undecidedRecheck = 5.0
    /// A check that could not start (no supernode yet) is tried again this much later.
    static let retryAfter = 30.0

    let recheckInterval: Double
    private(set) var natType: NATType = .unknown
    private(set) var publicUDP: HostPort?
    /// Our address as our supernode sees it (its `Attached` answer).
    private(set) var observedEndpoint: HostPort?
    /// The classification in progress, for the reactor to drive.
    var probe: NATProbe?
    private(set) var nextCheck: Double = .infinity

    init(recheckInterval: Double) { self.recheckInterval = recheckInterval }

    /// Our supernode told us how it sees us: classify soon.
    mutating func attached(observed: HostPort?, now: Double) {
        observedEndpoint = observed
        nextCheck = min(nextCheck, now + 0.2)
    }

    /// Look again after `delay` (we just became a supernode: other supernodes probe us now).
    mutating func checkAgain(after delay: Double, now: Double) { nextCheck = now + delay }

    func isCheckDue(now: Double) -> Bool { probe == nil && now >= nextCheck }

    /// A check is starting; if no probe follows (no supernode to ask) it is retried later.
    mutating func checking(now: Double) { nextCheck = now + Self.retryAfter }

    mutating func start(_ probe: NATProbe) { self.probe = probe }

    /// The probe's result once it has one: what we are behind now, and whether that changed.
    mutating func finished(now: Double) -> (natType: NATType, mapped: HostPort?, changed: Bool)? {
        guard let probe, let result = probe.result else { return nil }
        self.probe = nil
        let undecided = probe.secondary == nil && (result == .portRestricted || result == .restricted)
        nextCheck = now + (undecided ? Self.undecidedRecheck : recheckInterval)
        let mapped = probe.mappedAddress
        let changed = result != natType || mapped != publicUDP
        natType = result
        publicUDP = mapped
        return (result, mapped, changed)
    }
}
