import Foundation
import SkylarkCrypto
import SkylarkTraversal
import SkylarkWire

/// Identifies one link of a node; chosen by the I/O adapter. `LinkID.local` is the node's own
/// user session when the node is a supernode (it attaches to itself).
public typealias LinkID = UInt64

extension LinkID {
    public static let local: LinkID = 0
}

/// What a supernode does for the overlay, as a sans-I/O core: it serves its attached clients
/// (presence publishing, search, delivery, mailboxes, reachability checks), takes part in the
/// DHT, and tells a dropped client's buddies — after a grace period in which the client may
/// re-attach — that it left. The adapter feeds it link events, messages and time, and carries
/// out the actions it returns.
public struct SupernodeCore: Sendable {
    public struct Configuration: Sendable {
        public var dht = DHTCore.Configuration()
        /// A dropped client has this long to re-attach before its buddies are told.
        public var departureGrace: Double = 2
        /// How long an attached client has to acknowledge a delivered envelope.
        public var clientDeliveryTimeout: Double = 3
        /// How long the recipient's supernode has to answer a Forward.
        public var forwardTimeout: Double = 4
        public var maximumClients = 20_000
        public var hostCacheAnswerSize = 40
        /// UDP probe requests accepted per source address per minute.
        public var probesPerMinute = 30
        /// Relays (besides the two ends) in a relay circuit.
        public var relaysPerCircuit = 2
        /// Attempts to build a circuit around refusing relays.
        public var circuitAttempts = 3
        /// How long a hop has to answer a CircuitSetup.
        public var circuitSetupTimeout: Double = 4
        public init() {}
    }

    public enum Action: Sendable {
        /// Send on a link (a client's, or the one a supernode request came in on).
        case send(link: LinkID, message: OvLinkMessage)
        /// Send to a supernode, opening a link to it if there is none.
        case sendToNode(Contact, OvLinkMessage)
        /// Carry one login request to the login server and answer `LoginRelayReply` on the link.
        case relayLogin(link: LinkID, requestID: UInt64, request: [UInt8])
        /// Dial the node back (TCP DIAL_BACK hello and a UDP probe with the nonce), then call
        /// `dialBackCompleted(token:...)`.
        case dialBack(order: OvDialBackOrder, token: UInt64)
        /// Send a UDP Probe datagram.
        case sendProbe(to: HostPort, transactionID: [UInt8], fromAlternatePort: Bool)
        case closeLink(LinkID)
        case log(String, [String: String])
    }

    public struct AttachedClient: Sendable {
        public var peer: PeerIdentity
        public var watchers: [String]
        public var observedEndpoint: String
        public var presenceSequence: UInt64?
    }

    private enum Origin: Sendable {
        case client(link: LinkID, requestID: UInt64)
        case peer(link: LinkID, requestID: UInt64)
        /// Our own departure notices: nobody waits for the result.
        case notice
    }

    private enum DeliveryStage: Sendable {
        case awaitingClient(link: LinkID, requestID: UInt64)
        case lookingUp(DHTCore.OperationID)
        case forwarding(node: NodeID, requestID: UInt64)
        case storing(DHTCore.OperationID)
    }

    private struct Delivery: Sendable {
        var origin: Origin
        var envelope: OvEnvelope
        var storeIfOffline: Bool
        var stage: DeliveryStage
        var deadline: Double
    }

    private enum Pending: Sendable {
        case publish(link: LinkID, requestID: UInt64, name: String, sequence: UInt64)
        case search(link: LinkID, requestID: UInt64)
        case mailbox(link: LinkID, requestID: UInt64, owner: String)
        case clearMailbox(link: LinkID, requestID: UInt64)
        case dialBackViaPeer(link: LinkID, requestID: UInt64, prober: String)
        case unpublish
    }

    /// A circuit being set up: ours (for a client) or one we are a hop of.
    private struct CircuitSetupState: Sendable {
        enum Origin: Sendable {
            case client(link: LinkID, requestID: UInt64, callee: String, calleeSupernode: Contact, attempt: Int, avoid: Set<NodeID>)
            case upstream(link: LinkID, requestID: UInt64)
        }
        var origin: Origin
        /// Our leg toward the caller: torn down if the setup fails.
        var ownLeg: [UInt8]
        var next: NodeID
        var deadline: Double
    }

    private struct Departure: Sendable {
        var client: AttachedClient
        var announceAt: Double
    }

    public let configuration: Configuration
    public private(set) var dht: DHTCore
    private let identity: LocalIdentity
    private let verifier: Verifier
    public private(set) var clients: [LinkID: AttachedClient] = [:]
    private var linkByName: [String: LinkID] = [:]
    private var deliveries: [UInt64: Delivery] = [:]
    private var pendingByOperation: [DHTCore.OperationID: Pending] = [:]
    private var pendingByRequest: [UInt64: (pending: Pending, deadline: Double)] = [:]
    private var departures: [String: Departure] = [:]
    private var dialBackTokens: [UInt64: Origin] = [:]
    private var circuitSetups: [UInt64: CircuitSetupState] = [:]
    private var relayLookups: [DHTCore.OperationID: (link: LinkID, requestID: UInt64, callee: String, avoid: Set<NodeID>)] = [:]
    public let relays: RelayTable
    private var probeBudget: [String: (windowStart: Double, count: Int)] = [:]
    private var actions: [Action] = []
    /// Ids of our own requests start high so they never collide with the DHT core's.
    private var nextID: UInt64 = 1 << 62
    private var random: SplitMix64
    /// Circuit leg ids: unguessable in production (`SecureRandomGenerator`), seeded in tests.
    private var identifiers: any RandomNumberGenerator & Sendable
    public var alternateUDPPort: UInt32 = 0
    /// Set by `depart`: the node is leaving and starts nothing new in the overlay.
    public private(set) var hasDeparted = false

