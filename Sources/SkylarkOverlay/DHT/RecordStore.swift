import Foundation
import SkylarkWire

/// What a validator learnt about a record it accepted.
public struct RecordInfo: Sendable, Equatable {
    public var key: NodeID
    public var kind: OvRecordKind
    /// Presence: the owner's sequence (higher wins). Mailbox: 0.
    public var sequence: UInt64
    /// Mailbox: the envelope id. Presence: empty.
    public var itemID: [UInt8]
    public var expiresAt: Double
    public var owner: String
    /// Presence: the supernode the record points to, which may withdraw it.
    public var supernode: NodeID?

    public init(key: NodeID, kind: OvRecordKind, sequence: UInt64, itemID: [UInt8], expiresAt: Double, owner: String, supernode: NodeID?) {
        self.key = key
        self.kind = kind
        self.sequence = sequence
        self.itemID = itemID
        self.expiresAt = expiresAt
        self.owner = owner
        self.supernode = supernode
    }
}

/// Decides which records a supernode will hold: signatures, freshness, that the key is the one
/// the owner's name hashes to. The overlay's validator checks real signatures; nothing is stored
/// or served without passing it.
public protocol RecordValidator: Sendable {
    func validate(_ record: OvDHTRecord, now: Double) -> RecordInfo?
    /// A mailbox owner's signed request to delete delivered envelopes: the key and ids, if valid.
    func validate(_ clear: OvClearMailbox, now: Double) -> (key: NodeID, ids: [[UInt8]])?
}

/// The records one supernode holds for the DHT. Presence: one record per key, the highest
/// sequence wins, so an older (replayed) record never replaces a newer one. Mailbox: many
/// envelopes per key; deleted ids are remembered until they would have expired, so a lagging
/// replica cannot bring them back.
public struct RecordStore: Sendable {
    public enum Outcome: Equatable, Sendable {
        case stored
        /// Already held (same or newer); not an error, the sender's replica count still counts it.
        case alreadyHeld
        case refused(String)
    }

    struct Held: Sendable {
        var record: OvDHTRecord
        var info: RecordInfo
    }

    public let maximumRecords: Int
    public let maximumItemsPerMailbox: Int
    private var presence: [NodeID: Held] = [:]
    private var mailboxes: [NodeID: [[UInt8]: Held]] = [:]
    private var tombstones: [NodeID: [[UInt8]: Double]] = [:]
    public private(set) var count = 0

    public init(maximumRecords: Int = 1_000_000, maximumItemsPerMailbox: Int = 1_000) {
        self.maximumRecords = maximumRecords
        self.maximumItemsPerMailbox = maximumItemsPerMailbox
    }

    public mutating func put(_ record: OvDHTRecord, info: RecordInfo, now: Double) -> Outcome {
        guard info.expiresAt > now else { return .refused("expired") }
        switch info.kind {
        case .presence:
            if let held = presence[info.key] {
                if held.info.sequence >= info.sequence { return held.info.sequence == info.sequence ? .alreadyHeld : .refused("older than the record held") }
            } else {
                guard count < maximumRecords else { return .refused("store full") }
                count += 1
            }
            presence[info.key] = Held(record: record, info: info)
            return .stored
        case .mailboxItem:
            if tombstones[info.key]?[info.itemID] != nil { return .refused("already delivered") }
            if mailboxes[info.key]?[info.itemID] != nil { return .alreadyHeld }
            guard count < maximumRecords else { return .refused("store full") }
            guard (mailboxes[info.key]?.count ?? 0) < maximumItemsPerMailbox else { return .refused("mailbox full") }
            mailboxes[info.key, default: [:]][info.itemID] = Held(record: record, info: info)
            count += 1
            return .stored
        case .unspecified, .UNRECOGNIZED:
            return .refused("unknown record kind")
        }
    }

    /// Every live record under `key` (presence first).
    public func records(for key: NodeID, now: Double) -> [OvDHTRecord] {
        var out: [OvDHTRecord] = []
        if let held = presence[key], held.info.expiresAt > now { out.append(held.record) }
        if let items = mailboxes[key] {
            out += items.values.filter { $0.info.expiresAt > now }.sorted { $0.info.itemID.lexicographicallyPrecedes($1.info.itemID) }.map(\.record)
        }
        return out
    }

    public func presenceInfo(for key: NodeID) -> RecordInfo? { presence[key]?.info }

    /// Whether exactly this presence record is already held: it was validated when it came in,
    /// so a replica re-sending it costs no signature check.
    public func holdsIdentical(_ record: OvDHTRecord) -> Bool {
        guard record.kind == .presence, let held = presence[NodeID(bytes: record.key)] else { return false }
        return held.record.value == record.value
    }

    /// The supernode a user was attached to withdraws the record it pointed to, and only that one.
    @discardableResult
    public mutating func withdrawPresence(key: NodeID, sequence: UInt64, by supernode: NodeID) -> Bool {
        guard let held = presence[key], held.info.sequence == sequence, held.info.supernode == supernode else { return false }
        presence[key] = nil
        count -= 1
        return true
    }

    public mutating func removeMailboxItems(key: NodeID, ids: [[UInt8]], now: Double) {
        for id in ids {
            let expiry = mailboxes[key]?[id]?.info.expiresAt ?? now + 30 * 86400
            if mailboxes[key]?.removeValue(forKey: id) != nil { count -= 1 }
            tombstones[key, default: [:]][id] = expiry
        }
        if mailboxes[key]?.isEmpty == true { mailboxes[key] = nil }
    }

    public mutating func expire(now: Double) {
        for (key, held) in presence where held.info.expiresAt <= now {
            presence[key] = nil
            count -= 1
        }
        for (key, items) in mailboxes {
            let live = items.filter { $0.value.info.expiresAt > now }
            count -= items.count - live.count
            mailboxes[key] = live.isEmpty ? nil : live
        }
        for (key, stones) in tombstones {
            let live = stones.filter { $0.value > now }
            tombstones[key] = live.isEmpty ? nil : live
        }
    }

    /// Keys whose records the holder should keep replicated (mailboxes: presence is republished
    /// by its owner).
    public var replicatedKeys: [NodeID] { Array(mailboxes.keys) }

    public var allKeys: [NodeID] { Array(presence.keys) + Array(mailboxes.keys) }

    public var mailboxItemCount: Int { mailboxes.values.reduce(0) { $0 + $1.count } }
}
