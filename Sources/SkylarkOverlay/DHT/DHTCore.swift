import Foundation
import SkylarkWire

/// The supernodes' Kademlia DHT, as a sans-I/O core (quinn-style): requests and answers in via
/// `handleRequest` / `handleResponse`, failures via `handleUnreachable`, time via
/// `handleTimeout(now:)`; messages and finished operations out via `poll()`; `nextDeadline` says
/// when to call `handleTimeout` next. Nothing here reads a clock or touches a socket, so the same
/// code runs in real supernodes and in the simulated network.
///
/// - ids come from credentials; keys are hashes of names (`NodeID.presenceKey`);
/// - `alpha` requests in flight per lookup ("query 3 supernodes"), `k` contacts per bucket;
/// - a record is stored at the `replication` closest supernodes; mailbox items are re-stored
///   every `republishInterval` and handed to newly met supernodes closer to their key, so
///   replicas lost to churn are repaired;
/// - buckets untouched for `refreshInterval` are refreshed with a lookup of a random id in them.
public struct DHTCore: Sendable {
    public typealias OperationID = UInt64

    public struct Configuration: Sendable {
        public var k = 8
        public var alpha = 3
        public var replication = 8
        public var requestTimeout: Double = 2
        public var lookupTimeout: Double = 10
        public var refreshInterval: Double = 300
        public var republishInterval: Double = 600
        public init() {}
    }

    public struct LookupOutcome: Sendable {
        public var target: NodeID
        /// Validated records: for presence only the highest sequence, for a mailbox every item.
        public var records: [OvDHTRecord]
        public var closest: [Contact]
        public var hops: Int
        public var requests: Int
        public var elapsed: Double
    }

    public enum Action: Sendable {
        case send(to: Contact, message: OvLinkMessage)
        case lookupFinished(OperationID, LookupOutcome)
        /// `replicas` counts the supernodes that acknowledged (this one included if it kept a copy).
        case storeFinished(OperationID, replicas: Int)
        case broadcastFinished(OperationID, reached: Int)
    }

    private enum Purpose: Sendable {
        case findValue
        case findNodes
        case store([OvDHTRecord])
        case broadcast(OvLinkMessage)
        case maintenance
    }

    private enum Phase: Sendable {
        case looking
        case sending(pending: Set<UInt64>, acknowledged: Int)
    }

    private struct Operation: Sendable {
        var lookup: Lookup
        var purpose: Purpose
        var phase: Phase
        var deadline: Double
        /// Set for internal operations whose end nobody waits for.
        var silent: Bool
    }

    private enum RequestKind: Sendable {
        case lookup
        case delivery
        case fireAndForget
    }

    private struct Outstanding: Sendable {
        var operation: OperationID?
        var contact: Contact
        var deadline: Double
        var kind: RequestKind
    }

    public let configuration: Configuration
    public private(set) var ownContact: Contact
    public private(set) var routing: RoutingTable
    public private(set) var store: RecordStore
    private let validator: any RecordValidator
    private var operations: [OperationID: Operation] = [:]
    private var outstanding: [UInt64: Outstanding] = [:]
    private var actions: [Action] = []
    private var nextID: UInt64 = 1
    private var random: SplitMix64
    private var nextMaintenance: Double
    private var lastRepublish: Double
    /// Nodes that announced their departure, until when they are not re-learnt from messages
    /// still in flight (their own last requests carry their contact).
    private var departed: [NodeID: Double] = [:]

    public init(ownContact: Contact, validator: any RecordValidator, configuration: Configuration = .init(), seed: UInt64, now: Moment) {
        self.ownContact = ownContact
        self.configuration = configuration
        self.routing = RoutingTable(ownID: ownContact.nodeID, bucketSize: configuration.k)
        self.store = RecordStore()
        self.validator = validator
        self.random = SplitMix64(seed: seed)
        self.nextMaintenance = now.monotonic + min(configuration.refreshInterval, configuration.republishInterval) / 4
        self.lastRepublish = now.monotonic
    }

    public var ownID: NodeID { ownContact.nodeID }
    public var activeOperationCount: Int { operations.count }

    public mutating func updateOwnContact(_ contact: Contact) {
        precondition(contact.nodeID == ownContact.nodeID, "a node id never changes")
        ownContact = contact
    }

    // MARK: - Starting operations