    public init(
        identity: LocalIdentity, verifier: Verifier, contact: Contact, configuration: Configuration = .init(), seed: UInt64, now: Moment,
        relays: RelayTable = RelayTable(), identifiers: any RandomNumberGenerator & Sendable = SecureRandomGenerator()
    ) {
        self.relays = relays
        self.identifiers = identifiers
        self.identity = identity
        self.verifier = verifier
        self.configuration = configuration
        self.random = SplitMix64(seed: seed ^ 0x5EED)
        // A random start keeps our request ids apart from other supernodes'.
        var ids = SplitMix64(seed: seed ^ 0x1D)
        self.nextID = (1 << 62) + (ids.next() >> 24)
        self.dht = DHTCore(ownContact: contact, validator: OverlayRecordValidator(verifier: verifier), configuration: configuration.dht, seed: seed, now: now)
    }

    public var contact: Contact { dht.ownContact }
    public var clientCount: Int { clients.count }

    public mutating func updateContact(_ contact: Contact) { dht.updateOwnContact(contact) }

    public mutating func join(seeds: [Contact], now: Moment) {
        dht.join(seeds: seeds, now: now)
        drainDHT(now: now)
    }

    public mutating func learn(_ contact: Contact, now: Moment) {
        dht.learn(contact, now: now)
        drainDHT(now: now)
    }

    public mutating func poll() -> Action? {
        actions.isEmpty ? nil : actions.removeFirst()
    }

    public var nextDeadline: Double? {
        var deadline = dht.nextDeadline ?? .infinity
        for delivery in deliveries.values { deadline = min(deadline, delivery.deadline) }
        for departure in departures.values { deadline = min(deadline, departure.announceAt) }
        for entry in pendingByRequest.values { deadline = min(deadline, entry.deadline) }
        for setup in circuitSetups.values { deadline = min(deadline, setup.deadline) }
        return deadline.isFinite ? deadline : nil
    }

    /// Up to `maximum` supernodes for a host-cache answer: ourselves and contacts we know.
    public func hostCacheContacts(maximum: Int) -> [Contact] {
        let limit = max(1, min(maximum, configuration.hostCacheAnswerSize))
        return Array(([contact] + dht.routing.allContacts).prefix(limit))
    }

    // MARK: - Links

    /// A client's link closed. Unless it detached on purpose, its buddies hear of it after the
    /// grace period, and only if it has not attached again by then.
    public mutating func linkClosed(_ link: LinkID, now: Moment) {
        failRequests(onLink: link)
        guard let client = clients.removeValue(forKey: link) else { return }
        if linkByName[client.peer.name] == link { linkByName[client.peer.name] = nil }
        departures[client.peer.name] = Departure(client: client, announceAt: now.monotonic + configuration.departureGrace)
        log("client link dropped", ["client.name": client.peer.name])
    }

    // MARK: - Client requests

