import SkylarkOverlay
import SkylarkWire

/// The node's links and the dials that may become links: who each one is to, why it was
/// dialled, which one goes to our supernode, which supernode peer is reachable on which link,
/// the messages waiting for a peer we are still dialling, and the keepalive to our supernode.
///
/// Sans-I/O: the reactor feeds it what the transport reports (`established`, `closed`,
/// `dialFailed`, `upgraded`) and the time, and carries out what it asks for (`poll`) through
/// `NodeTransport`. What a link means for the rest of the node — a bootstrap winner, a seed to
/// join through, a dial-back's result — it returns as a value for the reactor to dispatch.
struct LinkTable {
    enum Kind: Equatable {
        /// Our link to our supernode (we are its client).
        case ourSupernode
        /// A client attached to us (we are a supernode), or trying to log in through us.
        case client
        /// Supernode to supernode.
        case supernodePeer
        /// A bootstrap link that lost the race to be our supernode link, or a dial-back.
        case spare
    }

    struct Entry {
        var id: LinkID
        var peer: PeerIdentity?
        var purpose: OvLinkPurpose
        var kind: Kind
        /// The address we dialled (outbound links), for the host cache.
        var dialled: HostPort?
        /// The connection's far and near addresses.
        var remote: HostPort?
        var local: HostPort?
    }

    enum DialPurpose: Equatable {
        case bootstrap(HostPort, startedAt: Double)
        /// A supernode with no DHT contacts dialling a known supernode to join through it.
        case seed(HostPort)
        case supernodePeer(NodeID)
        case dialBackProbe(token: UInt64)
    }

    enum Action {
        case dial(LinkID, endpoints: [HostPort], role: SecureLink.Role, connectTimeout: Double)
        case send(OvLinkMessage, on: LinkID)
        /// Proves the node's credential on an anonymous link (the reactor supplies the identity).
        case authenticate(LinkID, requestID: UInt64)
        case close(LinkID, reason: LinkCloseReason)
    }

    /// What a finished handshake meant.
    enum Established {
        /// One of our dials; the entry is registered under its purpose's kind.
        case dialled(DialPurpose, Entry)
        /// Someone dialled us and we keep the link.
        case inbound(Entry)
        /// Refused and closed (not a supernode, or a purpose we do not serve).
        case refused
    }

    /// What a closed link or failed dial meant.
    enum Ended {
        /// A dial that never became a link.
        case dial(DialPurpose)
        case link(Entry)
        /// Already forgotten (closed by us, or never known).
        case unknown
    }

    private(set) var entries: [LinkID: Entry] = [:]
    private(set) var dials: [LinkID: DialPurpose] = [:]
    /// Our supernode's link, once a bootstrap dial won.
    private(set) var supernodeLink: LinkID?
    /// One link per supernode peer, by node id (ours or theirs).
    private(set) var peerLinks: [NodeID: LinkID] = [:]
    private var dialByNode: [NodeID: LinkID] = [:]
    private var queuedForNode: [NodeID: [OvLinkMessage]] = [:]
    private(set) var nextKeepalive: Double = .infinity
    private var actions: [Action] = []
    private var nextAction = 0

    subscript(id: LinkID) -> Entry? { entries[id] }

    /// Our supernode's link entry, if we have one.
    var ourSupernode: Entry? { supernodeLink.flatMap { entries[$0] } }

    /// Messages waiting for a supernode peer's link to come up.
    var queuedMessageCount: Int { queuedForNode.values.reduce(0) { $0 + $1.count } }

    // MARK: - Inputs

    /// Starts a dial for `purpose`; `.established`, `.closed` or `.dialFailed` follows.
    mutating func dial(_ id: LinkID, for purpose: DialPurpose, endpoints: [HostPort], role: SecureLink.Role, connectTimeout: Double) {
        dials[id] = purpose
        emit(.dial(id, endpoints: endpoints, role: role, connectTimeout: connectTimeout))
    }

    /// A link finished its handshake. `isSupernode`: whether we serve clients and peers now.
    mutating func established(_ link: LinkInfo, isSupernode: Bool) -> Established {
        func entry(_ kind: Kind, dialled: HostPort?) -> Entry {
            Entry(id: link.id, peer: link.peer, purpose: link.purpose, kind: kind, dialled: dialled, remote: link.remote, local: link.local)
        }
        if let dial = dials.removeValue(forKey: link.id) {
            let registered: Entry
            switch dial {
            case let .bootstrap(endpoint, _):
                registered = entry(.spare, dialled: endpoint)
                entries[link.id] = registered
            case let .supernodePeer(nodeID):
                registered = entry(.supernodePeer, dialled: nil)
                entries[link.id] = registered
                dialByNode[nodeID] = nil
                peerLinks[nodeID] = link.id
                for message in queuedForNode.removeValue(forKey: nodeID) ?? [] { send(message, on: link.id) }
            case let .seed(endpoint):
                registered = entry(.supernodePeer, dialled: endpoint)
                entries[link.id] = registered
                if let peer = link.peer, isSupernode, peerLinks[peer.nodeID] == nil { peerLinks[peer.nodeID] = link.id }
            case .dialBackProbe:
                // A dial-back link reports through `closed` with the dial-back reason.
                registered = entry(.spare, dialled: nil)
                entries[link.id] = registered
            }
            return .dialled(dial, registered)
        }
        switch link.purpose {
        case .supernode:
            guard let peer = link.peer, isSupernode else { return refuse(link.id, .notASupernode) }
            let registered = entry(.supernodePeer, dialled: nil)
            entries[link.id] = registered
            if peerLinks[peer.nodeID] == nil { peerLinks[peer.nodeID] = link.id }
            return .inbound(registered)
        case .peer, .anonymous:
            guard isSupernode else { return refuse(link.id, .notASupernode) }
            let registered = entry(.client, dialled: nil)
            entries[link.id] = registered
            return .inbound(registered)
        default:
            return refuse(link.id, .unexpectedPurpose)
        }
    }

