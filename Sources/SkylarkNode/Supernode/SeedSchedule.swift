import SkylarkOverlay

/// A supernode that knows no other supernode (it started first, or everyone it knew left)
/// keeps dialling a few from its host cache until one lets it join, backing off from 1 s to 30 s.
struct SeedSchedule {
    static let dialsPerAttempt = 3
    static let maximumBackoff = 30.0

    private(set) var dials: Set<LinkID> = []
    private var nextAttempt: Double = 0
    private var backoff: Double = 1

    /// Whether to dial seeds now; `knowsPeers`: the DHT has contacts (which resets the backoff).
    mutating func isAttemptDue(now: Double, knowsPeers: Bool) -> Bool {
        if knowsPeers {
            backoff = 1
            return false
        }
        guard dials.isEmpty, now >= nextAttempt else { return false }
        nextAttempt = now + backoff
        backoff = min(Self.maximumBackoff, backoff * 2)
        return true
    }

    mutating func dialing(_ id: LinkID) { dials.insert(id) }

    mutating func dialEnded(_ id: LinkID) { dials.remove(id) }
}