    public mutating func handleClientMessage(_ message: OvLinkMessage, link: LinkID, peer: PeerIdentity?, observedEndpoint: String, now: Moment) {
        guard !hasDeparted else { return refuse(link, message.id, .unavailable, "this supernode is leaving") }
        // An answer to an Incoming we delivered (its id is the delivery's).
        if let delivery = deliveries[message.id], case let .awaitingClient(target, _) = delivery.stage, target == link {
            var delivered = false
            if case .ack? = message.body { delivered = true }
            clientAnswered(message.id, delivered: delivered, now: now)
            return
        }
        switch message.body {
        case let .loginRelay(relay)?:
            guard relay.request.count <= 16 * 1024 else { return refuse(link, message.id, .invalid, "login request too large") }
            actions.append(.relayLogin(link: link, requestID: message.id, request: Array(relay.request)))
            return
        case let .hostCacheRequest(request)?:
            var reply = OvHostCacheReply()
            reply.supernodes = hostCacheContacts(maximum: Int(request.maximum)).map(\.message)
            var answer = OvLinkMessage()
            answer.id = message.id
            answer.hostCacheReply = reply
            actions.append(.send(link: link, message: answer))
            return
        default:
            break
        }
        guard let peer else { return refuse(link, message.id, .notAllowed, "log in first (this link is anonymous)") }

        switch message.body {
        case let .attach(attach)?:
            guard clients[link] != nil || clients.count < configuration.maximumClients else { return refuse(link, message.id, .overloaded, "supernode full") }
            if let previous = linkByName[peer.name], previous != link, clients[previous] != nil {
                // The same user attached again (a new session): the old link is dead weight.
                clients[previous] = nil
                actions.append(.closeLink(previous))
            }
            departures[peer.name] = nil
            let watchers = attach.watchers.prefix(1000).compactMap { try? UserName.canonical($0) }
            clients[link] = AttachedClient(peer: peer, watchers: watchers, observedEndpoint: observedEndpoint, presenceSequence: nil)
            linkByName[peer.name] = link
            var attached = OvAttached()
            attached.supernode = contact.message
            attached.observedEndpoint = observedEndpoint
            attached.alternateUdpPort = alternateUDPPort
            var answer = OvLinkMessage()
            answer.id = message.id
            answer.attached = attached
            actions.append(.send(link: link, message: answer))
            log("client attached", ["client.name": peer.name, "client.endpoint": observedEndpoint])

        case let .publishPresence(publish)?:
            guard clients[link] != nil else { return refuse(link, message.id, .notAllowed, "attach first") }
            let verified: (record: OvPresenceRecord, credential: Credential)
            do { verified = try SignedRecords.verifyPresence(publish.presence, verifier: verifier, now: now.wall) } catch {
                return refuse(link, message.id, .invalid, "presence refused: \(error)")
            }
            guard verified.record.name == peer.name else { return refuse(link, message.id, .invalid, "presence for another user") }
            guard NodeID(bytes: verified.record.supernode.nodeID) == contact.nodeID else {
                return refuse(link, message.id, .invalid, "presence names another supernode")
            }
            guard let record = try? OvDHTRecord.presence(publish.presence, name: peer.name), let operation = dht.store(record, now: now) else {
                return refuse(link, message.id, .invalid, "presence refused")
            }
            clients[link]?.presenceSequence = verified.record.sequence
            pendingByOperation[operation] = .publish(link: link, requestID: message.id, name: peer.name, sequence: verified.record.sequence)

        case let .search(search)?:
            guard let name = try? UserName.canonical(search.name) else { return refuse(link, message.id, .invalid, "not a valid name") }
            let operation = dht.findValue(NodeID.presenceKey(for: name), now: now)
            pendingByOperation[operation] = .search(link: link, requestID: message.id)

        case let .deliver(deliver)?:
            let envelope = deliver.envelope
            guard envelope.from == peer.name, (try? SignedRecords.verifyEnvelope(envelope, verifier: verifier, now: now.wall)) != nil else {
                return refuse(link, message.id, .invalid, "envelope refused: not signed by the sender")
            }
            guard let recipient = try? UserName.canonical(envelope.to), recipient == envelope.to else {
                return refuse(link, message.id, .invalid, "bad recipient")
            }
            startDelivery(envelope, storeIfOffline: deliver.storeIfOffline, origin: .client(link: link, requestID: message.id), now: now)

        case .fetchMailbox?:
            let operation = dht.collect(NodeID.mailboxKey(for: peer.name), now: now)
            pendingByOperation[operation] = .mailbox(link: link, requestID: message.id, owner: peer.name)

        case let .mailboxClear(clear)?:
            guard clear.name == peer.name, dht.validatorAccepts(clear, now: now) else { return refuse(link, message.id, .invalid, "mailbox clear refused") }
            var broadcast = OvLinkMessage()
            broadcast.mailboxClear = clear
            let operation = dht.broadcast(broadcast, near: NodeID.mailboxKey(for: peer.name), now: now)
            pendingByOperation[operation] = .clearMailbox(link: link, requestID: message.id)

        case let .dialBackRequest(request)?:
            guard request.nonce.count >= 8, request.nonce.count <= 64 else { return refuse(link, message.id, .invalid, "bad nonce") }
            var order = OvDialBackOrder()
            order.tcpEndpoints = Array(request.tcpEndpoints.prefix(4))
            order.udpEndpoint = request.udpEndpoint
            order.nonce = request.nonce
            // Another supernode dials, so the answer cannot come through a mapping our own
            // traffic opened in the client's NAT.
            let others = dht.routing.allContacts
            if let prober = others.isEmpty ? nil : others[Int(random.next() % UInt64(others.count))] {
                var out = OvLinkMessage()
                out.id = makeID()
                out.dialBackOrder = order
                pendingByRequest[out.id] = (.dialBackViaPeer(link: link, requestID: message.id, prober: prober.name), now.monotonic + 15)
                actions.append(.sendToNode(prober, out))
            } else {
                let token = makeID()
                dialBackTokens[token] = .client(link: link, requestID: message.id)
                actions.append(.dialBack(order: order, token: token))
            }

        case let .relayRequest(request)?:
            guard clients[link] != nil else { return refuse(link, message.id, .notAllowed, "attach first") }
            guard let callee = try? UserName.canonical(request.callee) else { return refuse(link, message.id, .invalid, "not a valid name") }
            let avoid = Set(request.avoid.filter { $0.count == NodeID.byteCount }.map { NodeID(bytes: $0) })
            let operation = dht.findValue(NodeID.presenceKey(for: callee), now: now)
            relayLookups[operation] = (link, message.id, callee, avoid)

        case .detach?:
            if let client = clients.removeValue(forKey: link) {
                if linkByName[peer.name] == link { linkByName[peer.name] = nil }
                unpublish(client, now: now)
            }
            var answer = OvLinkMessage()
            answer.id = message.id
            answer.ack = OvAck()
            actions.append(.send(link: link, message: answer))

        default:
            refuse(link, message.id, .notAllowed, "not a client request")
        }
        drainDHT(now: now)
    }

