import Foundation
import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkOverlay

@Suite("RecordStore")
struct RecordStoreTests {
    let key = NodeID.presenceKey(for: "alice")
    let mailbox = NodeID.mailboxKey(for: "bob")
    let supernode = NodeID(bytes: Array(repeating: 0x11, count: 20))
    let otherSupernode = NodeID(bytes: Array(repeating: 0x22, count: 20))

    /// A record whose value says which version it is, with the info a validator would return.
    func presence(_ sequence: UInt64, expiresAt: Double = testNow + 600, key: NodeID? = nil, supernode: NodeID? = nil) -> (OvDHTRecord, RecordInfo) {
        let key = key ?? self.key
        var record = OvDHTRecord()
        record.key = Data(key.bytes)
        record.kind = .presence
        record.value = Data("presence-\(sequence)".utf8)
        return (
            record,
            RecordInfo(
                key: key, kind: .presence, sequence: sequence, itemID: [], expiresAt: expiresAt, owner: "alice",
                supernode: supernode ?? self.supernode)
        )
    }

    func item(_ number: UInt8, expiresAt: Double = testNow + 86_400, key: NodeID? = nil) -> (OvDHTRecord, RecordInfo) {
        let key = key ?? mailbox
        var record = OvDHTRecord()
        record.key = Data(key.bytes)
        record.kind = .mailboxItem
        record.value = Data([number])
        return (
            record,
            RecordInfo(
                key: key, kind: .mailboxItem, sequence: 0, itemID: [UInt8](repeating: number, count: 16),
                expiresAt: expiresAt, owner: "bob", supernode: nil)
        )
    }

    func put(_ store: inout RecordStore, _ pair: (OvDHTRecord, RecordInfo), now: Double = testNow) -> RecordStore.Outcome {
        store.put(pair.0, info: pair.1, now: now)
    }

    func withdraw(_ store: inout RecordStore, key: NodeID, sequence: UInt64, by supernode: NodeID) -> Bool {
        store.withdrawPresence(key: key, sequence: sequence, by: supernode)
    }

    @Test("Presence: a higher sequence replaces, an older one is refused, an equal one is already held")
    func presenceSequence() {
        var store = RecordStore()
        #expect(put(&store, presence(5)) == .stored)
        #expect(store.records(for: key, now: testNow).map(\.value) == [Data("presence-5".utf8)])
        if case .refused = put(&store, presence(4)) {} else { Issue.record("an older record must be refused") }
        #expect(put(&store, presence(5)) == .alreadyHeld)
        #expect(store.records(for: key, now: testNow).map(\.value) == [Data("presence-5".utf8)])
        #expect(put(&store, presence(6)) == .stored)
        #expect(store.records(for: key, now: testNow).map(\.value) == [Data("presence-6".utf8)])
        #expect(store.presenceInfo(for: key)?.sequence == 6)
        if case .refused = put(&store, presence(5)) {} else { Issue.record("a replayed older record must be refused") }
        #expect(store.count == 1)
    }

    @Test("Expired records are refused, hidden and purged")
    func expiry() {
        var store = RecordStore()
        if case .refused = put(&store, presence(1, expiresAt: testNow)) {} else { Issue.record("an expired record must be refused") }
        #expect(store.count == 0)
        #expect(put(&store, presence(1, expiresAt: testNow + 10)) == .stored)
        #expect(put(&store, item(1, expiresAt: testNow + 20)) == .stored)
        #expect(put(&store, item(2, expiresAt: testNow + 40)) == .stored)
        #expect(store.count == 3)
        #expect(store.records(for: key, now: testNow + 10).isEmpty, "hidden once expired")
        #expect(store.records(for: mailbox, now: testNow + 25).map(\.value) == [Data([2])])
        store.expire(now: testNow + 25)
        #expect(store.count == 1)
        #expect(store.presenceInfo(for: key) == nil)
        #expect(store.mailboxItemCount == 1)
        store.expire(now: testNow + 40)
        #expect(store.count == 0)
        #expect(store.allKeys.isEmpty)
        // Once the old one is purged, the key takes a new record of any sequence.
        #expect(put(&store, presence(1, expiresAt: testNow + 100), now: testNow + 50) == .stored)
    }

