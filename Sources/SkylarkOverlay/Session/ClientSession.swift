import Foundation
import SkylarkCrypto
import SkylarkTraversal
import SkylarkWire

/// A logged-in user's session with its supernode, as a sans-I/O core: buddies (with consent),
/// presence (publishing our own, following our buddies', confirming a departure before showing
/// anyone offline), end-to-end encrypted messages with an outbox that survives restarts,
/// receipts and the offline mailbox. The adapter carries `.send` messages to the supernode link
/// and feeds answers, incoming envelopes and time back.
public struct ClientSession: Sendable {
    public struct Configuration: Sendable {
        /// How long a published presence record lives; republished at a third of it.
        public var presenceLifetime: Double = 180
        /// After a supernode says a buddy's link dropped, wait this long and look again before
        /// believing it.
        public var departureConfirmDelay: Double = 2
        /// How often buddies shown online are looked up again (missed notices, dead supernodes).
        public var buddyRecheckInterval: Double = 60
        /// Lookups that must find nothing in a row before a recheck shows a buddy offline.
        public var missesBeforeOffline = 2
        public var requestTimeout: Double = 15
        public var retryInterval: Double = 10
        public var maximumInbox = 10_000
        public init() {}
    }

    public enum Event: Sendable, Equatable {
        case attached(supernode: String)
        case detached
        case presenceChanged(name: String, status: PresenceStatus)
        case buddyRequest(from: String, text: String)
        case buddyConfirmed(name: String)
        case buddyRemoved(name: String)
        case messageReceived(InboxMessage)
        case messageUpdated(id: String, state: OutboxState)
        case searchFinished(token: UInt64, SearchAnswer)
        /// Call signalling from a buddy (envelope signature checked): for the calls in the adapter.
        case callSignal(from: String, OvCallSignal)
        /// Conference signalling; not limited to buddies (a mixer need not be one), the
        /// conference core decides what to accept.
        case conferenceSignal(from: String, OvConferenceSignal)
        case warning(String)
    }

    public struct SearchAnswer: Sendable, Equatable {
        public var name: String
        public var found: Bool
        public var status: PresenceStatus
        public var supernode: String?
        public var natType: NATType?
        public var publicEndpoint: String?
        public var privateEndpoints: [String]
        public var hops: Int
        public var error: String?
    }

    public enum Action: Sendable {
        case send(OvLinkMessage)
        case event(Event)
        /// The persistent state changed; save `state`.
        case saveState
    }

    public enum CommandError: Error, Equatable, Sendable, CustomStringConvertible {
        case invalidName(String)
        case notABuddy(String)
        case noRequestFrom(String)
        case yourself

        public var description: String {
            switch self {
            case let .invalidName(why): return "invalid name: \(why)"
            case let .notABuddy(name): return "\(name) is not your buddy yet (they must accept your request first)"
            case let .noRequestFrom(name): return "there is no buddy request from \(name)"
            case .yourself: return "that is you"
            }
        }
    }

    private enum Pending: Sendable {
        case attach
        case publish
        case search(token: UInt64, name: String, purpose: SearchPurpose)
        case deliver(messageID: String?)
        case fetchMailbox
        case clearMailbox
        case detach
    }

    private enum SearchPurpose: Sendable {
        case user
        case refresh
        case confirmDeparture(sequence: UInt64)
    }

    private enum Link: Sendable {
        case down
        case attaching
        case attached(supernode: Contact)
    }

    public let configuration: Configuration
    private let identity: LocalIdentity
    private let verifier: Verifier
    private let messageKey: X25519.PrivateKey
    private let messageKeyPublic: [UInt8]
    public private(set) var state: SessionState
    public private(set) var status: PresenceStatus = .online
    public private(set) var natType = NATType.unknown
    public private(set) var publicEndpoint = ""
    public private(set) var privateEndpoints: [String] = []
    private var link: Link = .down
    private var pending: [UInt64: (Pending, deadline: Double)] = [:]
    private var confirming: [String: (at: Double, sequence: UInt64)] = [:]
    private var misses: [String: Int] = [:]
    private var nextPublish: Double = .infinity
    private var nextRecheck: Double = .infinity
    private var nextRetry: Double = .infinity
    private var actions: [Action] = []
    private var nextID: UInt64 = 1
    /// Message ids: unguessable in production (`SecureRandomGenerator`), seeded in tests.
    private var identifiers: any RandomNumberGenerator & Sendable