    // MARK: - Supernode requests and answers

    public mutating func handlePeerMessage(_ message: OvLinkMessage, link: LinkID, from sender: PeerIdentity, now: Moment) {
        guard !hasDeparted else { return }
        // Answers are matched to our requests by id and by who answers; a request is never taken
        // for an answer, whatever its id (every supernode numbers its own requests).
        if Self.isAnswer(message) {
            if let setup = circuitSetups[message.id], setup.next == sender.nodeID {
                circuitSetups[message.id] = nil
                return circuitAnswered(setup, message, now: now)
            }
            if let delivery = deliveries[message.id], case let .forwarding(node, _) = delivery.stage, node == sender.nodeID {
                var delivered = false
                if case let .forwarded(forwarded)? = message.body { delivered = forwarded.delivered }
                return forwardAnswered(message.id, delivered: delivered, now: now)
            }
            if case .dialBackResult? = message.body, let entry = pendingByRequest.removeValue(forKey: message.id) {
                return peerAnswered(entry.pending, message, now: now)
            }
        }
        switch message.body {
        case .findNode?, .findValue?, .store?, .unpublish?, .mailboxClear?, .depart?:
            if case .depart? = message.body { log("supernode departed", ["peer.name": sender.name]) }
            if let answer = dht.handleRequest(message, from: sender.nodeID, now: now) { actions.append(.send(link: link, message: answer)) }
        case .nodes?, .values?, .stored?, .ack?, .refused?:
            dht.handleResponse(message, from: sender.nodeID, now: now)
        case let .forward(forward)?:
            let envelope = forward.envelope
            guard (try? SignedRecords.verifyEnvelope(envelope, verifier: verifier, now: now.wall)) != nil,
                let target = linkByName[envelope.to]
            else {
                var answer = OvLinkMessage()
                answer.id = message.id
                answer.forwarded = OvForwarded()
                actions.append(.send(link: link, message: answer))
                break
            }
            let id = makeID()
            deliveries[id] = Delivery(
                origin: .peer(link: link, requestID: message.id), envelope: envelope, storeIfOffline: false,
                stage: .awaitingClient(link: target, requestID: id), deadline: now.monotonic + configuration.clientDeliveryTimeout)
            actions.append(.send(link: target, message: incoming(envelope, id: id)))
        case let .dialBackOrder(order)?:
            let token = makeID()
            dialBackTokens[token] = .peer(link: link, requestID: message.id)
            actions.append(.dialBack(order: order, token: token))
        case let .probeOrder(order)?:
            // From our second port, so this unsolicited probe cannot occupy the NAT tuple the
            // node's own traffic to our main port will need.
            if let target = HostPort(order.replyTo), order.transactionID.count <= 32 {
                actions.append(.sendProbe(to: target, transactionID: Array(order.transactionID), fromAlternatePort: true))
            }
        case let .circuitSetup(setup)?:
            circuitSetupArrived(setup, link: link, requestID: message.id, now: now)
        default:
            break
        }
        drainDHT(now: now)
    }

    /// A supernode we wanted to reach could not be dialled, or its link closed.
    public mutating func peerUnreachable(_ id: NodeID, now: Moment) {
        dht.handleUnreachable(id, now: now)
        for (key, delivery) in deliveries {
            if case let .forwarding(node, _) = delivery.stage, node == id { forwardAnswered(key, delivered: false, now: now) }
        }
        for (requestID, setup) in circuitSetups where setup.next == id {
            circuitSetups[requestID] = nil
            circuitFailed(setup, reason: "a relay could not be reached", now: now)
        }
        drainDHT(now: now)
    }

    /// The result of a `.dialBack` action.
    public mutating func dialBackCompleted(token: UInt64, tcpReached: Bool, udpSent: Bool) {
        guard let origin = dialBackTokens.removeValue(forKey: token) else { return }
        var result = OvDialBackResult()
        result.tcpReached = tcpReached
        result.udpSent = udpSent
        result.prober = identity.name ?? ""
        var answer = OvLinkMessage()
        answer.dialBackResult = result
        switch origin {
        case let .client(link, requestID), let .peer(link, requestID):
            answer.id = requestID
            actions.append(.send(link: link, message: answer))
        case .notice:
            break
        }
    }

    /// A UDP ProbeRequest arrived from `source` (NAT type detection). Answers only to the
    /// source, at most `probesPerMinute` per source, so the port cannot be used to flood others.
    public mutating func probeRequested(_ request: OvProbeRequest, from source: HostPort, now: Moment) {
        var budget = probeBudget[source.host] ?? (now.monotonic, 0)
        if now.monotonic - budget.windowStart > 60 { budget = (now.monotonic, 0) }
        budget.count += 1
        probeBudget[source.host] = budget
        if probeBudget.count > 10_000 { probeBudget = probeBudget.filter { now.monotonic - $0.value.windowStart <= 60 } }
        guard budget.count <= configuration.probesPerMinute, request.transactionID.count <= 32 else { return }
        switch request.kind {
        case .fromOtherPort:
            actions.append(.sendProbe(to: source, transactionID: Array(request.transactionID), fromAlternatePort: true))
        case .fromOtherNode:
            let others = dht.routing.allContacts
            guard !others.isEmpty else { return }
            var order = OvProbeOrder()
            order.transactionID = request.transactionID
            order.replyTo = source.description
            var message = OvLinkMessage()
            message.probeOrder = order
            actions.append(.sendToNode(others[Int(random.next() % UInt64(others.count))], message))
        default:
            break
        }
    }