    /// Joins the overlay through `seeds` (any supernodes): looks up our own id, which fills the
    /// routing table and announces us to the nodes near us.
    public mutating func join(seeds: [Contact], now: Moment) {
        let seeds = seeds.filter { $0.nodeID != ownID && (departed[$0.nodeID] ?? 0) <= now.monotonic }
        for seed in seeds { routing.seen(seed, now: now.monotonic - 1) }
        _ = start(target: ownID, kind: .nodes, purpose: .maintenance, seeds: seeds, silent: true, now: now)
    }

    /// Adds a contact learnt elsewhere (a host cache, a link that opened to us).
    public mutating func learn(_ contact: Contact, now: Moment) {
        if let until = departed[contact.nodeID] {
            guard until <= now.monotonic else { return }
            departed[contact.nodeID] = nil
        }
        if routing.seen(contact, now: now.monotonic) { replicate(to: contact, now: now) }
    }

    public mutating func findValue(_ key: NodeID, now: Moment) -> OperationID {
        start(target: key, kind: .value, purpose: .findValue, seeds: nil, silent: false, now: now)
    }

    /// Every item held under `key` by any of its replicas (a mailbox).
    public mutating func collect(_ key: NodeID, now: Moment) -> OperationID {
        start(target: key, kind: .collect, purpose: .findValue, seeds: nil, silent: false, now: now)
    }

    public mutating func findNodes(_ target: NodeID, now: Moment) -> OperationID {
        start(target: target, kind: .nodes, purpose: .findNodes, seeds: nil, silent: false, now: now)
    }

    /// Validates `record`, then stores it at the `replication` closest supernodes (and here if
    /// this node is one of them).
    public mutating func store(_ record: OvDHTRecord, now: Moment) -> OperationID? {
        guard let info = validator.validate(record, now: now.wall) else { return nil }
        return start(target: info.key, kind: .nodes, purpose: .store([record]), seeds: nil, silent: false, now: now)
    }

    /// Sends `message` (an Unpublish or ClearMailbox) to the supernodes closest to `key`, and
    /// applies it here too.
    public mutating func broadcast(_ message: OvLinkMessage, near key: NodeID, now: Moment) -> OperationID {
        _ = apply(message, from: ownID, now: now)
        return start(target: key, kind: .nodes, purpose: .broadcast(message), seeds: nil, silent: false, now: now)
    }

    /// Whether the validator accepts a mailbox clear (checked before spending a lookup on it).
    public func validatorAccepts(_ clear: OvClearMailbox, now: Moment) -> Bool {
        validator.validate(clear, now: now.wall) != nil
    }

    /// The records held here for `key` (no network).
    public func localRecords(for key: NodeID, now: Moment) -> [OvDHTRecord] { store.records(for: key, now: now.wall) }

    // MARK: - Inputs

    /// A DHT request from the supernode `sender` (its id verified by the link). Returns the answer.
    public mutating func handleRequest(_ message: OvLinkMessage, from sender: NodeID, now: Moment) -> OvLinkMessage? {
        var answer = OvLinkMessage()
        answer.id = message.id
        switch message.body {
        case let .findNode(request)?:
            noteSender(request.hasSender ? request.sender : nil, verified: sender, now: now)
            var nodes = OvNodes()
            nodes.contacts = routing.closest(to: NodeID(bytes: request.target), count: configuration.k, excluding: [sender]).map(\.message)
            answer.nodes = nodes
        case let .findValue(request)?:
            noteSender(request.hasSender ? request.sender : nil, verified: sender, now: now)
            let key = NodeID(bytes: request.key)
            var values = OvValues()
            values.records = store.records(for: key, now: now.wall)
            values.closer = routing.closest(to: key, count: configuration.k, excluding: [sender]).map(\.message)
            answer.values = values
        case let .store(request)?:
            noteSender(request.hasSender ? request.sender : nil, verified: sender, now: now)
            if store.holdsIdentical(request.record) {
                answer.stored = OvStored()
                return answer
            }
            guard let info = validator.validate(request.record, now: now.wall) else {
                answer.refused = .init(code: .invalid, reason: "record refused: bad signature, wrong key or stale")
                return answer
            }
            switch store.put(request.record, info: info, now: now.wall) {
            case .stored, .alreadyHeld: answer.stored = OvStored()
            case let .refused(why): answer.refused = .init(code: .invalid, reason: why)
            }
        case .unpublish?, .mailboxClear?:
            if apply(message, from: sender, now: now) { answer.ack = OvAck() } else { answer.refused = .init(code: .invalid, reason: "not allowed") }
        case let .depart(depart)?:
            if NodeID(bytes: depart.nodeID) == sender {
                routing.remove(sender)
                departed[sender] = now.monotonic + 60
                if departed.count > 10_000 { departed = departed.filter { $0.value > now.monotonic } }
            }
            answer.ack = OvAck()
        default:
            return nil
        }
        return answer
    }

