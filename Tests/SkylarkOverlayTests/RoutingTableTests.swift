import Foundation
import SkylarkWire
import Testing

@testable import SkylarkOverlay

@Suite("RoutingTable")
struct RoutingTableTests {
    let own = NodeID(bytes: Array(repeating: 0x5A, count: 20))

    func id(sharing prefix: Int, _ random: inout SplitMix64) -> NodeID {
        own.randomID(sharingPrefix: prefix, random: (random.next(), random.next(), UInt32(truncatingIfNeeded: random.next())))
    }

    func seen(_ table: inout RoutingTable, _ contact: Contact, now: Double) -> Bool {
        table.seen(contact, now: now)
    }

    @Test("A contact goes to the bucket of its shared prefix length")
    func bucketPlacement() {
        var random = SplitMix64(seed: 10)
        var table = RoutingTable(ownID: own, bucketSize: 8)
        for prefix in 0..<NodeID.bitCount {
            let other = id(sharing: prefix, &random)
            #expect(table.bucketIndex(for: other) == prefix)
            #expect(seen(&table, testContact(other), now: 1))
            #expect(table.contains(other))
            #expect(table.contact(for: other)?.nodeID == other)
        }
        #expect(table.count == NodeID.bitCount)
        // Our own id is never added; its bucket index is clamped to the last bucket.
        #expect(table.bucketIndex(for: own) == NodeID.bitCount - 1)
        #expect(!seen(&table, testContact(own), now: 1))
        #expect(!table.contains(own))
        #expect(table.count == NodeID.bitCount)
    }

    @Test("Seeing a known contact again updates it but does not add it twice")
    func seenAgain() {
        var random = SplitMix64(seed: 11)
        var table = RoutingTable(ownID: own, bucketSize: 8)
        let other = id(sharing: 3, &random)
        #expect(seen(&table, testContact(other, port: 1), now: 1))
        #expect(!seen(&table, testContact(other, port: 2), now: 2))
        #expect(table.count == 1)
        #expect(table.contact(for: other)?.endpoints.first?.port == 2)
    }

