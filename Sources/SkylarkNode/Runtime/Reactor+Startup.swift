import Foundation
import SkylarkCrypto
import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire

extension Reactor {
    func start(now: Moment) {
        console.note(
            "\(configuration.name): listening on \(listening.map(\.description).joined(separator: ", ")), supernode mode \(configuration.supernodeMode.rawValue)"
        )
        startBootstrap(now: now, reason: "start")
        startDirectLogin()
        performLinkActions()
    }

    // MARK: - Bootstrap

    /// Our own addresses never count as candidate supernodes.
    var ownEndpoints: Set<HostPort> { Set(listening + configuration.listen + advertisedTCP()) }

    func startBootstrap(now: Moment, reason: String, preferred: [HostPort] = []) {
        guard supernodeLink == nil, supernode == nil else { return }
        let own = ownEndpoints
        var candidates = preferred.filter { !own.contains($0) }
        for candidate in hostCache.dialOrder(now: now.wall, excluding: own) where !candidates.contains(candidate) {
            candidates.append(candidate)
        }
        var search = SupernodeSearch(now: now.monotonic, candidates: candidates, reason: reason)
        // UDP first: whoever answers is alive and goes to the front of the queue.
        for endpoint in search.queryTargets {
            let nonce = SecureRandom.bytes(8)
            search.queried(endpoint, nonce: nonce, now: now.monotonic)
            var datagram = OvDatagram()
            datagram.hostCacheQuery = OvHostCacheQuery()
            datagram.hostCacheQuery.nonce = Data(nonce)
            datagram.hostCacheQuery.maximum = UInt32(SupernodeSearch.contactsPerAnswer)
            // From the second socket: traffic from the main port would open our NAT to every
            // supernode and spoil the NAT type detection that runs on it.
            sendDatagram(datagram, to: endpoint, socket: 1)
        }
        bootstrap = search
        logger.info("looking for a supernode", metadata: ["bootstrap.reason": "\(reason)", "bootstrap.candidates": "\(candidates.count)"])
        bootstrapTick(now: now)
    }

    func bootstrapTick(now: Moment) {
        guard bootstrap != nil else { return }
        if supernodeLink != nil || supernode != nil {
            bootstrap = nil
            return
        }
        let purpose: OvLinkPurpose = identity.credential == nil ? .anonymous : .peer
        for endpoint in bootstrap?.nextDials() ?? [] {
            let id = startDial(
                .bootstrap(endpoint, startedAt: now.monotonic), endpoints: [endpoint], role: .initiator(purpose: purpose),
                timeout: SupernodeSearch.connectTimeout)
            bootstrap?.dialing(id)
        }
        if bootstrap?.isRoundOver(now: now.monotonic) == true {
            let candidates = hostCache.dialOrder(now: now.wall, excluding: ownEndpoints)
            let tried = bootstrap?.triedCount ?? 0
            if bootstrap?.startRound(now: now.monotonic, candidates: candidates, warnAfter: configuration.bootstrapTimeout) == true {
                logger.warning("no supernode reachable yet; still trying", metadata: ["bootstrap.tried": "\(tried)"])
                console.note("no supernode reachable yet; still trying")
            }
        }
    }

    func bootstrapUDPAnswer(_ answer: OvHostCacheAnswer, from source: HostPort, now: Moment) {
        guard let (endpoint, rtt) = bootstrap?.answered(nonce: Array(answer.nonce), now: now.monotonic) else { return }
        hostCache.recordSuccess(endpoint, rtt: rtt, nodeID: nil, now: now.wall)
        learn(answer.supernodes, now: now)
        hostCacheRefresh = "udp"
        bootstrapTick(now: now)
    }

    func bootstrapLinkUp(_ id: LinkID, endpoint: HostPort, peer: PeerIdentity?, now: Moment) {
        bootstrap?.dialEnded(id)
        guard supernodeLink == nil, supernode == nil, phase != .finished else {
            links.drop(id, reason: .anotherSupernodeAnsweredFirst)
            return
        }
        links.makeSupernodeLink(id, now: now.monotonic, keepaliveInterval: configuration.keepaliveInterval)
        udpAnsweredThisBootstrap = bootstrap?.udpAnswered ?? false
        bootstrap = nil
        logger.info("supernode link up", metadata: ["supernode.name": "\(peer?.name ?? "?")", "peer.address": "\(endpoint)"])
        console.note("connected to supernode \(peer?.name ?? "?") at \(endpoint)")
        sendRuntimeRequest(.hostCache, on: id, now: now) { message in
            message.hostCacheRequest = OvHostCacheRequest()
            message.hostCacheRequest.maximum = 50
        }
        if identity.credential != nil, links[id]?.purpose == .anonymous {
            // Dialled before the login finished: prove the credential on this link first.
            authenticate(id, now: now)
        } else if identity.credential != nil {
            session?.linkUp(now: now)
        } else if login.wantsRelay() {
            startLoginRelay(now: now)
        }
    }