    public init(
        identity: LocalIdentity, verifier: Verifier, messageKey: X25519.PrivateKey, state: SessionState, configuration: Configuration = .init(),
        identifiers: any RandomNumberGenerator & Sendable = SecureRandomGenerator()
    ) throws {
        precondition(identity.credential != nil, "a session needs a credential")
        self.identifiers = identifiers
        self.identity = identity
        self.verifier = verifier
        self.messageKey = messageKey
        self.messageKeyPublic = try messageKey.publicKey()
        self.state = state
        self.configuration = configuration
    }

    public var name: String { identity.credential!.name }
    public var supernode: Contact? {
        if case let .attached(contact) = link { return contact }
        return nil
    }
    public var isAttached: Bool { supernode != nil }

    public mutating func poll() -> Action? {
        actions.isEmpty ? nil : actions.removeFirst()
    }

    public var nextDeadline: Double? {
        var deadline = min(nextPublish, nextRecheck, nextRetry)
        for entry in pending.values { deadline = min(deadline, entry.deadline) }
        for entry in confirming.values { deadline = min(deadline, entry.at) }
        return deadline.isFinite ? deadline : nil
    }

    // MARK: - Link to the supernode

    /// The link to a supernode is up and authenticated: attach.
    public mutating func linkUp(now: Moment) {
        link = .attaching
        var attach = OvAttach()
        attach.privateEndpoints = privateEndpoints
        attach.watchers = confirmedBuddies
        request(.attach, now: now) { $0.attach = attach }
    }

    public mutating func linkDown(now: Moment) {
        let wasAttached = isAttached
        link = .down
        // Searches the user is waiting for get an answer now rather than never.
        for (kind, _) in pending.values {
            if case let .search(token, name, .user) = kind {
                actions.append(
                    .event(
                        .searchFinished(
                            token: token,
                            SearchAnswer(
                                name: name, found: false, status: .unknown, privateEndpoints: [], hops: 0,
                                error: "the supernode link was lost; try again"))))
            }
        }
        pending = [:]
        confirming = [:]
        nextPublish = .infinity
        nextRecheck = .infinity
        nextRetry = .infinity
        if wasAttached { actions.append(.event(.detached)) }
    }

    /// What the NAT probe and the adapter learnt; republished at once when attached.
    public mutating func setNetwork(natType: NATType, publicEndpoint: String, privateEndpoints: [String], now: Moment) {
        guard natType != self.natType || publicEndpoint != self.publicEndpoint || privateEndpoints != self.privateEndpoints else { return }
        self.natType = natType
        self.publicEndpoint = publicEndpoint
        self.privateEndpoints = privateEndpoints
        if isAttached { publishPresence(now: now) }
    }

    public mutating func setStatus(_ status: PresenceStatus, now: Moment) {
        guard status == .online || status == .away, status != self.status else { return }
        self.status = status
        if isAttached {
            publishPresence(now: now)
            pushPresenceToBuddies(now: now)
        }
    }

    /// Going away on purpose: buddies see us offline at once (signed by us, so no confirmation
    /// is needed), then the supernode lets us go.
    public mutating func signOff(now: Moment) {
        guard isAttached else { return }
        status = .offline
        publishPresence(now: now)
        pushPresenceToBuddies(now: now)
        request(.detach, now: now) { $0.detach = OvDetach() }
    }

    // MARK: - Commands

    public mutating func addBuddy(_ rawName: String, text: String, now: Moment) throws(CommandError) {
        let name = try canonical(rawName)
        guard name != self.name else { throw .yourself }
        if let buddy = state.buddies[name], buddy.state == .incoming {
            return try acceptBuddy(name, now: now)
        }
        if state.buddies[name]?.state != .confirmed {
            state.buddies[name] = Buddy(name: name, state: .requested, since: now.wall)
            actions.append(.saveState)
        }
        var card = OvBuddyCard()
        card.messageKey = Data(messageKeyPublic)
        card.text = String(text.prefix(500))
        send(kind: .buddyRequest, to: name, payload: (try? card.serializedBytes()) ?? [], store: true, now: now)
    }