    /// An answer to one of our requests, from the supernode `sender`.
    public mutating func handleResponse(_ message: OvLinkMessage, from sender: NodeID, now: Moment) {
        guard let request = outstanding[message.id], request.contact.nodeID == sender else { return }
        outstanding[message.id] = nil
        learn(request.contact, now: now)
        guard let operationID = request.operation, var operation = operations[operationID] else { return }
        switch request.kind {
        case .lookup:
            var contacts: [Contact] = []
            var records: [OvDHTRecord] = []
            switch message.body {
            case let .nodes(nodes)?: contacts = nodes.contacts.prefix(configuration.k * 2).compactMap(Contact.init)
            case let .values(values)?:
                contacts = values.closer.prefix(configuration.k * 2).compactMap(Contact.init)
                records = values.records.filter { validator.validate($0, now: now.wall)?.key == operation.lookup.target }
            default:
                operation.lookup.failed(sender)
                operations[operationID] = operation
                advance(operationID, now: now)
                return
            }
            for contact in contacts { routing.fillInUDPEndpoint(from: contact) }
            operation.lookup.answered(by: sender, contacts: contacts, records: records)
            operations[operationID] = operation
            advance(operationID, now: now)
        case .delivery:
            guard case .sending(var pending, var acknowledged) = operation.phase else { return }
            pending.remove(message.id)
            switch message.body {
            case .stored?, .ack?: acknowledged += 1
            default: break
            }
            operation.phase = .sending(pending: pending, acknowledged: acknowledged)
            operations[operationID] = operation
            if pending.isEmpty { finish(operationID, now: now) }
        case .fireAndForget:
            break
        }
    }

    /// A supernode could not be reached (dial failed, link closed): fail its requests now
    /// rather than at their timeout.
    public mutating func handleUnreachable(_ id: NodeID, now: Moment) {
        let failed = outstanding.filter { $0.value.contact.nodeID == id }.map(\.key)
        for requestID in failed { fail(requestID, now: now) }
        if failed.isEmpty { routing.failed(id) }
    }

    public mutating func handleTimeout(now: Moment) {
        for (requestID, request) in outstanding where request.deadline <= now.monotonic { fail(requestID, now: now) }
        for (operationID, operation) in operations where operation.deadline <= now.monotonic {
            switch (operation.phase, operation.purpose) {
            case (.looking, .store), (.looking, .broadcast):
                // Out of time while looking: deliver to the best contacts found so far.
                lookupDone(operationID, now: now)
            default:
                finish(operationID, now: now)
            }
        }
        if now.monotonic >= nextMaintenance { maintain(now: now) }
    }

    public mutating func poll() -> Action? {
        actions.isEmpty ? nil : actions.removeFirst()
    }

    public var nextDeadline: Double? {
        var deadline = nextMaintenance
        for request in outstanding.values { deadline = min(deadline, request.deadline) }
        for operation in operations.values { deadline = min(deadline, operation.deadline) }
        return deadline
    }

    // MARK: - Internals

    private mutating func start(target: NodeID, kind: Lookup.Kind, purpose: Purpose, seeds: [Contact]?, silent: Bool, now: Moment) -> OperationID {
        let id = makeID()
        let initial = seeds ?? routing.closest(to: target, count: configuration.k)
        let lookup = Lookup(target: target, kind: kind, seeds: initial, k: configuration.k, alpha: configuration.alpha, exclude: ownID, now: now.monotonic)
        operations[id] = Operation(lookup: lookup, purpose: purpose, phase: .looking, deadline: now.monotonic + configuration.lookupTimeout, silent: silent)
        // A lookup into a bucket's range refreshes it as well as a dedicated refresh would.
        routing.touch(bucket: routing.bucketIndex(for: target), now: now.monotonic)
        advance(id, now: now)
        return id
    }