    func learn(_ contacts: [OvContact], now: Moment) {
        let parsed = contacts.compactMap(Contact.init).filter { $0.nodeID != identity.nodeID }
        for contact in parsed where contact.udpEndpoint != nil { knownSupernodes[contact.nodeID] = contact }
        hostCache.learn(parsed.flatMap { contact in contact.endpoints.map { ($0, nodeID: Optional(contact.nodeID.bytes)) } }, now: now.wall)
        hostCacheDirty = true
        for contact in parsed { supernode?.learn(contact, now: now) }
    }

    func handedOver(_ handover: OvHandover, now: Moment) {
        learn(handover.supernodes, now: now)
        let preferred = handover.supernodes.compactMap(Contact.init).flatMap(\.endpoints)
        guard let left = links.dropSupernodeLink(reason: .handedOver) else { return }
        console.note("supernode \(left.peer?.name ?? "?") is leaving; moving to another")
        session?.linkDown(now: now)
        startBootstrap(now: now, reason: "handover", preferred: preferred)
    }

    // MARK: - Answers to the runtime's own requests

    func runtimeAnswer(_ request: RuntimeRequest, _ message: OvLinkMessage, link: LinkID, now: Moment) {
        switch request {
        case .hostCache:
            if case let .hostCacheReply(reply)? = message.body {
                learn(reply.supernodes, now: now)
                // When no UDP answer came, this TCP answer is how the cache got refreshed.
                if !udpAnsweredThisBootstrap { hostCacheRefresh = "tcp" }
                saveHostCache(now: now)
            }
        case .loginRelay:
            loginRelayAnswered(message, now: now)
        case .authenticate:
            if case .ack? = message.body {
                session?.linkUp(now: now)
            } else {
                logger.warning("the supernode refused our credential; reconnecting")
                links.close(link, reason: .authenticationRefused)
            }
        case .dialBack:
            reachability.answered(now: now.monotonic)
        case let .relay(callID):
            relayAnswered(callID: callID, message, now: now)
        }
    }

    // MARK: - Login

    func startDirectLogin() {
        guard let publicKey = try? identity.key.publicKey().rawRepresentation() else { return fail("cannot read the identity key", exitCode: 1) }
        login.startedDirect()
        let request = LoginClientExchange.Request.login(name: configuration.name, password: configuration.password, userPublicKey: publicKey)
        io.loginDirect(request, profile: configuration.profile, timeout: configuration.loginDirectTimeout)
    }

    func directLoginFinished(_ result: Result<Credential, LoginFailure>, now: Moment) {
        guard let step = login.directFinished(result, now: now.monotonic, supernodeLinkUp: supernodeLink != nil) else { return }
        if case let .failure(failure) = result, step == .relay || step == .waitForSupernode {
            logger.notice("login server unreachable directly; logging in through a supernode", metadata: ["login.error": "\(failure)"])
            console.note("login server unreachable directly (\(failure)); logging in through a supernode")
        }
        loginStep(step, now: now)
    }

    func loginStep(_ step: LoginProgress.Step, now: Moment) {
        switch step {
        case let .loggedIn(credential, path): loggedIn(credential, path: path, now: now)
        case .relay: startLoginRelay(now: now)
        case .waitForSupernode: break
        case let .relayFailed(reason): loginRelayFailed(reason, now: now)
        case let .fail(reason, exitCode): fail(reason, exitCode: exitCode)
        }
    }

    func loginTick(now: Moment) {
        let limit = max(30, configuration.bootstrapTimeout * 2)
        if let step = login.timedOut(now: now.monotonic, supernodeLinkUp: supernodeLink != nil, limit: limit) { loginStep(step, now: now) }
    }