    public mutating func acceptBuddy(_ rawName: String, now: Moment) throws(CommandError) {
        let name = try canonical(rawName)
        guard var buddy = state.buddies[name], buddy.state == .incoming || buddy.state == .confirmed else { throw .noRequestFrom(name) }
        buddy.state = .confirmed
        state.buddies[name] = buddy
        actions.append(.saveState)
        actions.append(.event(.buddyConfirmed(name: name)))
        var card = OvBuddyCard()
        card.messageKey = Data(messageKeyPublic)
        send(kind: .buddyAccept, to: name, payload: (try? card.serializedBytes()) ?? [], store: true, now: now)
        buddyBecameConfirmed(name, now: now)
    }

    public mutating func removeBuddy(_ rawName: String, now: Moment) throws(CommandError) {
        let name = try canonical(rawName)
        guard state.buddies.removeValue(forKey: name) != nil else { throw .notABuddy(name) }
        actions.append(.saveState)
        actions.append(.event(.buddyRemoved(name: name)))
        send(kind: .buddyRemove, to: name, payload: [], store: true, now: now)
    }

    /// Seals `text` for the buddy and queues it; returns the message id.
    public mutating func sendMessage(to rawName: String, text: String, now: Moment) throws(CommandError) -> String {
        let name = try canonical(rawName)
        guard let buddy = state.buddies[name], buddy.state == .confirmed, let keyHex = buddy.messageKey,
            let key = [UInt8](hexString: keyHex)
        else { throw .notABuddy(name) }
        let id = identifiers.bytes(16)
        guard let sealed = try? MessageSealing.seal(text, to: key, from: self.name, to: name, id: id),
            let payload = try? sealed.serializedBytes() as [UInt8],
            let envelope = try? SignedRecords.makeEnvelope(kind: .message, to: name, payload: payload, id: id, identity: identity, now: now.wall),
            let bytes = try? envelope.serializedBytes() as [UInt8]
        else {
            actions.append(.event(.warning("could not seal a message for \(name)")))
            return ""
        }
        let message = OutboxMessage(id: id.hexString, to: name, text: text, sentAt: now.wall, state: .queued, envelope: Data(bytes))
        state.outbox.append(message)
        actions.append(.saveState)
        if isAttached { deliver(envelope, store: true, messageID: message.id, now: now) }
        return message.id
    }

    /// Sends call signalling to a buddy (live only: a call signal is never stored).
    public mutating func sendCallSignal(_ signal: OvCallSignal, to rawName: String, now: Moment) throws(CommandError) {
        let name = try canonical(rawName)
        guard state.buddies[name]?.state == .confirmed else { throw .notABuddy(name) }
        guard let payload = try? signal.serializedBytes() as [UInt8] else { return }
        send(kind: .call, to: name, payload: payload, store: false, now: now)
    }

    /// Sends conference signalling (live only). Invitations go to buddies only; mixers and
    /// capability queries may go to anyone.
    public mutating func sendConferenceSignal(_ signal: OvConferenceSignal, to rawName: String, now: Moment) throws(CommandError) {
        let name = try canonical(rawName)
        if case .invite? = signal.body, state.buddies[name]?.state != .confirmed { throw .notABuddy(name) }
        guard let payload = try? signal.serializedBytes() as [UInt8] else { return }
        send(kind: .conference, to: name, payload: payload, store: false, now: now)
    }

    /// Looks a user up in the DHT; the answer comes as `.searchFinished(token:)`.
    public mutating func search(_ rawName: String, now: Moment) throws(CommandError) -> UInt64 {
        let name = try canonical(rawName)
        let token = nextID
        if !isAttached {
            actions.append(
                .event(
                    .searchFinished(
                        token: token,
                        SearchAnswer(name: name, found: false, status: .unknown, privateEndpoints: [], hops: 0, error: "not attached to a supernode"))))
            nextID += 1
            return token
        }
        request(.search(token: token, name: name, purpose: .user), now: now) { message in
            var search = OvSearch()
            search.name = name
            message.search = search
        }
        return token
    }

    public var confirmedBuddies: [String] { state.buddies.values.filter { $0.state == .confirmed }.map(\.name).sorted() }