    public mutating func handleTimeout(now: Moment) {
        guard !hasDeparted else { return }
        dht.handleTimeout(now: now)
        for (name, departure) in departures where departure.announceAt <= now.monotonic {
            departures[name] = nil
            announceDeparture(departure.client, now: now)
        }
        for (id, delivery) in deliveries where delivery.deadline <= now.monotonic {
            switch delivery.stage {
            case .awaitingClient: clientAnswered(id, delivered: false, now: now)
            case .forwarding: forwardAnswered(id, delivered: false, now: now)
            case .lookingUp, .storing: break  // the DHT core times those out itself
            }
        }
        for (requestID, setup) in circuitSetups where setup.deadline <= now.monotonic {
            circuitSetups[requestID] = nil
            circuitFailed(setup, reason: "a relay did not answer", now: now)
        }
        for (id, entry) in pendingByRequest where entry.deadline <= now.monotonic {
            pendingByRequest[id] = nil
            if case let .dialBackViaPeer(link, requestID, prober) = entry.pending {
                var result = OvDialBackResult()
                result.prober = prober
                var answer = OvLinkMessage()
                answer.id = requestID
                answer.dialBackResult = result
                actions.append(.send(link: link, message: answer))
            }
        }
        drainDHT(now: now)
    }

    /// Leaving the overlay: hand every client a list of other supernodes, give our records to
    /// the nodes closest to them, and tell our contacts we are gone.
    public mutating func depart(now: Moment) {
        guard !hasDeparted else { return }
        hasDeparted = true
        // Anything the DHT still wanted to send would carry our contact and undo the Depart.
        while dht.poll() != nil {}
        var handover = OvHandover()
        handover.supernodes = dht.routing.allContacts.prefix(20).map(\.message)
        for link in clients.keys where link != .local {
            var message = OvLinkMessage()
            message.handover = handover
            actions.append(.send(link: link, message: message))
        }
        for key in dht.store.allKeys {
            for record in dht.store.records(for: key, now: now.wall) {
                for target in dht.routing.closest(to: key, count: configuration.dht.replication) {
                    var store = OvStore()
                    store.record = record
                    store.sender = contact.message
                    var message = OvLinkMessage()
                    message.store = store
                    actions.append(.sendToNode(target, message))
                }
            }
        }
        var depart = OvDepart()
        depart.nodeID = Data(contact.nodeID.bytes)
        for peer in dht.routing.allContacts {
            var message = OvLinkMessage()
            message.depart = depart
            actions.append(.sendToNode(peer, message))
        }
    }

    // MARK: - Delivery

    private mutating func startDelivery(_ envelope: OvEnvelope, storeIfOffline: Bool, origin: Origin, now: Moment) {
        let id = makeID()
        if let target = linkByName[envelope.to] {
            deliveries[id] = Delivery(
                origin: origin, envelope: envelope, storeIfOffline: storeIfOffline,
                stage: .awaitingClient(link: target, requestID: id), deadline: now.monotonic + configuration.clientDeliveryTimeout)
            actions.append(.send(link: target, message: incoming(envelope, id: id)))
            return
        }
        let operation = dht.findValue(NodeID.presenceKey(for: envelope.to), now: now)
        deliveries[id] = Delivery(origin: origin, envelope: envelope, storeIfOffline: storeIfOffline, stage: .lookingUp(operation), deadline: .infinity)
    }

    private mutating func clientAnswered(_ id: UInt64, delivered: Bool, now: Moment) {
        guard let delivery = deliveries[id] else { return }
        if delivered { return finishDelivery(id, .delivered, replicas: 0) }
        if case .peer = delivery.origin { return finishDelivery(id, .offline, replicas: 0) }
        storeOrGiveUp(id, now: now)
    }

    private mutating func forwardAnswered(_ id: UInt64, delivered: Bool, now: Moment) {
        guard deliveries[id] != nil else { return }
        if delivered { return finishDelivery(id, .delivered, replicas: 0) }
        storeOrGiveUp(id, now: now)
    }

    private mutating func lookedUp(_ id: UInt64, outcome: DHTCore.LookupOutcome, now: Moment) {
        guard let delivery = deliveries[id] else { return }
        let presence = outcome.records.first.flatMap { try? OvSignedPresence(serializedBytes: $0.value) }
            .flatMap { try? SignedRecords.verifyPresence($0, verifier: verifier, now: now.wall).record }
        guard let presence, presence.status != .offline, let target = Contact(presence.supernode), target.nodeID != contact.nodeID else {
            return storeOrGiveUp(id, now: now)
        }
        var forward = OvForward()
        forward.envelope = delivery.envelope
        var message = OvLinkMessage()
        message.id = id
        message.forward = forward
        let deadline = now.monotonic + configuration.forwardTimeout
        deliveries[id]?.stage = .forwarding(node: target.nodeID, requestID: id)
        deliveries[id]?.deadline = deadline
        actions.append(.sendToNode(target, message))
    }