    private mutating func advance(_ id: OperationID, now: Moment) {
        guard var operation = operations[id], case .looking = operation.phase else { return }
        let asks = operation.lookup.nextRequests()
        operations[id] = operation
        for contact in asks {
            var message = OvLinkMessage()
            switch operation.lookup.kind {
            case .nodes:
                var request = OvFindNode()
                request.target = Data(operation.lookup.target.bytes)
                request.sender = ownContact.message
                message.findNode = request
            case .value, .collect:
                var request = OvFindValue()
                request.key = Data(operation.lookup.target.bytes)
                request.sender = ownContact.message
                message.findValue = request
            }
            send(message, to: contact, operation: id, kind: .lookup, now: now)
        }
        operation = operations[id]!
        if operation.lookup.isFinished { lookupDone(id, now: now) }
    }

    private mutating func lookupDone(_ id: OperationID, now: Moment) {
        guard var operation = operations[id] else { return }
        let closest = operation.lookup.closestAnswered
        switch operation.purpose {
        case .findValue, .findNodes, .maintenance:
            finish(id, now: now)
        case let .store(records):
            var pending: Set<UInt64> = []
            let replicas = Array(closest.prefix(configuration.replication))
            var acknowledged = 0
            if keepsLocalCopy(of: operation.lookup.target, among: replicas) {
                for record in records {
                    guard let info = validator.validate(record, now: now.wall) else { continue }
                    switch store.put(record, info: info, now: now.wall) {
                    case .stored, .alreadyHeld: acknowledged = 1
                    case .refused: break
                    }
                }
            }
            operation.phase = .sending(pending: [], acknowledged: acknowledged)
            operations[id] = operation
            for contact in replicas {
                for record in records {
                    var request = OvStore()
                    request.record = record
                    request.sender = ownContact.message
                    var message = OvLinkMessage()
                    message.store = request
                    pending.insert(send(message, to: contact, operation: id, kind: .delivery, now: now))
                }
            }
            operations[id]?.phase = .sending(pending: pending, acknowledged: acknowledged)
            let deliveryDeadline = now.monotonic + configuration.requestTimeout * 2
            operations[id]?.deadline = deliveryDeadline
            if pending.isEmpty { finish(id, now: now) }
        case let .broadcast(template):
            var pending: Set<UInt64> = []
            operation.phase = .sending(pending: [], acknowledged: 0)
            operations[id] = operation
            for contact in closest.prefix(configuration.replication) {
                pending.insert(send(template, to: contact, operation: id, kind: .delivery, now: now))
            }
            operations[id]?.phase = .sending(pending: pending, acknowledged: 0)
            let deliveryDeadline = now.monotonic + configuration.requestTimeout * 2
            operations[id]?.deadline = deliveryDeadline
            if pending.isEmpty { finish(id, now: now) }
        }
    }

    /// Ends an operation (done, or out of time) and reports it.
    private mutating func finish(_ id: OperationID, now: Moment) {
        guard let operation = operations.removeValue(forKey: id) else { return }
        for (requestID, request) in outstanding where request.operation == id { outstanding[requestID]?.operation = nil }
        guard !operation.silent else { return }
        let lookup = operation.lookup
        let acknowledged: Int
        if case let .sending(_, count) = operation.phase { acknowledged = count } else { acknowledged = 0 }
        switch operation.purpose {
        case .findValue, .findNodes:
            // Our own copy counts too: this supernode may be one of the replicas.
            let records = lookup.records + store.records(for: lookup.target, now: now.wall)
            let outcome = LookupOutcome(
                target: lookup.target, records: best(records, now: now), closest: lookup.closestAnswered,
                hops: lookup.hops, requests: lookup.requestsSent, elapsed: now.monotonic - lookup.startedAt)
            actions.append(.lookupFinished(id, outcome))
        case .store:
            actions.append(.storeFinished(id, replicas: acknowledged))
        case .broadcast:
            actions.append(.broadcastFinished(id, reached: acknowledged))
        case .maintenance:
            break
        }
    }

    @discardableResult
    private mutating func send(_ message: OvLinkMessage, to contact: Contact, operation: OperationID?, kind: RequestKind, now: Moment) -> UInt64 {
        var message = message
        let requestID = makeID()
        message.id = requestID
        outstanding[requestID] = Outstanding(operation: operation, contact: contact, deadline: now.monotonic + configuration.requestTimeout, kind: kind)
        actions.append(.send(to: contact, message: message))
        return requestID
    }