    // MARK: - Inputs

    /// An envelope the supernode delivered (live, or from the mailbox).
    public mutating func handleIncoming(_ message: OvLinkMessage, now: Moment) {
        guard case let .incoming(incoming)? = message.body else { return }
        process(incoming.envelope, now: now)
        var ack = OvLinkMessage()
        ack.id = message.id
        ack.ack = OvAck()
        actions.append(.send(ack))
    }

    /// Messages from the supernode that are not incoming envelopes: answers, handovers.
    public mutating func handleMessage(_ message: OvLinkMessage, now: Moment) {
        if case .incoming? = message.body { return handleIncoming(message, now: now) }
        guard let (kind, _) = pending.removeValue(forKey: message.id) else { return }
        switch (kind, message.body) {
        case let (.attach, .attached(attached)?):
            guard let contact = Contact(attached.supernode) else { return }
            link = .attached(supernode: contact)
            actions.append(.event(.attached(supernode: contact.name)))
            publishPresence(now: now)
            request(.fetchMailbox, now: now) { $0.fetchMailbox = OvFetchMailbox() }
            for buddy in confirmedBuddies { lookUp(buddy, purpose: .refresh, now: now) }
            pushPresenceToBuddies(now: now)
            flushOutbox(now: now)
            nextRecheck = now.monotonic + configuration.buddyRecheckInterval
            nextRetry = now.monotonic + configuration.retryInterval
        case (.attach, _):
            actions.append(.event(.warning("the supernode refused to attach us: \(refusal(message))")))
        case (.publish, .stored?):
            break
        case (.publish, _):
            actions.append(.event(.warning("presence not published: \(refusal(message))")))
        case let (.search(token, name, purpose), body):
            var found: (record: OvPresenceRecord, credential: Credential)?
            var hops = 0
            if case let .searchResult(result)? = body {
                hops = Int(result.hops)
                if result.found { found = try? SignedRecords.verifyPresence(result.presence, verifier: verifier, now: now.wall) }
                if let record = found?.record, record.name != name { found = nil }
            }
            let failed: String? = { if case .searchResult? = body { return nil } else { return refusal(message) } }()
            searchAnswered(token: token, name: name, purpose: purpose, found: found?.record, hops: hops, error: failed, now: now)
        case let (.deliver(messageID), .deliverResult(result)?):
            guard let messageID else { return }
            switch result.status {
            case .delivered: updateOutbox(messageID, .delivered(at: now.wall, receipt: false))
            case .stored where result.replicas > 0: updateOutbox(messageID, .stored(replicas: Int(result.replicas)))
            default: break  // stays queued; retried
            }
        case (.deliver, _):
            break
        case let (.fetchMailbox, .mailboxContents(contents)?):
            var ids: [[UInt8]] = []
            for envelope in contents.envelopes where envelope.to == name {
                process(envelope, now: now)
                ids.append(Array(envelope.id))
            }
            if !ids.isEmpty, let clear = try? SignedRecords.makeMailboxClear(ids: ids, identity: identity, now: now.wall) {
                request(.clearMailbox, now: now) { $0.mailboxClear = clear }
            }
        case (.fetchMailbox, _), (.clearMailbox, _), (.detach, _):
            break
        }
    }

    public mutating func handleTimeout(now: Moment) {
        for (id, entry) in pending where entry.deadline <= now.monotonic {
            pending[id] = nil
            if case let .search(token, name, purpose) = entry.0 {
                searchAnswered(token: token, name: name, purpose: purpose, found: nil, hops: 0, error: "no answer from the supernode", now: now)
            }
        }
        for (name, entry) in confirming where entry.at <= now.monotonic {
            confirming[name] = nil
            lookUp(name, purpose: .confirmDeparture(sequence: entry.sequence), now: now)
        }
        guard isAttached else { return }
        if now.monotonic >= nextPublish { publishPresence(now: now) }
        if now.monotonic >= nextRecheck {
            nextRecheck = now.monotonic + configuration.buddyRecheckInterval
            for buddy in state.buddies.values where buddy.state == .confirmed && buddy.presence != .offline {
                lookUp(buddy.name, purpose: .refresh, now: now)
            }
        }
        if now.monotonic >= nextRetry {
            nextRetry = now.monotonic + configuration.retryInterval
            flushOutbox(now: now)
        }
    }

