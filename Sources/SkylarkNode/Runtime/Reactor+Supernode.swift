import Foundation
import SkylarkOverlay
import SkylarkWire

extension Reactor {
    /// Starts serving as a supernode: the overlay core joins the DHT through the supernodes we
    /// know, inbound links are accepted as clients and peers, and our own session attaches to us.
    func becomeSupernode(now: Moment, reason: String) {
        guard supernode == nil, let nodeID = identity.nodeID, let name = identity.name else { return }
        let endpoints = advertisedTCP()
        let contact = Contact(nodeID: nodeID, name: name, endpoints: endpoints, udpEndpoint: advertisedUDP())
        var core = SupernodeCore(
            identity: identity, verifier: verifier, contact: contact, configuration: configuration.supernode,
            seed: UInt64.random(in: 1...UInt64.max, using: &random), now: now, relays: io.relayTable)
        if io.udpPorts.count > 1 { core.alternateUDPPort = UInt32(io.udpPorts[1]) }
        var seeds: [Contact] = []
        // Seeds' UDP endpoints are not known yet (a cached address may be TCP 443): the DHT learns
        // them from the supernodes themselves.
        if let link = supernodeLink, let entry = links[link], let peer = entry.peer, let endpoint = entry.dialled {
            seeds.append(Contact(nodeID: peer.nodeID, name: peer.name, endpoints: [endpoint], udpEndpoint: session?.supernode?.udpEndpoint))
        }
        let own = ownEndpoints
        for entry in hostCache.ranked(now: now.wall) {
            guard let hex = entry.nodeID, let bytes = [UInt8](hexString: hex), let endpoint = HostPort(entry.endpoint), !own.contains(endpoint) else {
                continue
            }
            let id = NodeID(bytes: bytes)
            guard id != nodeID, !seeds.contains(where: { $0.nodeID == id }) else { continue }
            seeds.append(Contact(nodeID: id, name: "", endpoints: [endpoint], udpEndpoint: nil))
        }
        core.join(seeds: seeds, now: now)
        supernode = core
        io.setSupernode(true)
        bootstrap = nil
        links.dropSupernodeLink(reason: .promotedToSupernode)
        session?.linkDown(now: now)
        session?.linkUp(now: now)
        nat.checkAgain(after: 1, now: now.monotonic)
        logger.notice(
            "now a supernode",
            metadata: [
                "role.reason": "\(reason)", "supernode.endpoints": "\(endpoints.map(\.description).joined(separator: ","))", "dht.seeds": "\(seeds.count)",
            ])
        console.note("now a supernode (\(reason)), advertising \(endpoints.map(\.description).joined(separator: ", "))")
    }

    /// Stops serving: clients are handed over, peers told, and we attach to another supernode.
    func demote(now: Moment, reason: String) {
        guard supernode != nil else { return }
        supernode?.depart(now: now)
        drainCores(now: now)
        supernode = nil
        io.setSupernode(false)
        links.dropServingLinks(reason: .noLongerASupernode)
        session?.linkDown(now: now)
        logger.notice("no longer a supernode", metadata: ["role.reason": "\(reason)"])
        console.note("no longer a supernode (\(reason))")
        startBootstrap(now: now, reason: "demoted")
    }

    /// Carries a client's sealed login request to the login server and its answer back.
    func relayLogin(link: LinkID, requestID: UInt64, request: [UInt8]) {
        io.forwardLogin(request, to: configuration.profile.loginEndpoint, link: link, requestID: requestID)
    }

    /// Dials a node back on a supernode's order: TCP to up to two of its addresses, a UDP probe
    /// to its port; the order's giver hears what got through.
    func startDialBackProbe(_ order: OvDialBackOrder, token: UInt64, now: Moment) {
        var dialIDs: Set<LinkID> = []
        for endpoint in order.tcpEndpoints.prefix(2).compactMap(HostPort.init) {
            dialIDs.insert(
                startDial(
                    .dialBackProbe(token: token), endpoints: [endpoint], role: .initiator(purpose: .dialBack, dialBackNonce: Array(order.nonce)), timeout: 3))
        }
        var udpSent = false
        if let target = HostPort(order.udpEndpoint) {
            var datagram = OvDatagram()
            datagram.probe = OvProbe()
            datagram.probe.transactionID = order.nonce
            // From the second port: an unsolicited packet from our main port would take the NAT
            // tuple the node's own later traffic to us needs, and skew its mapping.
            sendDatagram(datagram, to: target, socket: 1)
            udpSent = true
        }
        if let result = dialBacks.started(token: token, links: dialIDs, udpSent: udpSent, now: now.monotonic) { dialBackDone(result) }
    }

    func dialBackProbeLinkEnded(token: UInt64, linkID: LinkID, reached: Bool) {
        if let result = dialBacks.linkEnded(token: token, link: linkID, reached: reached) { dialBackDone(result) }
    }

    func dialBackDone(_ result: DialBackDuty.Result) {
        supernode?.dialBackCompleted(token: result.token, tcpReached: result.tcpReached, udpSent: result.udpSent)
    }

    /// A supernode that knows no other supernode (it started first, or everyone it knew left)
    /// keeps dialling the ones in its host cache until one lets it join.
    func seedTick(now: Moment) {
        guard let supernode, seeds.isAttemptDue(now: now.monotonic, knowsPeers: supernode.dht.routing.count > 0) else { return }
        for endpoint in hostCache.dialOrder(now: now.wall, excluding: ownEndpoints).prefix(SeedSchedule.dialsPerAttempt) {
            seeds.dialing(startDial(.seed(endpoint), endpoints: [endpoint], role: .initiator(purpose: .supernode), timeout: 2))
        }
    }

    func supernodeDutiesTick(now: Moment) {
        seedTick(now: now)
        if supernode != nil, now.monotonic >= nextRelayExpiry {
            nextRelayExpiry = now.monotonic + 5
            _ = io.relayTable.expire(now: now.monotonic)
        }
        for result in dialBacks.expire(now: now.monotonic) { dialBackDone(result) }
    }
}