    private mutating func storeOrGiveUp(_ id: UInt64, now: Moment) {
        guard let delivery = deliveries[id] else { return }
        guard delivery.storeIfOffline, let record = try? OvDHTRecord.mailboxItem(delivery.envelope), let operation = dht.store(record, now: now) else {
            return finishDelivery(id, .offline, replicas: 0)
        }
        deliveries[id]?.stage = .storing(operation)
        deliveries[id]?.deadline = .infinity
    }

    private mutating func finishDelivery(_ id: UInt64, _ status: OvDeliveryStatus, replicas: Int) {
        guard let delivery = deliveries.removeValue(forKey: id) else { return }
        var answer = OvLinkMessage()
        switch delivery.origin {
        case let .client(link, requestID):
            var result = OvDeliverResult()
            result.status = status == .stored && replicas == 0 ? .failed : status
            result.replicas = UInt32(replicas)
            if result.status == .failed { result.reason = "no supernode could store the envelope" }
            answer.id = requestID
            answer.deliverResult = result
            actions.append(.send(link: link, message: answer))
        case let .peer(link, requestID):
            var forwarded = OvForwarded()
            forwarded.delivered = status == .delivered
            answer.id = requestID
            answer.forwarded = forwarded
            actions.append(.send(link: link, message: answer))
        case .notice:
            break
        }
    }

    private func incoming(_ envelope: OvEnvelope, id: UInt64) -> OvLinkMessage {
        var incoming = OvIncoming()
        incoming.envelope = envelope
        var message = OvLinkMessage()
        message.id = id
        message.incoming = incoming
        return message
    }

    static func isAnswer(_ message: OvLinkMessage) -> Bool {
        switch message.body {
        case .nodes?, .values?, .stored?, .ack?, .refused?, .forwarded?, .dialBackResult?, .circuitReady?: return true
        default: return false
        }
    }

    // MARK: - Relay circuits

    private mutating func relayLookupFinished(
        _ lookup: (link: LinkID, requestID: UInt64, callee: String, avoid: Set<NodeID>),
        _ outcome: DHTCore.LookupOutcome, now: Moment
    ) {
        let presence = outcome.records.first.flatMap { try? OvSignedPresence(serializedBytes: $0.value) }
            .flatMap { try? SignedRecords.verifyPresence($0, verifier: verifier, now: now.wall).record }
        guard let presence, presence.status != .offline, let far = Contact(presence.supernode), far.udpEndpoint != nil else {
            return refuse(lookup.link, lookup.requestID, .unavailable, "\(lookup.callee) is not online")
        }
        buildCircuit(
            .client(link: lookup.link, requestID: lookup.requestID, callee: lookup.callee, calleeSupernode: far, attempt: 1, avoid: lookup.avoid), now: now)
    }

    /// Our end of a circuit for a client: a leg facing the client, bound by its first packet,
    /// and a leg toward the first hop of the chain (two relays, then the callee's supernode).
    private mutating func buildCircuit(_ origin: CircuitSetupState.Origin, now: Moment) {
        guard case let .client(link, requestID, callee, far, _, avoid) = origin else { return }
        let ownLeg = makeLegID()
        var candidates = dht.routing.allContacts.filter { $0.nodeID != far.nodeID && !avoid.contains($0.nodeID) && $0.udpEndpoint != nil }
        var chain: [Contact] = []
        while chain.count < configuration.relaysPerCircuit, !candidates.isEmpty {
            chain.append(candidates.remove(at: Int(random.next() % UInt64(candidates.count))))
        }
        chain.append(far)
        if chain.count == 1 && far.nodeID == contact.nodeID {
            // The network has no relay and both callers are here: one circuit joining two clients.
            let farLeg = makeLegID()
            guard linkByName[callee] != nil else { return refuse(link, requestID, .unavailable, "\(callee) is not attached here any more") }
            do {
                try relays.admit(towardCaller: .init(id: ownLeg, endpoint: nil), towardCallee: .init(id: farLeg, endpoint: nil), now: now.monotonic)
            } catch {
                return refuse(link, requestID, .overloaded, error.description)
            }
            return grant(link: link, requestID: requestID, ownLeg: ownLeg, farLeg: farLeg, relays: [identity.name ?? ""], farEndpoint: contact.udpEndpoint)
        }
        let first = chain[0]
        do {
            try relays.admit(
                towardCaller: .init(id: ownLeg, endpoint: nil),
                towardCallee: .init(id: makeLegID(), endpoint: first.udpEndpoint.map { .udp($0) }), now: now.monotonic)
        } catch {
            return refuse(link, requestID, .overloaded, error.description)
        }
        sendSetup(toward: chain, after: ownLeg, callee: callee, origin: origin, now: now)
    }

    private mutating func makeLegID() -> [UInt8] { identifiers.bytes(RelayCircuits.legIDByteCount) }