    // MARK: - Envelopes

    private mutating func process(_ envelope: OvEnvelope, now: Moment) {
        guard envelope.to == name, let sender = try? SignedRecords.verifyEnvelope(envelope, verifier: verifier, now: now.wall) else { return }
        let idHex = Array(envelope.id).hexString
        switch envelope.kind {
        case .presence, .departure, .call, .conference:
            break  // live only; never duplicated in a harmful way
        default:
            guard !state.handledEnvelopes.contains(idHex) else { return }
            state.handledEnvelopes.append(idHex)
            if state.handledEnvelopes.count > 5000 { state.handledEnvelopes.removeFirst(1000) }
            actions.append(.saveState)
        }
        let from = sender.name
        switch envelope.kind {
        case .buddyRequest:
            guard let card = try? OvBuddyCard(serializedBytes: envelope.payload), card.messageKey.count == X25519.keyByteCount else { return }
            var buddy = state.buddies[from] ?? Buddy(name: from, state: .incoming, since: now.wall)
            buddy.messageKey = Array(card.messageKey).hexString
            buddy.requestText = card.text
            switch buddy.state {
            case .incoming:
                state.buddies[from] = buddy
                actions.append(.event(.buddyRequest(from: from, text: card.text)))
            case .requested, .confirmed:
                // Both asked, or they lost their list: consent exists on both sides.
                state.buddies[from] = buddy
                try? acceptBuddy(from, now: now)
            }
        case .buddyAccept:
            guard var buddy = state.buddies[from], buddy.state == .requested || buddy.state == .confirmed,
                let card = try? OvBuddyCard(serializedBytes: envelope.payload), card.messageKey.count == X25519.keyByteCount
            else { return }
            let wasConfirmed = buddy.state == .confirmed
            buddy.state = .confirmed
            buddy.messageKey = Array(card.messageKey).hexString
            state.buddies[from] = buddy
            if !wasConfirmed {
                actions.append(.event(.buddyConfirmed(name: from)))
                buddyBecameConfirmed(from, now: now)
            }
        case .buddyRemove:
            if state.buddies.removeValue(forKey: from) != nil { actions.append(.event(.buddyRemoved(name: from))) }
        case .message:
            guard state.buddies[from]?.state == .confirmed,
                let sealed = try? OvSealedText(serializedBytes: envelope.payload),
                let text = try? MessageSealing.open(sealed, with: messageKey, from: from, to: name, id: Array(envelope.id))
            else { return }
            let message = InboxMessage(id: idHex, from: from, text: text, sentAt: Double(envelope.sentAtMs) / 1000, receivedAt: now.wall)
            state.inbox.append(message)
            if state.inbox.count > configuration.maximumInbox { state.inbox.removeFirst(state.inbox.count - configuration.maximumInbox) }
            actions.append(.event(.messageReceived(message)))
            var receipt = OvReceipt()
            receipt.messageID = envelope.id
            receipt.deliveredAtMs = Int64(now.wall * 1000)
            send(kind: .receipt, to: from, payload: (try? receipt.serializedBytes()) ?? [], store: true, now: now)
        case .receipt:
            guard let receipt = try? OvReceipt(serializedBytes: envelope.payload) else { return }
            let id = Array(receipt.messageID).hexString
            if state.outbox.contains(where: { $0.id == id && $0.to == from }) {
                updateOutbox(id, .delivered(at: Double(receipt.deliveredAtMs) / 1000, receipt: true))
            }
        case .presence:
            guard var buddy = state.buddies[from], buddy.state == .confirmed,
                let signed = try? OvSignedPresence(serializedBytes: envelope.payload),
                let (record, _) = try? SignedRecords.verifyPresence(signed, verifier: verifier, now: now.wall),
                record.name == from, record.sequence > buddy.presenceSequence
            else { return }
            confirming[from] = nil
            misses[from] = nil
            apply(record, to: &buddy, now: now)
            state.buddies[from] = buddy
        case .call:
            // Only buddies may call; anything else is dropped unread.
            guard state.buddies[from]?.state == .confirmed, let signal = try? OvCallSignal(serializedBytes: envelope.payload) else { return }
            actions.append(.event(.callSignal(from: from, signal)))
        case .conference:
            guard let signal = try? OvConferenceSignal(serializedBytes: envelope.payload) else { return }
            // An invitation rings only from a buddy.
            if case .invite? = signal.body, state.buddies[from]?.state != .confirmed { return }
            actions.append(.event(.conferenceSignal(from: from, signal)))
        case .departure:
            // Sent by the supernode the buddy was attached to. Believed only after a second look.
            guard let departure = try? OvDeparture(serializedBytes: envelope.payload),
                let buddy = state.buddies[departure.subject], buddy.state == .confirmed, buddy.presence != .offline,
                buddy.supernode == from, departure.lastSequence >= buddy.presenceSequence
            else { return }
            confirming[departure.subject] = (now.monotonic + configuration.departureConfirmDelay, departure.lastSequence)
        default:
            return
        }
    }

