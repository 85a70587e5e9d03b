import SkylarkWire

/// Kademlia's routing table: bucket i holds up to `k` contacts whose ids share exactly i leading
/// bits with ours, least recently seen first. A full bucket keeps newcomers in a small
/// replacement list and promotes one when a member stops answering, so long-lived contacts are
/// preferred (they are the likeliest to stay) but dead ones do not linger.
public struct RoutingTable: Sendable {
    public struct Entry: Sendable {
        public var contact: Contact
        public var lastSeen: Double
        var failures: Int
    }

    private struct Bucket: Sendable {
        var entries: [Entry] = []
        var replacements: [Entry] = []
        var lastTouched: Double = 0
    }

    public let ownID: NodeID
    public let bucketSize: Int
    /// Consecutive unanswered requests before a contact is dropped.
    public let failureLimit: Int
    private var buckets: [Bucket]

    public init(ownID: NodeID, bucketSize: Int = 8, failureLimit: Int = 2) {
        self.ownID = ownID
        self.bucketSize = bucketSize
        self.failureLimit = failureLimit
        self.buckets = Array(repeating: Bucket(), count: NodeID.bitCount)
    }

    public var count: Int { buckets.reduce(0) { $0 + $1.entries.count } }

    public func bucketIndex(for id: NodeID) -> Int {
        min(ownID.distance(to: id).leadingZeroBitCount, NodeID.bitCount - 1)
    }

    /// Records that `contact` answered or asked us something. Returns true if it is new to the table.
    @discardableResult
    public mutating func seen(_ contact: Contact, now: Double) -> Bool {
        guard contact.nodeID != ownID else { return false }
        let index = bucketIndex(for: contact.nodeID)
        var bucket = buckets[index]
        defer { buckets[index] = bucket }
        bucket.lastTouched = now
        if let position = bucket.entries.firstIndex(where: { $0.contact.nodeID == contact.nodeID }) {
            var entry = bucket.entries.remove(at: position)
            // A contact from a cache (no UDP endpoint, maybe no name) never erases what the
            // node told us itself.
            let known = entry.contact
            entry.contact = contact
            if entry.contact.udpEndpoint == nil { entry.contact.udpEndpoint = known.udpEndpoint }
            if entry.contact.name.isEmpty { entry.contact.name = known.name }
            entry.lastSeen = now
            entry.failures = 0
            bucket.entries.append(entry)
            return false
        }
        let entry = Entry(contact: contact, lastSeen: now, failures: 0)
        if bucket.entries.count < bucketSize {
            bucket.entries.append(entry)
            bucket.replacements.removeAll { $0.contact.nodeID == contact.nodeID }
            return true
        }
        bucket.replacements.removeAll { $0.contact.nodeID == contact.nodeID }
        bucket.replacements.append(entry)
        if bucket.replacements.count > bucketSize { bucket.replacements.removeFirst() }
        return false
    }

    /// Records an unanswered request; after `failureLimit` in a row the contact is dropped and
    /// the freshest replacement takes its place.
    public mutating func failed(_ id: NodeID) {
        let index = bucketIndex(for: id)
        guard let position = buckets[index].entries.firstIndex(where: { $0.contact.nodeID == id }) else {
            buckets[index].replacements.removeAll { $0.contact.nodeID == id }
            return
        }
        buckets[index].entries[position].failures += 1
        if buckets[index].entries[position].failures >= failureLimit { remove(id) }
    }

    /// Fills in the UDP endpoint of a known contact that has none (one we joined through, from a
    /// cache) from another supernode's answer, without counting it as seen: a relay chain needs
    /// it, and waiting for that supernode to write to us first leaves a restarted supernode's
    /// circuits short of relays for a minute.
    public mutating func fillInUDPEndpoint(from contact: Contact) {
        guard let udp = contact.udpEndpoint else { return }
        let index = bucketIndex(for: contact.nodeID)
        if let position = buckets[index].entries.firstIndex(where: { $0.contact.nodeID == contact.nodeID }),
            buckets[index].entries[position].contact.udpEndpoint == nil
        {
            buckets[index].entries[position].contact.udpEndpoint = udp
        }
    }

    /// Drops a contact at once (it announced its departure, or its credential no longer verifies).
    public mutating func remove(_ id: NodeID) {
        let index = bucketIndex(for: id)
        buckets[index].entries.removeAll { $0.contact.nodeID == id }
        buckets[index].replacements.removeAll { $0.contact.nodeID == id }
        if buckets[index].entries.count < bucketSize, let replacement = buckets[index].replacements.popLast() {
            buckets[index].entries.append(replacement)
        }
    }

    public func contains(_ id: NodeID) -> Bool {
        buckets[bucketIndex(for: id)].entries.contains { $0.contact.nodeID == id }
    }

    public func contact(for id: NodeID) -> Contact? {
        buckets[bucketIndex(for: id)].entries.first { $0.contact.nodeID == id }?.contact
    }

    /// The `count` known contacts closest to `target`, nearest first.
    public func closest(to target: NodeID, count: Int, excluding excluded: Set<NodeID> = []) -> [Contact] {
        // Start at the target's bucket and widen outwards: the closest ids are there or in the
        // buckets of longer shared prefixes, so most lookups read only a few buckets.
        var found: [Contact] = []
        let start = bucketIndex(for: target)
        for index in start..<NodeID.bitCount { found += buckets[index].entries.lazy.map(\.contact).filter { !excluded.contains($0.nodeID) } }
        var lower = start - 1
        while found.count < count && lower >= 0 {
            found += buckets[lower].entries.lazy.map(\.contact).filter { !excluded.contains($0.nodeID) }
            lower -= 1
        }
        found.sort { $0.nodeID.distance(to: target) < $1.nodeID.distance(to: target) }
        return Array(found.prefix(count))
    }

    public var allContacts: [Contact] { buckets.flatMap { $0.entries.map(\.contact) } }

    /// Buckets not touched since `before`, from the farthest to one past the deepest in use:
    /// those a periodic refresh should look up a random id in.
    public func staleBuckets(before: Double) -> [Int] {
        guard let deepest = buckets.lastIndex(where: { !$0.entries.isEmpty }) else { return [] }
        return (0...min(deepest + 1, NodeID.bitCount - 1)).filter { buckets[$0].lastTouched < before }
    }

    public mutating func touch(bucket index: Int, now: Double) {
        buckets[index].lastTouched = now
    }
}