    /// Sends the CircuitSetup for the leg after `ownLeg` to the first of `chain`.
    private mutating func sendSetup(toward chain: [Contact], after ownLeg: [UInt8], callee: String, origin: CircuitSetupState.Origin, now: Moment) {
        // The leg id toward the next hop was chosen at admission: read it back by routing nothing.
        guard let next = chain.first, let nextLeg = relays.outgoingLeg(after: ownLeg) else {
            circuitFailed(CircuitSetupState(origin: origin, ownLeg: ownLeg, next: contact.nodeID, deadline: now.monotonic), reason: "no relay", now: now)
            return
        }
        var setup = OvCircuitSetup()
        setup.legID = Data(nextLeg)
        setup.remaining = chain.dropFirst().map(\.message)
        setup.callee = callee
        setup.bandwidth = UInt64(relays.limits.perCircuitBandwidth)
        setup.previousEndpoint = contact.udpEndpoint?.description ?? ""
        var message = OvLinkMessage()
        message.id = makeID()
        message.circuitSetup = setup
        circuitSetups[message.id] = CircuitSetupState(
            origin: origin, ownLeg: ownLeg, next: next.nodeID, deadline: now.monotonic + configuration.circuitSetupTimeout)
        actions.append(.sendToNode(next, message))
    }

    /// We are a hop of someone's circuit.
    private mutating func circuitSetupArrived(_ setup: OvCircuitSetup, link: LinkID, requestID: UInt64, now: Moment) {
        guard setup.legID.count == RelayCircuits.legIDByteCount, let previous = HostPort(setup.previousEndpoint) else {
            return refuse(link, requestID, .invalid, "bad circuit setup")
        }
        let inbound = RelayCircuits.Leg(id: Array(setup.legID), endpoint: .udp(previous))
        let remaining = setup.remaining.prefix(4).compactMap(Contact.init)
        if remaining.isEmpty {
            // The last hop: the callee must be attached here; its leg is bound by its first packet.
            guard linkByName[setup.callee] != nil else { return refuse(link, requestID, .unavailable, "\(setup.callee) is not attached here") }
            let farLeg = makeLegID()
            do {
                try relays.admit(towardCaller: inbound, towardCallee: .init(id: farLeg, endpoint: nil), bandwidth: Double(setup.bandwidth), now: now.monotonic)
            } catch {
                return refuse(link, requestID, .overloaded, error.description)
            }
            var ready = OvCircuitReady()
            ready.relays = [identity.name ?? ""]
            ready.farLegID = Data(farLeg)
            ready.farEndpoint = contact.udpEndpoint?.description ?? ""
            var answer = OvLinkMessage()
            answer.id = requestID
            answer.circuitReady = ready
            actions.append(.send(link: link, message: answer))
            return
        }
        guard let next = remaining.first, let nextUDP = next.udpEndpoint else { return refuse(link, requestID, .invalid, "bad circuit setup") }
        do {
            try relays.admit(
                towardCaller: inbound, towardCallee: .init(id: makeLegID(), endpoint: .udp(nextUDP)),
                bandwidth: Double(setup.bandwidth), now: now.monotonic)
        } catch {
            return refuse(link, requestID, .overloaded, error.description)
        }
        sendSetup(toward: remaining, after: inbound.id, callee: setup.callee, origin: .upstream(link: link, requestID: requestID), now: now)
    }

    private mutating func circuitAnswered(_ setup: CircuitSetupState, _ message: OvLinkMessage, now: Moment) {
        guard case let .circuitReady(ready)? = message.body else {
            var reason = "refused"
            if case let .refused(refused)? = message.body { reason = refused.reason }
            return circuitFailed(setup, reason: reason, now: now)
        }
        let name = identity.name ?? ""
        switch setup.origin {
        case let .upstream(link, requestID):
            var forward = ready
            forward.relays = [name] + ready.relays
            var answer = OvLinkMessage()
            answer.id = requestID
            answer.circuitReady = forward
            actions.append(.send(link: link, message: answer))
        case let .client(link, requestID, _, _, _, _):
            grant(
                link: link, requestID: requestID, ownLeg: setup.ownLeg, farLeg: Array(ready.farLegID), relays: [name] + ready.relays,
                farEndpoint: HostPort(ready.farEndpoint))
        }
    }

    private mutating func circuitFailed(_ setup: CircuitSetupState, reason: String, now: Moment) {
        relays.teardown(leg: setup.ownLeg)
        switch setup.origin {
        case let .upstream(link, requestID):
            refuse(link, requestID, .overloaded, reason)
        case let .client(link, requestID, callee, far, attempt, avoid):
            guard attempt < configuration.circuitAttempts else { return refuse(link, requestID, .overloaded, "no relay circuit: \(reason)") }
            // Around the relay that failed (and any other we tried).
            var avoid = avoid
            if setup.next != far.nodeID { avoid.insert(setup.next) }
            buildCircuit(.client(link: link, requestID: requestID, callee: callee, calleeSupernode: far, attempt: attempt + 1, avoid: avoid), now: now)
        }
    }

    private mutating func grant(link: LinkID, requestID: UInt64, ownLeg: [UInt8], farLeg: [UInt8], relays names: [String], farEndpoint: HostPort?) {
        var granted = OvRelayGranted()
        granted.legID = Data(ownLeg)
        granted.farLegID = Data(farLeg)
        granted.relays = names
        granted.farEndpoint = farEndpoint?.description ?? ""
        var answer = OvLinkMessage()
        answer.id = requestID
        answer.relayGranted = granted
        actions.append(.send(link: link, message: answer))
    }

    // MARK: - Departures