    func startLoginRelay(now: Moment) {
        guard let link = supernodeLink, let publicKey = try? identity.key.publicKey().rawRepresentation() else { return }
        let exchange: LoginClientExchange
        do {
            exchange = try LoginClientExchange(
                .login(name: configuration.name, password: configuration.password, userPublicKey: publicKey),
                serverKey: configuration.profile.loginKey, now: now.wall)
        } catch {
            return fail("cannot build the login request: \(error)", exitCode: 1)
        }
        login.relaying(exchange)
        sendRuntimeRequest(.loginRelay, on: link, now: now, timeout: 20) { message in
            message.loginRelay = OvLoginRelay()
            message.loginRelay.request = Data(exchange.requestBytes)
        }
    }

    func loginRelayAnswered(_ message: OvLinkMessage, now: Moment) {
        let via = links.ourSupernode?.peer?.name ?? "a supernode"
        if let step = login.relayAnswered(message, via: via) { loginStep(step, now: now) }
    }

    /// Proves our credential on an anonymous link to our supernode; attaching follows its ack.
    func authenticate(_ link: LinkID, now: Moment) {
        let requestID = makeRequestID()
        runtimeRequests[requestID] = (.authenticate, now.monotonic + 10)
        links.authenticate(link, requestID: requestID)
    }

    func loginRelayFailed(_ reason: String, now: Moment) {
        fail("login server unreachable at \(configuration.profile.loginEndpoint) directly and through the supernode: \(reason)", exitCode: 6)
    }

    func loggedIn(_ credential: Credential, path: String, now: Moment) {
        login.loggedIn(path: path)
        do {
            try files.client.save(credential)
            identity = try LocalIdentity(key: identity.key, credential: credential)
            io.setIdentity(identity)
            session = try ClientSession(
                identity: identity, verifier: verifier, messageKey: try files.loadOrCreateMessageKey(),
                state: try files.loadSession(), configuration: configuration.session)
        } catch {
            return fail("cannot start the session: \(error)", exitCode: 1)
        }
        phase = .running
        logger.info("logged in", metadata: ["login.name": "\(credential.name)", "login.path": "\(path)"])
        console.note("logged in as \(credential.name) (\(path))")
        if let decision = reachability.loggedIn(now: now.monotonic) {
            becomeSupernode(now: now, reason: decision.reason)
        } else if let link = supernodeLink {
            authenticate(link, now: now)
        }
    }

    // MARK: - Network facts

    /// The TCP addresses other nodes should dial.
    func advertisedTCP() -> [HostPort] {
        if !configuration.advertise.isEmpty { return configuration.advertise }
        return listening.map { endpoint in
            guard Self.isUnspecified(endpoint.host) else { return endpoint }
            return HostPort(host: observedEndpoint?.host ?? localAddress ?? io.firstInterfaceAddress() ?? endpoint.host, port: endpoint.port)
        }
    }

    func advertisedUDP() -> HostPort? {
        guard let first = advertisedTCP().first, let port = io.udpPorts.first else { return nil }
        return HostPort(host: first.host, port: port)
    }

    /// Our address on the route to our supernode.
    var localAddress: String? {
        supernodeLink.flatMap { links[$0]?.local?.host }
    }

    func privateEndpoints() -> [String] {
        guard let port = io.udpPorts.first else { return [] }
        var hosts: [String] = []
        if let local = localAddress { hosts.append(local) }
        for listen in listening where !Self.isUnspecified(listen.host) && !hosts.contains(listen.host) { hosts.append(listen.host) }
        return hosts.map { HostPort(host: $0, port: port).description }
    }

    static func isUnspecified(_ host: String) -> Bool { host == "0.0.0.0" || host == "::" || host == "[::]" }

    // MARK: - NAT type

    func natTick(now: Moment) {
        if nat.probe != nil {
            if let timeout = nat.probe?.pollTimeout(), timeout <= now.monotonic { nat.probe?.handleTimeout(now: now.monotonic) }
            return
        }
        guard nat.isCheckDue(now: now.monotonic), phase == .running else { return }
        nat.checking(now: now.monotonic)
        // Probes go to supernodes' UDP endpoints as they advertise them (a TCP endpoint may be
        // port 443, where no UDP is served).
        let primary: HostPort?
        var others = Array(knownSupernodes.values)
        if let supernode {
            others += supernode.dht.routing.allContacts
            primary = others.compactMap(\.udpEndpoint).first
        } else {
            primary = session?.supernode?.udpEndpoint
        }
        guard let primary, let port = io.udpPorts.first else { return }
        let secondary = others.compactMap(\.udpEndpoint).first { $0.host != primary.host }
        var locals: [HostPort] = []
        if let local = localAddress { locals.append(HostPort(host: local, port: port)) }
        for listen in listening where !Self.isUnspecified(listen.host) { locals.append(HostPort(host: listen.host, port: port)) }
        var probe = NATProbe(localAddresses: locals, primary: primary, secondary: secondary, using: &random)
        probe.start(now: now.monotonic)
        nat.start(probe)
    }