    // MARK: - Presence

    private mutating func publishPresence(now: Moment) {
        guard case let .attached(supernode) = link else { return }
        state.presenceSequence = max(state.presenceSequence + 1, UInt64(now.wall * 1000))
        var record = OvPresenceRecord()
        record.name = name
        record.sequence = state.presenceSequence
        record.publishedAtMs = Int64(now.wall * 1000)
        record.expiresAtMs = Int64((now.wall + configuration.presenceLifetime) * 1000)
        record.status = status == .away ? .away : status == .offline ? .offline : .online
        record.supernode = supernode.message
        record.publicEndpoint = publicEndpoint
        record.privateEndpoints = privateEndpoints
        record.natType = natType.rawValue
        record.messageKey = Data(messageKeyPublic)
        guard let signed = try? SignedRecords.signPresence(record, identity: identity) else { return }
        latestPresence = signed
        actions.append(.saveState)
        nextPublish = now.monotonic + configuration.presenceLifetime / 3
        request(.publish, now: now) { message in
            var publish = OvPublishPresence()
            publish.presence = signed
            message.publishPresence = publish
        }
    }

    private var latestPresence: OvSignedPresence?

    private mutating func pushPresenceToBuddies(now: Moment) {
        guard let latestPresence, let payload = try? latestPresence.serializedBytes() as [UInt8] else { return }
        for buddy in confirmedBuddies { send(kind: .presence, to: buddy, payload: payload, store: false, now: now) }
    }

    private mutating func buddyBecameConfirmed(_ name: String, now: Moment) {
        guard isAttached else { return }
        lookUp(name, purpose: .refresh, now: now)
        if let latestPresence, let payload = try? latestPresence.serializedBytes() as [UInt8] {
            send(kind: .presence, to: name, payload: payload, store: false, now: now)
        }
        // The supernode must learn the new watcher too, for departure notices.
        var attach = OvAttach()
        attach.privateEndpoints = privateEndpoints
        attach.watchers = confirmedBuddies
        request(.attach, now: now) { $0.attach = attach }
    }

    private mutating func lookUp(_ name: String, purpose: SearchPurpose, now: Moment) {
        let token = nextID
        request(.search(token: token, name: name, purpose: purpose), now: now) { message in
            var search = OvSearch()
            search.name = name
            message.search = search
        }
    }

    private mutating func searchAnswered(token: UInt64, name: String, purpose: SearchPurpose, found: OvPresenceRecord?, hops: Int, error: String?, now: Moment)
    {
        switch purpose {
        case .user:
            var answer = SearchAnswer(name: name, found: found != nil, status: .offline, privateEndpoints: [], hops: hops, error: error)
            if let record = found {
                answer.status = Self.status(of: record)
                answer.supernode = record.supernode.name
                answer.natType = NATType(reported: record.natType)
                answer.publicEndpoint = record.publicEndpoint
                answer.privateEndpoints = record.privateEndpoints
            }
            actions.append(.event(.searchFinished(token: token, answer)))
            if let record = found, var buddy = state.buddies[name], buddy.state == .confirmed, record.sequence > buddy.presenceSequence {
                apply(record, to: &buddy, now: now)
                state.buddies[name] = buddy
            }
        case .refresh, .confirmDeparture:
            guard var buddy = state.buddies[name], buddy.state == .confirmed, error == nil else { return }
            if let record = found, record.sequence > buddy.presenceSequence || (record.sequence == buddy.presenceSequence && buddy.presence == .unknown) {
                misses[name] = nil
                apply(record, to: &buddy, now: now)
            } else if found == nil {
                if case .confirmDeparture = purpose {
                    setPresence(&buddy, .offline, now: now)
                } else {
                    let count = (misses[name] ?? 0) + 1
                    misses[name] = count
                    if buddy.presence == .unknown || count >= configuration.missesBeforeOffline { setPresence(&buddy, .offline, now: now) }
                }
            } else if case let .confirmDeparture(sequence) = purpose, let record = found, record.sequence <= sequence {
                // The record the supernode withdrew is still served somewhere: it is gone.
                setPresence(&buddy, .offline, now: now)
            }
            state.buddies[name] = buddy
        }
    }