    private mutating func fail(_ requestID: UInt64, now: Moment) {
        guard let request = outstanding.removeValue(forKey: requestID) else { return }
        routing.failed(request.contact.nodeID)
        guard let operationID = request.operation, var operation = operations[operationID] else { return }
        switch request.kind {
        case .lookup:
            operation.lookup.failed(request.contact.nodeID)
            operations[operationID] = operation
            advance(operationID, now: now)
        case .delivery:
            if case .sending(var pending, let acknowledged) = operation.phase {
                pending.remove(requestID)
                operation.phase = .sending(pending: pending, acknowledged: acknowledged)
                operations[operationID] = operation
                if pending.isEmpty { finish(operationID, now: now) }
            }
        case .fireAndForget:
            break
        }
    }

    /// Unpublish and ClearMailbox, from a verified supernode (or ourselves).
    private mutating func apply(_ message: OvLinkMessage, from sender: NodeID, now: Moment) -> Bool {
        switch message.body {
        case let .unpublish(unpublish)?:
            return store.withdrawPresence(key: NodeID(bytes: unpublish.key), sequence: unpublish.sequence, by: sender)
        case let .mailboxClear(clear)?:
            guard let valid = validator.validate(clear, now: now.wall) else { return false }
            store.removeMailboxItems(key: valid.key, ids: valid.ids, now: now.wall)
            return true
        default:
            return false
        }
    }

    private mutating func noteSender(_ contact: OvContact?, verified: NodeID, now: Moment) {
        guard let contact, let parsed = Contact(contact), parsed.nodeID == verified else { return }
        learn(parsed, now: now)
    }

    /// Hands a newly met supernode the records it is now closer to than we are.
    private mutating func replicate(to contact: Contact, now: Moment) {
        for key in store.allKeys where contact.nodeID.distance(to: key) < ownID.distance(to: key) {
            for record in store.records(for: key, now: now.wall) {
                var request = OvStore()
                request.record = record
                request.sender = ownContact.message
                var message = OvLinkMessage()
                message.store = request
                send(message, to: contact, operation: nil, kind: .fireAndForget, now: now)
            }
        }
    }

    private func keepsLocalCopy(of key: NodeID, among replicas: [Contact]) -> Bool {
        guard replicas.count >= configuration.replication, let farthest = replicas.last else { return true }
        return ownID.distance(to: key) < farthest.nodeID.distance(to: key)
    }

    /// Presence: the highest valid sequence. Mailbox: every item once.
    private func best(_ records: [OvDHTRecord], now: Moment) -> [OvDHTRecord] {
        var presence: (OvDHTRecord, UInt64)?
        var items: [[UInt8]: OvDHTRecord] = [:]
        for record in records {
            guard let info = validator.validate(record, now: now.wall) else { continue }
            switch info.kind {
            case .presence:
                if presence == nil || info.sequence > presence!.1 { presence = (record, info.sequence) }
            case .mailboxItem:
                items[info.itemID] = record
            default:
                continue
            }
        }
        return (presence.map { [$0.0] } ?? []) + items.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map(\.value)
    }

    private mutating func maintain(now: Moment) {
        store.expire(now: now.wall)
        for index in routing.staleBuckets(before: now.monotonic - configuration.refreshInterval) {
            let target = ownID.randomID(sharingPrefix: index, random: (random.next(), random.next(), UInt32(truncatingIfNeeded: random.next())))
            routing.touch(bucket: index, now: now.monotonic)
            _ = start(target: target, kind: .nodes, purpose: .maintenance, seeds: nil, silent: true, now: now)
        }
        if now.monotonic >= lastRepublish + configuration.republishInterval {
            lastRepublish = now.monotonic
            for key in store.replicatedKeys {
                let records = store.records(for: key, now: now.wall)
                if !records.isEmpty { _ = start(target: key, kind: .nodes, purpose: .store(records), seeds: nil, silent: true, now: now) }
            }
        }
        nextMaintenance = now.monotonic + min(configuration.refreshInterval, configuration.republishInterval) / 4
    }

    private mutating func makeID() -> UInt64 {
        defer { nextID += 1 }
        return nextID
    }
}

/// A small, fast, seedable generator (SplitMix64) so that the DHT's random choices are
/// reproducible in the simulation.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