    func perform(_ action: NATProbe.Action) {
        switch action {
        case let .sendBinding(target, transactionID):
            io.sendDatagram(STUNMessage.bindingRequest(transactionID: transactionID).encoded(), to: target, socket: 0)
        case let .requestReplyFromOtherNode(via, transactionID, _):
            requestProbe(.fromOtherNode, transactionID: transactionID, via: via)
        case let .requestReplyFromOtherPort(via, transactionID, _):
            requestProbe(.fromOtherPort, transactionID: transactionID, via: via)
        }
    }

    /// Asks a supernode to send a probe back to our (observed) address.
    func requestProbe(_ kind: OvProbeKind, transactionID: [UInt8], via: HostPort) {
        var datagram = OvDatagram()
        datagram.probeRequest = OvProbeRequest()
        datagram.probeRequest.transactionID = Data(transactionID)
        datagram.probeRequest.kind = kind
        sendDatagram(datagram, to: via)
    }

    func natFinished(_ result: NATType, mapped: HostPort?, changed: Bool, now: Moment) {
        if changed {
            logger.info("NAT type", metadata: ["nat.type": "\(result)", "nat.mapped": "\(mapped?.description ?? "-")"])
            console.note("NAT type: \(result)\(mapped.map { ", public UDP \($0)" } ?? "")")
        }
        session?.setNetwork(natType: result, publicEndpoint: mapped?.description ?? "", privateEndpoints: privateEndpoints(), now: now)
    }

    // MARK: - Promotion

    func reachabilityTick(now: Moment) {
        if reachability.isCheckOver(now: now.monotonic) { finishReachabilityCheck(now: now) }
        if phase == .running, reachability.isCheckDue(now: now.monotonic), !startReachabilityCheck(now: now) { reachability.couldNotStart(now: now.monotonic) }
    }

    /// Asks for a dial-back of our addresses: through our supernode, or as a supernode in auto
    /// mode through a peer (so that it can step down). False when there is no one to ask.
    func startReachabilityCheck(now: Moment) -> Bool {
        let nonce = SecureRandom.bytes(16)
        let tcp = advertisedTCP()
        guard let udpEndpoint = advertisedUDP() else { return false }
        if let supernode {
            let peers = supernode.dht.routing.allContacts
            guard let prober = peers.randomElement(using: &random) else { return false }
            var order = OvDialBackOrder()
            order.tcpEndpoints = tcp.map(\.description)
            order.udpEndpoint = udpEndpoint.description
            order.nonce = Data(nonce)
            var message = OvLinkMessage()
            message.id = makeRequestID()
            message.dialBackOrder = order
            runtimeRequests[message.id] = (.dialBack, now.monotonic + 10)
            send(message, to: prober, now: now)
        } else {
            guard let link = supernodeLink, session?.isAttached == true else { return false }
            sendRuntimeRequest(.dialBack, on: link, now: now) { message in
                message.dialBackRequest = OvDialBackRequest()
                message.dialBackRequest.tcpEndpoints = tcp.map(\.description)
                message.dialBackRequest.udpEndpoint = udpEndpoint.description
                message.dialBackRequest.nonce = Data(nonce)
            }
        }
        reachability.started(nonce: nonce, now: now.monotonic)
        return true
    }

    func finishReachabilityCheck(now: Moment) {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        guard let (check, decision) = reachability.finish(now: now.monotonic, idleCPU: cpuSampler.sample(), cores: cores) else { return }
        logger.debug("reachability", metadata: ["reach.tcp": "\(check.tcpReached)", "reach.udp": "\(check.udpReached)", "role.reason": "\(decision.reason)"])
        guard decision.changed else { return }
        if decision.role == .supernode { becomeSupernode(now: now, reason: decision.reason) } else { demote(now: now, reason: decision.reason) }
    }
}