    private mutating func announceDeparture(_ client: AttachedClient, now: Moment) {
        guard linkByName[client.peer.name] == nil else { return }  // back already
        unpublish(client, now: now)
        var departure = OvDeparture()
        departure.subject = client.peer.name
        departure.lastSequence = client.presenceSequence ?? 0
        guard let payload = try? departure.serializedBytes() as [UInt8] else { return }
        for watcher in client.watchers {
            guard let envelope = try? SignedRecords.makeEnvelope(kind: .departure, to: watcher, payload: payload, identity: identity, now: now.wall) else {
                continue
            }
            startDelivery(envelope, storeIfOffline: false, origin: .notice, now: now)
        }
        log("announced departure", ["client.name": client.peer.name, "client.watchers": "\(client.watchers.count)"])
    }

    private mutating func unpublish(_ client: AttachedClient, now: Moment) {
        guard let sequence = client.presenceSequence else { return }
        var unpublish = OvUnpublish()
        unpublish.key = Data(NodeID.presenceKey(for: client.peer.name).bytes)
        unpublish.name = client.peer.name
        unpublish.sequence = sequence
        var message = OvLinkMessage()
        message.unpublish = unpublish
        let operation = dht.broadcast(message, near: NodeID.presenceKey(for: client.peer.name), now: now)
        pendingByOperation[operation] = .unpublish
    }

    // MARK: - DHT results

    private mutating func drainDHT(now: Moment) {
        while let action = dht.poll() {
            switch action {
            case let .send(contact, message):
                actions.append(.sendToNode(contact, message))
            case let .lookupFinished(operation, outcome):
                if let delivery = deliveries.first(where: { if case let .lookingUp(op) = $0.value.stage { return op == operation } else { return false } }) {
                    lookedUp(delivery.key, outcome: outcome, now: now)
                } else if let lookup = relayLookups.removeValue(forKey: operation) {
                    relayLookupFinished(lookup, outcome, now: now)
                } else if let pending = pendingByOperation.removeValue(forKey: operation) {
                    completeLookup(pending, outcome)
                }
            case let .storeFinished(operation, replicas):
                if let delivery = deliveries.first(where: { if case let .storing(op) = $0.value.stage { return op == operation } else { return false } }) {
                    finishDelivery(delivery.key, .stored, replicas: replicas)
                } else if case let .publish(link, requestID, _, _)? = pendingByOperation.removeValue(forKey: operation) {
                    var answer = OvLinkMessage()
                    answer.id = requestID
                    if replicas > 0 {
                        answer.stored = OvStored()
                    } else {
                        answer.refused = .init(code: .unavailable, reason: "no supernode stored the presence record")
                    }
                    actions.append(.send(link: link, message: answer))
                }
            case let .broadcastFinished(operation, _):
                if case let .clearMailbox(link, requestID)? = pendingByOperation.removeValue(forKey: operation) {
                    var answer = OvLinkMessage()
                    answer.id = requestID
                    answer.ack = OvAck()
                    actions.append(.send(link: link, message: answer))
                }
            }
        }
    }

    private mutating func completeLookup(_ pending: Pending, _ outcome: DHTCore.LookupOutcome) {
        var answer = OvLinkMessage()
        switch pending {
        case let .search(link, requestID):
            var result = OvSearchResult()
            if let record = outcome.records.first(where: { $0.kind == .presence }), let signed = try? OvSignedPresence(serializedBytes: record.value) {
                result.found = true
                result.presence = signed
            }
            result.hops = UInt32(outcome.hops)
            answer.id = requestID
            answer.searchResult = result
            actions.append(.send(link: link, message: answer))
        case let .mailbox(link, requestID, owner):
            var contents = OvMailboxContents()
            contents.envelopes = outcome.records.filter { $0.kind == .mailboxItem }.prefix(500)
                .compactMap { try? OvEnvelope(serializedBytes: $0.value) }.filter { $0.to == owner }
            answer.id = requestID
            answer.mailboxContents = contents
            actions.append(.send(link: link, message: answer))
        default:
            break
        }
    }

    private mutating func peerAnswered(_ pending: Pending, _ message: OvLinkMessage, now: Moment) {
        guard case let .dialBackViaPeer(link, requestID, prober) = pending else { return }
        var result = OvDialBackResult()
        if case let .dialBackResult(answer)? = message.body { result = answer }
        if result.prober.isEmpty { result.prober = prober }
        var answer = OvLinkMessage()
        answer.id = requestID
        answer.dialBackResult = result
        actions.append(.send(link: link, message: answer))
    }

    private mutating func failRequests(onLink link: LinkID) {
        for (id, delivery) in deliveries {
            if case let .awaitingClient(target, _) = delivery.stage, target == link { deliveries[id]?.deadline = 0 }
        }
    }

    private mutating func refuse(_ link: LinkID, _ requestID: UInt64, _ code: OvRefusalCode, _ reason: String) {
        var answer = OvLinkMessage()
        answer.id = requestID
        answer.refused = .init(code: code, reason: reason)
        actions.append(.send(link: link, message: answer))
    }

    private mutating func log(_ text: String, _ metadata: [String: String]) {
        actions.append(.log(text, metadata))
    }

    private mutating func makeID() -> UInt64 {
        defer { nextID += 1 }
        return nextID
    }
}