    /// A link proved a credential (it was anonymous).
    mutating func upgraded(_ id: LinkID, peer: PeerIdentity) {
        entries[id]?.peer = peer
    }

    /// A link or a dial ended.
    mutating func closed(_ id: LinkID) -> Ended {
        if let dial = dials.removeValue(forKey: id) { return .dial(dialEnded(dial)) }
        guard let entry = entries.removeValue(forKey: id) else { return .unknown }
        forget(entry)
        return .link(entry)
    }

    /// A dial reached no endpoint (nil if it was not ours or already gone).
    mutating func dialFailed(_ id: LinkID) -> DialPurpose? {
        guard let dial = dials.removeValue(forKey: id) else { return nil }
        return dialEnded(dial)
    }

    /// Makes a bootstrap link our supernode link and starts its keepalive.
    mutating func makeSupernodeLink(_ id: LinkID, now: Double, keepaliveInterval: Double) {
        guard entries[id] != nil else { return }
        entries[id]?.kind = .ourSupernode
        supernodeLink = id
        nextKeepalive = now + keepaliveInterval
    }

    /// Pings our supernode when its keepalive is due.
    mutating func tick(now: Double, keepaliveInterval: Double) {
        guard let link = supernodeLink, now >= nextKeepalive else { return }
        nextKeepalive = now + keepaliveInterval
        var ping = OvLinkMessage()
        ping.ping = OvPing()
        send(ping, on: link)
    }

    // MARK: - Sending and closing

    /// Sends on a link of ours (nothing if it has gone).
    mutating func send(_ message: OvLinkMessage, on id: LinkID) {
        guard entries[id] != nil else { return }
        emit(.send(message, on: id))
    }

    /// Sends to a supernode peer, dialling it first (with `newLinkID`) if no link is open; what
    /// is sent meanwhile waits for the link and is dropped if the dial fails.
    mutating func send(_ message: OvLinkMessage, to contact: Contact, newLinkID: () -> LinkID) {
        if let id = peerLinks[contact.nodeID], entries[id] != nil { return send(message, on: id) }
        queuedForNode[contact.nodeID, default: []].append(message)
        guard dialByNode[contact.nodeID] == nil else { return }
        let id = newLinkID()
        dialByNode[contact.nodeID] = id
        dial(
            id, for: .supernodePeer(contact.nodeID), endpoints: contact.endpoints, role: .initiator(purpose: .supernode, expectedPeer: contact.nodeID),
            connectTimeout: 3)
    }

    mutating func authenticate(_ id: LinkID, requestID: UInt64) {
        guard entries[id] != nil else { return }
        emit(.authenticate(id, requestID: requestID))
    }

    /// Closes a link; it stays known until the transport reports it closed.
    mutating func close(_ id: LinkID, reason: LinkCloseReason) {
        guard entries[id] != nil else { return }
        emit(.close(id, reason: reason))
    }

    /// Closes a link and forgets it at once: its close report finds nothing to act on.
    mutating func drop(_ id: LinkID, reason: LinkCloseReason) {
        guard let entry = entries.removeValue(forKey: id) else { return }
        forget(entry)
        emit(.close(id, reason: reason))
    }

    /// Drops our supernode link (promotion, handover); returns what it was.
    @discardableResult
    mutating func dropSupernodeLink(reason: LinkCloseReason) -> Entry? {
        guard let id = supernodeLink, let entry = entries[id] else { return nil }
        drop(id, reason: reason)
        return entry
    }

    /// Drops every client and supernode-peer link (we stop serving as a supernode).
    mutating func dropServingLinks(reason: LinkCloseReason) {
        for entry in entries.values.sorted(by: { $0.id < $1.id }) where entry.kind == .client || entry.kind == .supernodePeer {
            drop(entry.id, reason: reason)
        }
        peerLinks = [:]
    }

    /// Closes every link (the node stops); dials in flight end by themselves.
    mutating func closeAll(reason: LinkCloseReason) {
        for id in entries.keys.sorted() { emit(.close(id, reason: reason)) }
    }

    // MARK: - Output

    /// The next thing to do, in the order it was decided.
    mutating func poll() -> Action? {
        guard nextAction < actions.count else {
            if !actions.isEmpty { (actions, nextAction) = ([], 0) }
            return nil
        }
        defer { nextAction += 1 }
        return actions[nextAction]
    }

    // MARK: - Private

    private mutating func emit(_ action: Action) { actions.append(action) }

    private mutating func refuse(_ id: LinkID, _ reason: LinkCloseReason) -> Established {
        emit(.close(id, reason: reason))
        return .refused
    }

    private mutating func dialEnded(_ dial: DialPurpose) -> DialPurpose {
        if case let .supernodePeer(nodeID) = dial {
            dialByNode[nodeID] = nil
            queuedForNode[nodeID] = nil
        }
        return dial
    }

    private mutating func forget(_ entry: Entry) {
        switch entry.kind {
        case .ourSupernode:
            if supernodeLink == entry.id { supernodeLink = nil }
            nextKeepalive = .infinity
        case .supernodePeer:
            if let peer = entry.peer, peerLinks[peer.nodeID] == entry.id { peerLinks[peer.nodeID] = nil }
        case .client, .spare:
            break
        }
    }
}