    @Test("A full bucket keeps k contacts; newcomers wait as replacements")
    func capacity() {
        var random = SplitMix64(seed: 12)
        var table = RoutingTable(ownID: own, bucketSize: 4)
        let members = (0..<4).map { _ in id(sharing: 2, &random) }
        let waiting = (0..<3).map { _ in id(sharing: 2, &random) }
        for (index, member) in members.enumerated() { #expect(seen(&table, testContact(member), now: Double(index))) }
        for newcomer in waiting { #expect(!seen(&table, testContact(newcomer), now: 10)) }
        #expect(table.count == 4)
        #expect(members.allSatisfy(table.contains))
        #expect(!waiting.contains(where: table.contains))
        // Other buckets are unaffected.
        #expect(seen(&table, testContact(id(sharing: 5, &random)), now: 11))
        #expect(table.count == 5)
    }

    @Test("Two failures drop a contact and the freshest replacement takes its place")
    func failureAndReplacement() {
        var random = SplitMix64(seed: 13)
        var table = RoutingTable(ownID: own, bucketSize: 3, failureLimit: 2)
        let members = (0..<3).map { _ in id(sharing: 0, &random) }
        let older = id(sharing: 0, &random)
        let fresher = id(sharing: 0, &random)
        for member in members { table.seen(testContact(member), now: 1) }
        table.seen(testContact(older), now: 2)
        table.seen(testContact(fresher), now: 3)

        table.failed(members[1])
        #expect(table.contains(members[1]), "one failure is forgiven")
        table.failed(members[1])
        #expect(!table.contains(members[1]))
        #expect(table.contains(fresher))
        #expect(!table.contains(older))
        #expect(table.count == 3)

        // An answer in between resets the failure count.
        table.failed(members[0])
        table.seen(testContact(members[0]), now: 4)
        table.failed(members[0])
        #expect(table.contains(members[0]))
        table.failed(members[0])
        #expect(!table.contains(members[0]))
        #expect(table.contains(older))
        #expect(table.count == 3)

        // No replacement left: the bucket shrinks.
        table.failed(members[2])
        table.failed(members[2])
        #expect(table.count == 2)
        // Failures of unknown ids change nothing.
        table.failed(id(sharing: 0, &random))
        #expect(table.count == 2)
    }

    @Test("The replacement list is bounded: the oldest waiting contacts are forgotten")
    func replacementBound() {
        var random = SplitMix64(seed: 14)
        var table = RoutingTable(ownID: own, bucketSize: 2)
        let members = (0..<2).map { _ in id(sharing: 1, &random) }
        let waiting = (0..<4).map { _ in id(sharing: 1, &random) }
        for member in members { table.seen(testContact(member), now: 1) }
        for (index, newcomer) in waiting.enumerated() { table.seen(testContact(newcomer), now: Double(2 + index)) }
        for member in members { table.remove(member) }
        // Only the two freshest of the four could come in.
        #expect(Set(table.allContacts.map(\.nodeID)) == Set(waiting.suffix(2)))
    }

    @Test("remove() drops a contact at once and a failed replacement is forgotten")
    func removeAndFailedReplacement() {
        var random = SplitMix64(seed: 15)
        var table = RoutingTable(ownID: own, bucketSize: 1)
        let member = id(sharing: 4, &random)
        let waiting = id(sharing: 4, &random)
        table.seen(testContact(member), now: 1)
        table.seen(testContact(waiting), now: 2)
        table.failed(waiting)  // a replacement that did not answer
        table.remove(member)
        #expect(table.count == 0)
        #expect(!table.contains(waiting))
    }

    func bruteForce(_ ids: [NodeID], to target: NodeID, count: Int) -> [NodeID] {
        Array(ids.sorted { $0.distance(to: target) < $1.distance(to: target) }.prefix(count))
    }

    @Test("closest(to:count:) returns exactly the true closest, nearest first")
    func closestMatchesBruteForce() {
        var random = SplitMix64(seed: 16)
        // Buckets large enough to hold every id: the table must agree with sorting all of them.
        var table = RoutingTable(ownID: own, bucketSize: 1000)
        var inserted: [NodeID] = []
        for index in 0..<400 {
            // Mostly uniform ids, some deep in our neighbourhood.
            let other = index % 4 == 0 ? id(sharing: Int(random.next() % 40), &random) : random.nodeID()
            if table.seen(testContact(other), now: 1) { inserted.append(other) }
        }
        #expect(table.count == inserted.count)
        var targets = (0..<20).map { _ in random.nodeID() } + [own] + inserted.prefix(5)
        targets += (0..<10).map { _ in id(sharing: Int(random.next() % 30), &random) }
        for target in targets {
            for count in [1, 3, 8, 20, 500] {
                let found = table.closest(to: target, count: count).map(\.nodeID)
                #expect(found == bruteForce(inserted, to: target, count: count), "target \(target), count \(count)")
            }
        }
    }

    @Test("closest(to:count:) on a table with k = 8 agrees with sorting what the table holds")
    func closestWithSmallBuckets() {
        var random = SplitMix64(seed: 17)
        var table = RoutingTable(ownID: own, bucketSize: 8)
        for index in 0..<300 {
            let other = index % 3 == 0 ? id(sharing: Int(random.next() % 20), &random) : random.nodeID()
            table.seen(testContact(other), now: 1)
        }
        let held = table.allContacts.map(\.nodeID)
        #expect(held.count < 300 && held.count > 40)
        for _ in 0..<30 {
            let target = random.nodeID()
            #expect(table.closest(to: target, count: 8).map(\.nodeID) == bruteForce(held, to: target, count: 8))
        }
        for prefix in [0, 1, 5, 12] {
            let target = id(sharing: prefix, &random)
            #expect(table.closest(to: target, count: 8).map(\.nodeID) == bruteForce(held, to: target, count: 8))
        }
    }

    @Test("closest(to:count:excluding:) leaves out the excluded ids")
    func closestExcluding() {
        var random = SplitMix64(seed: 18)
        var table = RoutingTable(ownID: own, bucketSize: 100)
        let ids = (0..<60).map { _ in random.nodeID() }
        for id in ids { table.seen(testContact(id), now: 1) }
        let target = random.nodeID()
        let nearest = bruteForce(ids, to: target, count: 5)
        let excluded = Set(nearest.prefix(2))
        let found = table.closest(to: target, count: 5, excluding: excluded).map(\.nodeID)
        #expect(found == bruteForce(ids.filter { !excluded.contains($0) }, to: target, count: 5))
        #expect(RoutingTable(ownID: own).closest(to: target, count: 5).isEmpty)
    }

    @Test("Stale buckets: untouched buckets up to one past the deepest in use")
    func staleBuckets() {
        var random = SplitMix64(seed: 19)
        var table = RoutingTable(ownID: own, bucketSize: 8)
        #expect(table.staleBuckets(before: 100).isEmpty)
        table.seen(testContact(id(sharing: 0, &random)), now: 50)
        table.seen(testContact(id(sharing: 3, &random)), now: 200)
        #expect(table.staleBuckets(before: 100) == [0, 1, 2, 4])
        table.touch(bucket: 2, now: 150)
        #expect(table.staleBuckets(before: 100) == [0, 1, 4])
        // Buckets never touched count as stale; touched ones only once older than the cut-off.
        #expect(table.staleBuckets(before: 10) == [1, 4])
    }

    @Test("A contact joined through without a UDP endpoint gets it from another's answer; one it has is kept")
    func udpEndpointFilledIn() {
        var random = SplitMix64(seed: 12)
        var table = RoutingTable(ownID: own, bucketSize: 8)
        let seed = id(sharing: 3, &random)
        table.seen(testContact(seed), now: 1)
        #expect(table.contact(for: seed)?.udpEndpoint == nil)
        var told = testContact(seed)
        told.udpEndpoint = HostPort(host: "192.0.2.9", port: 7100)
        table.fillInUDPEndpoint(from: told)
        #expect(table.contact(for: seed)?.udpEndpoint == HostPort(host: "192.0.2.9", port: 7100))
        // What is known already (the node told us itself) is not overwritten by hearsay.
        told.udpEndpoint = HostPort(host: "198.51.100.1", port: 9)
        table.fillInUDPEndpoint(from: told)
        #expect(table.contact(for: seed)?.udpEndpoint == HostPort(host: "192.0.2.9", port: 7100))
        // An unknown contact is not added by it.
        var stranger = testContact(id(sharing: 4, &random))
        stranger.udpEndpoint = HostPort(host: "192.0.2.10", port: 7100)
        table.fillInUDPEndpoint(from: stranger)
        #expect(!table.contains(stranger.nodeID))
    }
}
