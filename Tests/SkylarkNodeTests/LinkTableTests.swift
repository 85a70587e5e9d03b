import SkylarkOverlay
import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkNode

/// The node's link table on its own: inputs in, actions out, no transport.
@Suite struct LinkTableTests {
    static let sn2 = Contact(nodeID: Users.bob.nodeID, name: "bob", endpoints: [HostPort(host: "10.0.0.2", port: 443)], udpEndpoint: nil)
    static let bobPeer = PeerIdentity(credential: Users.bob.credential)
    static let alicePeer = PeerIdentity(credential: Users.alice.credential)

    /// Every action the table has decided on, in order.
    static func drain(_ table: inout LinkTable) -> [LinkTable.Action] {
        var actions: [LinkTable.Action] = []
        while let action = table.poll() { actions.append(action) }
        return actions
    }

    /// A message told apart by its request id.
    static func request(_ id: UInt64) -> OvLinkMessage {
        var message = OvLinkMessage()
        message.id = id
        message.ping = OvPing()
        return message
    }

    static func link(_ id: LinkID, _ peer: PeerIdentity?, _ purpose: OvLinkPurpose) -> LinkInfo {
        LinkInfo(id: id, peer: peer, purpose: purpose, remote: HostPort(host: "10.0.0.9", port: 5000), local: nil)
    }

    @Test func messagesForAPeerWaitForOneDialAndGoOutInOrder() {
        var table = LinkTable()
        var nextID: LinkID = 10
        let newID = { () -> LinkID in
            nextID += 1
            return nextID
        }
        for id: UInt64 in [1, 2, 3] { table.send(Self.request(id), to: Self.sn2, newLinkID: newID) }
        let dials = Self.drain(&table)
        #expect(dials.count == 1, "one dial, however many messages wait")
        guard case let .dial(id, endpoints, _, _)? = dials.first else { Issue.record("expected a dial, got \(dials)"); return }
        #expect(endpoints == Self.sn2.endpoints)
        #expect(table.queuedMessageCount == 3)

        guard case .dialled(.supernodePeer(Users.bob.nodeID), _) = table.established(Self.link(id, Self.bobPeer, .supernode), isSupernode: true) else {
            Issue.record("the dial should come back as a supernode peer"); return
        }
        let sent = Self.drain(&table).compactMap { action -> UInt64? in
            guard case let .send(message, on) = action, on == id else { return nil }
            return message.id
        }
        #expect(sent == [1, 2, 3])
        #expect(table.queuedMessageCount == 0)
        #expect(table.peerLinks[Users.bob.nodeID] == id)

        // Once up, the link is used directly.
        table.send(Self.request(4), to: Self.sn2, newLinkID: newID)
        guard case let .send(message, on)? = Self.drain(&table).first else { Issue.record("expected a send"); return }
        #expect(on == id && message.id == 4)
    }

    @Test func aFailedDialDropsWhatWaitedAndTheNextMessageDialsAgain() {
        var table = LinkTable()
        var nextID: LinkID = 0
        let newID = { () -> LinkID in
            nextID += 1
            return nextID
        }
        table.send(Self.request(1), to: Self.sn2, newLinkID: newID)
        _ = Self.drain(&table)
        #expect(table.dialFailed(1) == .supernodePeer(Users.bob.nodeID))
        #expect(table.queuedMessageCount == 0, "nothing waits for a peer that cannot be reached")
        #expect(table.dialFailed(1) == nil, "a dial ends once")

        table.send(Self.request(2), to: Self.sn2, newLinkID: newID)
        guard case let .dial(id, _, _, _)? = Self.drain(&table).first else { Issue.record("expected a new dial"); return }
        #expect(id == 2)
        // A dial whose handshake fails ends through `closed` the same way.
        guard case .dial(.supernodePeer) = table.closed(2) else { Issue.record("expected the dial to end"); return }
        #expect(table.queuedMessageCount == 0)
    }

