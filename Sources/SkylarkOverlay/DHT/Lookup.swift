import SkylarkWire

/// One iterative Kademlia lookup: keep `alpha` requests in flight to the closest contacts not yet
/// asked; stop when the `k` closest known contacts have all answered (or failed), or — for a
/// value — once a value has been found and the requests already in flight have come back (so the
/// freshest replica among them wins). Sans-I/O: the DHT core sends what `nextRequests` returns
/// and reports answers and failures back.
struct Lookup: Sendable {
    enum Kind: Sendable, Equatable {
        case nodes
        /// Stops at the first value (plus the answers already in flight).
        case value
        /// Asks for values but runs to the end, gathering every replica's items (mailboxes).
        case collect
    }

    private enum CandidateState: Sendable, Equatable {
        case fresh
        case inFlight
        case answered
        case failed
    }

    private struct Candidate: Sendable {
        var contact: Contact
        var distance: NodeID
        var state: CandidateState
        /// Rounds from the start: 1 for contacts we knew, n + 1 for those an n-round contact told us of.
        var depth: Int
    }

    let target: NodeID
    let kind: Kind
    let k: Int
    let alpha: Int
    let startedAt: Double
    private var candidates: [Candidate] = []
    private var known: Set<NodeID> = []
    private(set) var records: [OvDHTRecord] = []
    private(set) var valueDepth: Int?
    private(set) var deepestAnswer = 0
    private(set) var requestsSent = 0

    init(target: NodeID, kind: Kind, seeds: [Contact], k: Int, alpha: Int, exclude: NodeID, now: Double) {
        self.target = target
        self.kind = kind
        self.k = k
        self.alpha = alpha
        self.startedAt = now
        known.insert(exclude)
        add(seeds, depth: 1)
    }

    var inFlightCount: Int { candidates.reduce(0) { $0 + ($1.state == .inFlight ? 1 : 0) } }

    var isFinished: Bool {
        if inFlightCount > 0 { return false }
        if valueDepth != nil { return true }
        // Done when none of the k closest still-viable candidates is left to ask.
        var considered = 0
        for candidate in candidates where candidate.state != .failed {
            if candidate.state == .fresh { return false }
            considered += 1
            if considered == k { break }
        }
        return true
    }

    /// Contacts to ask now (marked in flight).
    mutating func nextRequests() -> [Contact] {
        guard valueDepth == nil else { return [] }
        var out: [Contact] = []
        var inFlight = inFlightCount
        var considered = 0
        for index in candidates.indices where candidates[index].state != .failed {
            considered += 1
            if considered > k || inFlight >= alpha { break }
            if candidates[index].state == .fresh {
                candidates[index].state = .inFlight
                out.append(candidates[index].contact)
                inFlight += 1
            }
        }
        requestsSent += out.count
        return out
    }

    mutating func answered(by id: NodeID, contacts: [Contact], records: [OvDHTRecord]) {
        guard let index = candidates.firstIndex(where: { $0.contact.nodeID == id }), candidates[index].state == .inFlight else { return }
        candidates[index].state = .answered
        let depth = candidates[index].depth
        deepestAnswer = max(deepestAnswer, depth)
        if !records.isEmpty {
            self.records += records
            if kind == .value && valueDepth == nil { valueDepth = depth }
        }
        add(contacts, depth: depth + 1)
    }

    mutating func failed(_ id: NodeID) {
        guard let index = candidates.firstIndex(where: { $0.contact.nodeID == id }), candidates[index].state == .inFlight else { return }
        candidates[index].state = .failed
    }

    /// The k closest contacts that answered, nearest first: where a value belongs.
    var closestAnswered: [Contact] {
        Array(candidates.lazy.filter { $0.state == .answered }.prefix(k).map(\.contact))
    }

    /// Rounds the lookup took: the depth of the contact that held the value, or of the deepest
    /// contact that answered.
    var hops: Int { valueDepth ?? deepestAnswer }

    private mutating func add(_ contacts: [Contact], depth: Int) {
        var changed = false
        for contact in contacts where !known.contains(contact.nodeID) {
            known.insert(contact.nodeID)
            candidates.append(Candidate(contact: contact, distance: contact.nodeID.distance(to: target), state: .fresh, depth: depth))
            changed = true
        }
        if changed { candidates.sort { $0.distance < $1.distance } }
    }
}