    private mutating func apply(_ record: OvPresenceRecord, to buddy: inout Buddy, now: Moment) {
        buddy.presenceSequence = record.sequence
        buddy.supernode = record.supernode.name
        buddy.natType = NATType(reported: record.natType)
        buddy.publicEndpoint = record.publicEndpoint
        if record.messageKey.count == X25519.keyByteCount { buddy.messageKey = Array(record.messageKey).hexString }
        setPresence(&buddy, Self.status(of: record), now: now)
    }

    private mutating func setPresence(_ buddy: inout Buddy, _ status: PresenceStatus, now: Moment) {
        guard buddy.presence != status else { return }
        buddy.presence = status
        buddy.presenceChangedAt = now.wall
        actions.append(.event(.presenceChanged(name: buddy.name, status: status)))
    }

    private static func status(of record: OvPresenceRecord) -> PresenceStatus {
        switch record.status {
        case .online: return .online
        case .away: return .away
        default: return .offline
        }
    }

    // MARK: - Sending

    private mutating func send(kind: OvEnvelopeKind, to recipient: String, payload: [UInt8], store: Bool, now: Moment) {
        guard isAttached, let envelope = try? SignedRecords.makeEnvelope(kind: kind, to: recipient, payload: payload, identity: identity, now: now.wall) else {
            return
        }
        deliver(envelope, store: store, messageID: nil, now: now)
    }

    private mutating func deliver(_ envelope: OvEnvelope, store: Bool, messageID: String?, now: Moment) {
        request(.deliver(messageID: messageID), now: now) { message in
            var deliver = OvDeliver()
            deliver.envelope = envelope
            deliver.storeIfOffline = store
            message.deliver = deliver
        }
    }

    private mutating func flushOutbox(now: Moment) {
        let inFlight = Set(pending.values.compactMap { entry -> String? in if case let .deliver(id) = entry.0 { return id } else { return nil } })
        for message in state.outbox where message.state == .queued && !inFlight.contains(message.id) {
            guard let envelope = try? OvEnvelope(serializedBytes: message.envelope) else { continue }
            deliver(envelope, store: true, messageID: message.id, now: now)
        }
    }

    private mutating func updateOutbox(_ id: String, _ newState: OutboxState) {
        guard let index = state.outbox.firstIndex(where: { $0.id == id }) else { return }
        // A receipt is final; a "stored" never overrides "delivered".
        switch (state.outbox[index].state, newState) {
        case (.delivered(_, true), _): return
        case (.delivered, .stored): return
        default: break
        }
        state.outbox[index].state = newState
        actions.append(.saveState)
        actions.append(.event(.messageUpdated(id: id, state: newState)))
    }

    // MARK: - Helpers

    private mutating func request(_ kind: Pending, now: Moment, _ fill: (inout OvLinkMessage) -> Void) {
        var message = OvLinkMessage()
        message.id = nextID
        nextID += 1
        fill(&message)
        pending[message.id] = (kind, now.monotonic + configuration.requestTimeout)
        actions.append(.send(message))
    }

    private func canonical(_ raw: String) throws(CommandError) -> String {
        do { return try UserName.canonical(raw) } catch { throw .invalidName(error.description) }
    }

    private func refusal(_ message: OvLinkMessage) -> String {
        if case let .refused(refused)? = message.body { return refused.reason }
        return "unexpected answer"
    }
}