    @Test func inboundLinksAreKeptOnlyByASupernodeAndOnlyForPurposesItServes() {
        var table = LinkTable()
        guard case .refused = table.established(Self.link(1, Self.alicePeer, .peer), isSupernode: false) else {
            Issue.record("a client does not take clients"); return
        }
        guard case .refused = table.established(Self.link(2, nil, .supernode), isSupernode: true) else {
            Issue.record("a supernode link must say who it is"); return
        }
        guard case .refused = table.established(Self.link(3, Self.alicePeer, .dialBack), isSupernode: true) else {
            Issue.record("a dial-back is not a link to keep"); return
        }
        let closes = Self.drain(&table).compactMap { action -> LinkCloseReason? in
            guard case let .close(_, reason) = action else { return nil }
            return reason
        }
        #expect(closes == [.notASupernode, .notASupernode, .unexpectedPurpose])
        #expect(table.entries.isEmpty)

        guard case let .inbound(client) = table.established(Self.link(4, nil, .anonymous), isSupernode: true) else {
            Issue.record("an anonymous client may log in through a supernode"); return
        }
        #expect(client.kind == .client)
        table.upgraded(4, peer: Self.alicePeer)
        #expect(table[4]?.peer == Self.alicePeer)
        guard case .inbound = table.established(Self.link(5, Self.bobPeer, .supernode), isSupernode: true) else {
            Issue.record("a supernode peer is kept"); return
        }
        #expect(table.peerLinks[Users.bob.nodeID] == 5)
    }

    @Test func ourSupernodeLinkIsKeptAliveAndForgottenWhenItCloses() {
        var table = LinkTable()
        let endpoint = HostPort(host: "10.0.0.2", port: 443)
        table.dial(7, for: .bootstrap(endpoint, startedAt: 100), endpoints: [endpoint], role: .initiator(purpose: .peer), connectTimeout: 1)
        _ = Self.drain(&table)
        guard case let .dialled(.bootstrap, entry) = table.established(Self.link(7, Self.bobPeer, .peer), isSupernode: false) else {
            Issue.record("expected the bootstrap dial"); return
        }
        #expect(entry.kind == .spare && entry.dialled == endpoint)
        table.makeSupernodeLink(7, now: 101, keepaliveInterval: 15)
        #expect(table.ourSupernode?.kind == .ourSupernode)

        table.tick(now: 115, keepaliveInterval: 15)
        #expect(Self.drain(&table).isEmpty, "no ping before the keepalive is due")
        table.tick(now: 116, keepaliveInterval: 15)
        guard case let .send(ping, 7)? = Self.drain(&table).first, case .ping? = ping.body else { Issue.record("expected a ping"); return }

        guard case let .link(closed) = table.closed(7) else { Issue.record("expected the link"); return }
        #expect(closed.kind == .ourSupernode)
        #expect(table.supernodeLink == nil && table.nextKeepalive == .infinity)
        table.tick(now: 200, keepaliveInterval: 15)
        #expect(Self.drain(&table).isEmpty, "no ping without a supernode")
    }

    @Test func aDroppedLinkIsForgottenAtOnceAndSendsNothingMore() {
        var table = LinkTable()
        _ = table.established(Self.link(1, Self.alicePeer, .peer), isSupernode: true)
        _ = table.established(Self.link(2, Self.bobPeer, .supernode), isSupernode: true)
        let endpoint = HostPort(host: "10.0.0.3", port: 443)
        table.dial(3, for: .bootstrap(endpoint, startedAt: 0), endpoints: [endpoint], role: .initiator(purpose: .peer), connectTimeout: 1)
        _ = table.established(Self.link(3, Self.bobPeer, .peer), isSupernode: true)
        _ = Self.drain(&table)

        table.dropServingLinks(reason: .noLongerASupernode)
        let closed = Self.drain(&table).compactMap { action -> LinkID? in
            guard case let .close(id, .noLongerASupernode) = action else { return nil }
            return id
        }
        #expect(closed == [1, 2], "clients and peers go; the spare bootstrap link stays")
        #expect(table.peerLinks.isEmpty)
        table.send(Self.request(9), on: 1)
        #expect(Self.drain(&table).isEmpty, "nothing is sent on a dropped link")
        guard case .unknown = table.closed(1) else { Issue.record("its close report finds nothing to act on"); return }
        #expect(table[3] != nil)
    }
}
