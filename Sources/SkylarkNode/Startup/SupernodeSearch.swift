import SkylarkOverlay
import SkylarkWire

/// Finding a supernode: a UDP host-cache query to every cached supernode at once (a datagram
/// each, and whoever answers is alive), TCP dials to sixteen at a time with a short connect
/// timeout, answering ones first; the first link to finish its handshake wins. With 90 % of a
/// full cache dead and UDP blocked, that is about six rounds of one second. When every
/// candidate has been tried it goes round again, slower each time.
///
/// Sans-I/O: the reactor sends the queries and opens the dials it names, and tells it what
/// answered and which dials ended.
struct SupernodeSearch {
    /// TCP dials at once.
    static let parallelism = 16
    /// Seconds a dial may take to connect.
    static let connectTimeout = 1.0
    /// Contacts a host-cache answer may carry (it stays under a typical MTU).
    static let contactsPerAnswer = 12

    let startedAt: Double
    let reason: String
    private var queue: [HostPort]
    private var tried: Set<HostPort> = []
    private(set) var inFlight: Set<LinkID> = []
    private var queries: [[UInt8]: (endpoint: HostPort, sentAt: Double)] = [:]
    private var nextRound: Double
    private var warned = false
    /// Whether a UDP host-cache query was answered (the cache was refreshed over UDP).
    private(set) var udpAnswered = false

    /// `candidates` in the order to try them (preferred ones first).
    init(now: Double, candidates: [HostPort], reason: String) {
        self.startedAt = now
        self.reason = reason
        self.queue = candidates
        self.nextRound = now + 2
    }

    var candidateCount: Int { queue.count }
    var triedCount: Int { tried.count }

    /// Who to send a host-cache query now: every candidate, up to a full cache.
    var queryTargets: [HostPort] { Array(queue.prefix(HostCache.defaultCapacity)) }

    /// A query went to `endpoint` with `nonce`.
    mutating func queried(_ endpoint: HostPort, nonce: [UInt8], now: Double) {
        queries[nonce] = (endpoint, now)
    }

    /// A host-cache answer came back: the endpoint that answered (alive, so dialled next) and
    /// its round-trip time; nil if the nonce is not one of ours.
    mutating func answered(nonce: [UInt8], now: Double) -> (endpoint: HostPort, rtt: Double)? {
        guard let query = queries.removeValue(forKey: nonce) else { return nil }
        udpAnswered = true
        if let index = queue.firstIndex(of: query.endpoint) {
            queue.remove(at: index)
            queue.insert(query.endpoint, at: 0)
        }
        return (query.endpoint, now - query.sentAt)
    }

    /// The candidates to dial now, as many as the parallelism leaves room for; report each
    /// dial's id with `dialing`.
    mutating func nextDials() -> [HostPort] {
        var dials: [HostPort] = []
        while inFlight.count + dials.count < Self.parallelism, !queue.isEmpty {
            let endpoint = queue.removeFirst()
            guard tried.insert(endpoint).inserted else { continue }
            dials.append(endpoint)
        }
        return dials
    }

    mutating func dialing(_ id: LinkID) { inFlight.insert(id) }

    /// A dial failed or finished.
    mutating func dialEnded(_ id: LinkID) { inFlight.remove(id) }

    /// Everyone was tried and nothing is in flight: time for another round.
    func isRoundOver(now: Double) -> Bool { queue.isEmpty && inFlight.isEmpty && now >= nextRound }

    /// Starts another round over `candidates`, a little later each time. True the first time
    /// the search has gone on longer than `warnAfter` (say so once).
    mutating func startRound(now: Double, candidates: [HostPort], warnAfter: Double) -> Bool {
        let warn = !warned && now - startedAt >= warnAfter
        if warn { warned = true }
        queue = candidates
        tried = []
        nextRound = now + min(30, max(2, (now - startedAt) / 2))
        return warn
    }
}