    @Test("withdrawPresence: only by the named supernode and for the matching sequence")
    func withdraw() {
        var store = RecordStore()
        #expect(put(&store, presence(3)) == .stored)
        #expect(!withdraw(&store, key: key, sequence: 3, by: otherSupernode))
        #expect(!withdraw(&store, key: key, sequence: 2, by: supernode))
        #expect(!withdraw(&store, key: key, sequence: 4, by: supernode))
        #expect(!withdraw(&store, key: NodeID.presenceKey(for: "bob"), sequence: 3, by: supernode))
        #expect(store.count == 1)
        #expect(withdraw(&store, key: key, sequence: 3, by: supernode))
        #expect(store.count == 0)
        #expect(store.records(for: key, now: testNow).isEmpty)
        #expect(!withdraw(&store, key: key, sequence: 3, by: supernode), "only once")

        // A record naming no supernode cannot be withdrawn by anyone.
        var record = presence(7)
        record.1.supernode = nil
        #expect(put(&store, record) == .stored)
        #expect(!withdraw(&store, key: key, sequence: 7, by: supernode))
    }

    @Test("Mailbox: items add up, duplicates are already held, sorted by id")
    func mailboxItems() {
        var store = RecordStore()
        for number: UInt8 in [3, 1, 2] { #expect(put(&store, item(number)) == .stored) }
        #expect(put(&store, item(2)) == .alreadyHeld)
        #expect(store.count == 3)
        #expect(store.mailboxItemCount == 3)
        #expect(store.records(for: mailbox, now: testNow).map(\.value) == [Data([1]), Data([2]), Data([3])])
        #expect(store.replicatedKeys == [mailbox])
        // Presence and mailbox items under one key are kept apart, presence first.
        #expect(put(&store, presence(1, key: mailbox)) == .stored)
        #expect(store.records(for: mailbox, now: testNow).map(\.value).first == Data("presence-1".utf8))
        #expect(store.count == 4)
    }

    @Test("Mailbox and store limits")
    func limits() {
        var store = RecordStore(maximumRecords: 5, maximumItemsPerMailbox: 3)
        for number: UInt8 in 1...3 { #expect(put(&store, item(number)) == .stored) }
        #expect(put(&store, item(4)) == .refused("mailbox full"))
        #expect(put(&store, item(1)) == .alreadyHeld, "a duplicate of a held item is not 'full'")
        let other = NodeID.mailboxKey(for: "carol")
        #expect(put(&store, item(5, key: other)) == .stored)
        #expect(put(&store, presence(1)) == .stored)
        #expect(store.count == 5)
        #expect(put(&store, item(6, key: other)) == .refused("store full"))
        #expect(put(&store, presence(1, key: NodeID.presenceKey(for: "dave"))) == .refused("store full"))
        // Replacing a held presence record needs no room.
        #expect(put(&store, presence(2)) == .stored)
        #expect(store.count == 5)
    }

    @Test("Removed items leave a tombstone: a lagging replica cannot bring them back")
    func tombstones() {
        var store = RecordStore()
        for number: UInt8 in 1...3 { _ = put(&store, item(number)) }
        store.removeMailboxItems(key: mailbox, ids: [item(1).1.itemID, item(3).1.itemID], now: testNow)
        #expect(store.count == 1)
        #expect(store.records(for: mailbox, now: testNow).map(\.value) == [Data([2])])
        #expect(put(&store, item(1)) == .refused("already delivered"))
        #expect(put(&store, item(3)) == .refused("already delivered"))
        #expect(store.count == 1)
        // Ids cleared before their item arrived are refused too.
        store.removeMailboxItems(key: mailbox, ids: [item(9).1.itemID], now: testNow)
        #expect(put(&store, item(9)) == .refused("already delivered"))
        // Tombstones are per mailbox.
        #expect(put(&store, item(1, key: NodeID.mailboxKey(for: "carol"))) == .stored)
        // Clearing everything empties the mailbox.
        store.removeMailboxItems(key: mailbox, ids: [item(2).1.itemID], now: testNow)
        #expect(store.records(for: mailbox, now: testNow).isEmpty)
        #expect(!store.replicatedKeys.contains(mailbox))
        #expect(store.count == 1)
    }

    @Test("Tombstones outlive expire() until the item would have expired")
    func tombstoneExpiry() {
        var store = RecordStore()
        _ = put(&store, item(1, expiresAt: testNow + 1000))
        store.removeMailboxItems(key: mailbox, ids: [item(1).1.itemID], now: testNow)
        store.expire(now: testNow + 500)
        #expect(put(&store, item(1, expiresAt: testNow + 1000), now: testNow + 500) == .refused("already delivered"))
        store.expire(now: testNow + 1001)
        // After the tombstone is gone a fresh item with the same id (and a later expiry) is accepted.
        #expect(put(&store, item(1, expiresAt: testNow + 5000), now: testNow + 1001) == .stored)
    }

    @Test("Unknown record kinds are refused")
    func unknownKind() {
        var store = RecordStore()
        var pair = presence(1)
        pair.1.kind = .unspecified
        if case .refused = put(&store, pair) {} else { Issue.record("an unknown kind must be refused") }
        #expect(store.count == 0)
    }
}
