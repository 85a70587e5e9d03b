import Foundation
import Logging
import SkylarkCrypto
import SkylarkMedia
import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire

/// Owns every protocol core of a running node and is the only code that touches them. It runs
/// on one task, taking events one at a time (sockets, jobs, control requests, the 100 ms tick),
/// feeding them to the cores and carrying out what the cores ask for. The cores decide; the
/// reactor only moves bytes, starts dials and reads the clock.
final class Reactor {
    enum RuntimeRequest {
        case loginRelay
        case hostCache
        case authenticate
        case dialBack
        case relay(callID: CallID)
    }

    enum Phase: Equatable {
        case starting
        case running
        case stopping(since: Double)
        case finished
    }

    // Fixed for the run.
    let configuration: NodeConfiguration
    let files: NodeStateFiles
    let verifier: Verifier
    /// All I/O goes through here.
    let io: any NodeTransport
    let clock: any NodeClock
    let listening: [HostPort]
    let sink: NodeEventSink
    var logger: Logger
    let startedAt: Double
    var console: Console

    // Cores.
    var hostCache: HostCache
    /// Dial-back checks of our own addresses and the promotion policy they feed.
    var reachability: ReachabilityMonitor
    var session: ClientSession?
    var supernode: SupernodeCore?
    /// Supernodes we have heard of with their UDP endpoints (host-cache answers), for NAT probes.
    var knownSupernodes: [NodeID: Contact] = [:]

    // Links and dials (handshakes, lookup by node, the keepalive to our supernode).
    var links = LinkTable()
    var supernodeLink: LinkID? { links.supernodeLink }

    // Start-up and login.
    var phase: Phase = .starting
    /// The search for a supernode to attach to, while one runs.
    var bootstrap: SupernodeSearch?
    var login = LoginProgress()
    var runtimeRequests: [UInt64: (RuntimeRequest, deadline: Double)] = [:]
    var nextRequestID: UInt64 = 1 << 61

    // What we learnt about our network.
    var nat: NATMonitor
    var natType: NATType { nat.natType }
    var publicUDP: HostPort? { nat.publicUDP }
    var observedEndpoint: HostPort? { nat.observedEndpoint }
    var cpuSampler = CPUSampler()

    // Supernode duties in flight.
    var dialBacks = DialBackDuty()
    var seeds = SeedSchedule()
    var nextRelayExpiry: Double = 0

    // Calls (and conference legs), by call id.
    var calls = CallTable()
    // Conferences and the leg offers held for them; the idle CPU share mixer elections are told about.
    var conferences = ConferenceTable()
    var conferenceCPU = CPUSampler()
    var idleCPUShare = 1.0
    var nextCPUSample: Double = 0

    // Control requests waiting for the overlay.
    var searchWaiters: [UInt64: (promise: ControlReply, deadline: Double)] = [:]
    var messageWaiters: [String: (promise: ControlReply, deadline: Double)] = [:]

    var outcome: NodeOutcome = .stopped
    var hostCacheDirty = false
    /// How the host cache was last refreshed, for `status`: "udp", "tcp" or "none".
    var hostCacheRefresh = "none"
    var udpAnsweredThisBootstrap = false
    var nextHostCacheSave: Double = 0
    /// Mute, volume and levels, shared by every call's microphone and speaker.
    let audio = AudioControls()
    /// Every choice the node draws (SSRCs, seeds, probers, mixer candidates); seeded in the in-memory network.
    var random: NodeRandom

    init(
        configuration: NodeConfiguration, files: NodeStateFiles, identity: LocalIdentity, verifier: Verifier,
        io: any NodeTransport, clock: any NodeClock = HostClock(), random: any RandomNumberGenerator = SystemRandomNumberGenerator(), listening: [HostPort],
        sink: NodeEventSink, logger: Logger, console: Bool
    ) {
        self.configuration = configuration
        self.files = files
        self.identity = identity
        self.verifier = verifier
        self.io = io
        self.clock = clock
        self.random = NodeRandom(random)
        self.listening = listening
        self.sink = sink
        self.logger = logger
        self.console = Console(interactive: console)
        let now = clock.now()
        self.startedAt = now.monotonic
        let defaults = configuration.profile.profile.supernodes.compactMap(HostPort.init)
        let loaded = files.loadHostCache(defaults: defaults)
        self.hostCache = loaded.cache
        self.nat = NATMonitor(recheckInterval: configuration.natRecheckInterval)
        self.reachability = ReachabilityMonitor(
            configuration: configuration.promotion, interval: configuration.reachabilityCheckInterval, startedAt: now.monotonic)
        if let warning = loaded.warning { logger.warning("\(warning)") }
    }

    /// Our key and, once logged in, our credential (links read it through `io.setIdentity`).
    var identity: LocalIdentity
    var now: Moment { clock.now() }

    /// Processes events until the node has stopped; returns how it ended.
    func run(_ inbox: NodeInbox) async -> NodeOutcome {
        start(now: now)
        while let event = await inbox.next() {
            if process(event) { break }
        }
        return outcome
    }

    /// Handles one event and all that it sets off in the cores; true once the node has finished.
    /// The in-memory network drives nodes through this too.
    func process(_ event: NodeEvent) -> Bool {
        handle(event, now: now)
        drainCores(now: now)
        performLinkActions()
        io.setMediaRunning(hasActiveMedia)
        return phase == .finished
    }

    // MARK: - Events

    func handle(_ event: NodeEvent, now: Moment) {
        switch event {
        case let .linkEstablished(link):
            linkEstablished(link, now: now)
        case let .linkUpgraded(id, peer):
            links.upgraded(id, peer: peer)
        case let .linkMessage(id, message):
            linkMessage(id, message, now: now)
        case let .linkClosed(id, reason):
            linkClosed(id, reason: reason, now: now)
        case let .dialFailed(id, reason):
            dialFailed(id, reason: reason, now: now)
        case let .dialBackArrived(nonce):
            reachability.tcpReached(nonce: nonce)
        case let .datagram(bytes, source, socket):
            datagram(bytes, from: source, socket: socket, now: now)
        case let .directLoginFinished(result):
            directLoginFinished(result, now: now)
        case let .loginRelayDone(link, requestID, answer):
            var message = OvLinkMessage()
            message.id = requestID
            if let answer {
                message.loginRelayReply = OvLoginRelayReply()
                message.loginRelayReply.answer = Data(answer)
            } else {
                message.refused = OvRefused(code: .unavailable, reason: "the login server cannot be reached from this supernode either")
            }
            send(message, on: link)
        case let .control(request, promise):
            control(request, promise: promise, now: now)
        case let .localRelayPacket(packet):
            relayPacketArrived(packet, from: supernode?.contact.udpEndpoint ?? HostPort(host: "0.0.0.0", port: 0), overTCP: false, now: now)
        case .mediaTick:
            if hasActiveMedia { callsTick(now: now) }
        case .tick:
            tick(now: now)
        case .shutdown:
            beginShutdown(now: now)
        }
    }

    func tick(now: Moment) {
        if let deadline = supernode?.nextDeadline, deadline <= now.monotonic { supernode?.handleTimeout(now: now) }
        if let deadline = session?.nextDeadline, deadline <= now.monotonic { session?.handleTimeout(now: now) }
        natTick(now: now)
        bootstrapTick(now: now)
        loginTick(now: now)
        expireRuntimeRequests(now: now)
        supernodeDutiesTick(now: now)
        controlTick(now: now)
        callsTick(now: now)
        conferencesTick(now: now)
        links.tick(now: now.monotonic, keepaliveInterval: configuration.keepaliveInterval)
        reachabilityTick(now: now)
        if hostCacheDirty && now.monotonic >= nextHostCacheSave { saveHostCache(now: now) }
        shutdownTick(now: now)
        console.render(self, now: now)
    }

    /// Moves messages between the node's own session and its supernode core (when it is one)
    /// and carries out every action, until both are quiet.
    func drainCores(now: Moment) {
        var progressed = true
        while progressed {
            progressed = false
            while let action = supernode?.poll() {
                progressed = true
                perform(action, now: now)
            }
            while let action = session?.poll() {
                progressed = true
                perform(action, now: now)
            }
            while let action = nat.probe?.poll() {
                progressed = true
                perform(action)
            }
        }
        if let (result, mapped, changed) = nat.finished(now: now.monotonic) { natFinished(result, mapped: mapped, changed: changed, now: now) }
    }

    // MARK: - Links

    func linkEstablished(_ link: LinkInfo, now: Moment) {
        guard case let .dialled(dial, entry) = links.established(link, isSupernode: supernode != nil) else { return }
        switch dial {
        case let .bootstrap(endpoint, startedAt):
            hostCache.recordSuccess(endpoint, rtt: now.monotonic - startedAt, nodeID: entry.peer?.nodeID.bytes, now: now.wall)
            hostCacheDirty = true
            bootstrapLinkUp(entry.id, endpoint: endpoint, peer: entry.peer, now: now)
        case let .seed(endpoint):
            hostCache.recordSuccess(endpoint, rtt: nil, nodeID: entry.peer?.nodeID.bytes, now: now.wall)
            hostCacheDirty = true
            seeds.dialEnded(entry.id)
            guard let peer = entry.peer, supernode != nil else { return }
            supernode?.join(seeds: [Contact(nodeID: peer.nodeID, name: peer.name, endpoints: [endpoint], udpEndpoint: nil)], now: now)
            logger.info("joined the overlay", metadata: ["dht.seed": "\(peer.name)@\(endpoint)"])
        case .supernodePeer, .dialBackProbe:
            break
        }
    }

    func linkMessage(_ id: LinkID, _ message: OvLinkMessage, now: Moment) {
        guard let entry = links[id] else { return }
        // Answers to the runtime's own requests (login relay, host cache, dial-back...).
        if message.id >= 1 << 61, message.id < 1 << 62, let (request, _) = runtimeRequests.removeValue(forKey: message.id) {
            return runtimeAnswer(request, message, link: id, now: now)
        }
        switch entry.kind {
        case .ourSupernode:
            switch message.body {
            case let .handover(handover)?:
                handedOver(handover, now: now)
            case let .relayData(data)?:
                relayPacketArrived(Array(data.packet), from: entry.dialled ?? HostPort(host: "0.0.0.0", port: 0), overTCP: true, now: now)
            case let .attached(attached)?:
                nat.attached(observed: HostPort(attached.observedEndpoint), now: now.monotonic)
                session?.handleMessage(message, now: now)
            default:
                session?.handleMessage(message, now: now)
            }
        case .spare:
            break
        case .client:
            guard supernode != nil else { return }
            let observed = entry.remote?.description ?? ""
            supernode?.handleClientMessage(message, link: id, peer: entry.peer, observedEndpoint: observed, now: now)
        case .supernodePeer:
            guard let peer = entry.peer else { return }
            supernode?.handlePeerMessage(message, link: id, from: peer, now: now)
        }
    }

    func linkClosed(_ id: LinkID, reason: LinkCloseReason, now: Moment) {
        let entry: LinkTable.Entry
        switch links.closed(id) {
        case let .dial(dial): return dialEnded(dial, linkID: id, reason: reason, now: now)
        case let .link(closed): entry = closed
        case .unknown: return
        }
        switch entry.kind {
        case .ourSupernode:
            session?.linkDown(now: now)
            if let endpoint = entry.dialled, phase == .running || phase == .starting {
                hostCache.recordFailure(endpoint, now: now.wall)
                hostCacheDirty = true
            }
            logger.notice("supernode link lost", metadata: ["link.reason": "\(reason)", "supernode.name": "\(entry.peer?.name ?? "?")"])
            console.note("lost supernode \(entry.peer?.name ?? "?"): \(reason)")
            // A login relayed through this link never got its answer: relay it through the next.
            login.supernodeLinkLost(now: now.monotonic)
            switch phase {
            case .stopping, .finished: break
            case .starting, .running: if supernode == nil { startBootstrap(now: now, reason: "reconnect") }
            }
        case .client:
            supernode?.linkClosed(id, now: now)
            for leg in io.relayTable.legs(touching: .link(id)) { io.relayTable.teardown(leg: leg) }
        case .supernodePeer, .spare:
            break
        }
    }

    func dialFailed(_ id: LinkID, reason: String, now: Moment) {
        guard let dial = links.dialFailed(id) else { return }
        dialEnded(dial, linkID: id, reason: .unreachable(reason), now: now)
    }

    /// A dial that never became a link: connect failed or the handshake did.
    func dialEnded(_ dial: LinkTable.DialPurpose, linkID: LinkID, reason: LinkCloseReason, now: Moment) {
        switch dial {
        case let .bootstrap(endpoint, _):
            hostCache.recordFailure(endpoint, now: now.wall)
            hostCacheDirty = true
            bootstrap?.dialEnded(linkID)
            logger.debug("bootstrap dial failed", metadata: ["peer.address": "\(endpoint)", "link.reason": "\(reason)"])
        case let .supernodePeer(nodeID):
            supernode?.peerUnreachable(nodeID, now: now)
        case let .seed(endpoint):
            seeds.dialEnded(linkID)
            hostCache.recordFailure(endpoint, now: now.wall)
            hostCacheDirty = true
        case let .dialBackProbe(token):
            let reached = reason == .link(.dialBackComplete)
            dialBackProbeLinkEnded(token: token, linkID: linkID, reached: reached)
        }
    }

    /// Sends to a supernode, dialling it first if no link is open.
    func send(_ message: OvLinkMessage, to contact: Contact, now: Moment) {
        links.send(message, to: contact, newLinkID: io.makeLinkID)
    }

    /// Starts a dial for `purpose` with a new link id; `timeout` is the connect timeout in seconds.
    @discardableResult
    func startDial(_ purpose: LinkTable.DialPurpose, endpoints: [HostPort], role: SecureLink.Role, timeout: Double) -> LinkID {
        let id = io.makeLinkID()
        links.dial(id, for: purpose, endpoints: endpoints, role: role, connectTimeout: timeout)
        return id
    }

    /// Sends on a link of ours (nothing if it has gone).
    func send(_ message: OvLinkMessage, on link: LinkID) {
        links.send(message, on: link)
    }

    /// Carries out what the link table decided, in order.
    func performLinkActions() {
        while let action = links.poll() {
            switch action {
            case let .dial(id, endpoints, role, timeout): io.dial(id, endpoints: endpoints, role: role, connectTimeout: timeout)
            case let .send(message, link): io.send(message, on: link)
            case let .authenticate(link, requestID): io.authenticate(link, requestID: requestID, identity: identity)
            case let .close(link, reason): io.close(link, reason: reason)
            }
        }
    }

    func makeRequestID() -> UInt64 {
        defer { nextRequestID += 1 }
        return nextRequestID
    }

    func sendRuntimeRequest(_ kind: RuntimeRequest, on link: LinkID, now: Moment, timeout: Double = 10, _ fill: (inout OvLinkMessage) -> Void) {
        var message = OvLinkMessage()
        message.id = makeRequestID()
        fill(&message)
        runtimeRequests[message.id] = (kind, now.monotonic + timeout)
        send(message, on: link)
    }

    func expireRuntimeRequests(now: Moment) {
        for (id, entry) in runtimeRequests where entry.deadline <= now.monotonic {
            runtimeRequests[id] = nil
            if case .loginRelay = entry.0 { loginRelayFailed("no answer from the supernode", now: now) }
            if case .dialBack = entry.0 { finishReachabilityCheck(now: now) }
            // No answer to our credential: this link cannot carry the session; bootstrap again.
            if case .authenticate = entry.0, let link = supernodeLink { links.close(link, reason: .authenticationRefused) }
            if case let .relay(callID) = entry.0 {
                calls[callID]?.session.relayRefused("the supernode did not answer", now: now.monotonic)
                drainCall(callID, now: now)
            }
        }
    }

    // MARK: - Actions

    func perform(_ action: SupernodeCore.Action, now: Moment) {
        switch action {
        case let .send(link, message):
            if link == .local {
                if message.id >= 1 << 61, message.id < 1 << 62, let (request, _) = runtimeRequests.removeValue(forKey: message.id) {
                    runtimeAnswer(request, message, link: link, now: now)
                } else {
                    session?.handleMessage(message, now: now)
                }
            } else {
                send(message, on: link)
            }
        case let .sendToNode(contact, message):
            send(message, to: contact, now: now)
        case let .relayLogin(link, requestID, request):
            relayLogin(link: link, requestID: requestID, request: request)
        case let .dialBack(order, token):
            startDialBackProbe(order, token: token, now: now)
        case let .sendProbe(target, transactionID, alternate):
            var datagram = OvDatagram()
            datagram.probe = OvProbe()
            datagram.probe.transactionID = Data(transactionID)
            sendDatagram(datagram, to: target, socket: alternate ? 1 : 0)
        case let .closeLink(link):
            links.close(link, reason: .replaced)
        case let .log(text, metadata):
            var logger = self.logger
            for (key, value) in metadata { logger[metadataKey: key] = "\(value)" }
            logger.info("\(text)")
        }
    }

    func perform(_ action: ClientSession.Action, now: Moment) {
        switch action {
        case let .send(message):
            if supernode != nil {
                supernode?.handleClientMessage(message, link: .local, peer: ownPeer, observedEndpoint: "local", now: now)
            } else if let link = supernodeLink {
                send(message, on: link)
            }
        case let .event(event):
            sessionEvent(event, now: now)
        case .saveState:
            if let state = session?.state {
                do { try files.save(state) } catch { logger.error("cannot save the session", metadata: ["state.error": "\(error)"]) }
            }
        }
    }

    var ownPeer: PeerIdentity? { identity.credential.map(PeerIdentity.init(credential:)) }

    func sessionEvent(_ event: ClientSession.Event, now: Moment) {
        switch event {
        case let .attached(name):
            console.note("attached to supernode \(name)")
            logger.info("attached", metadata: ["supernode.name": "\(name)"])
        case .detached:
            console.note("detached from the supernode")
        case let .presenceChanged(name, status):
            console.note("\(name) is \(status.rawValue)")
            logger.info("presence", metadata: ["buddy.name": "\(name)", "buddy.presence": "\(status.rawValue)"])
        case let .buddyRequest(from, text):
            console.note("buddy request from \(from)\(text.isEmpty ? "" : ": \(text)") (skylark buddy accept \(from))")
            logger.info("buddy request", metadata: ["buddy.name": "\(from)"])
        case let .callSignal(from, signal):
            callSignalArrived(from: from, signal, now: now)
        case let .conferenceSignal(from, signal):
            conferenceSignalArrived(from: from, signal, now: now)
        case let .buddyConfirmed(name):
            console.note("\(name) is now your buddy")
        case let .buddyRemoved(name):
            console.note("\(name) is no longer your buddy")
        case let .messageReceived(message):
            console.note("message from \(message.from): \(message.text)")
            logger.info("message received", metadata: ["message.from": "\(message.from)", "message.id": "\(message.id)"])
        case let .messageUpdated(id, state):
            if let waiter = messageWaiters.removeValue(forKey: id) { waiter.promise.succeed(messageAnswer(id: id)) }
            if case .delivered(_, true) = state { console.note("message \(id.prefix(8)) delivered (receipt)") }
        case let .searchFinished(token, answer):
            if let waiter = searchWaiters.removeValue(forKey: token) { waiter.promise.succeed(searchAnswer(answer)) }
        case let .warning(text):
            console.note("warning: \(text)")
            logger.warning("\(text)")
        }
    }

    // MARK: - UDP

    func sendDatagram(_ datagram: OvDatagram, to target: HostPort, socket: Int = 0) {
        guard let body = try? datagram.serializedBytes() as [UInt8] else { return }
        io.sendDatagram(DatagramKind.overlay(body), to: target, socket: socket)
    }

    func datagram(_ bytes: [UInt8], from source: HostPort, socket: Int, now: Moment) {
        switch DatagramKind(bytes) {
        case .stun:
            if supernode != nil, let answer = STUNResponder.respond(to: bytes, from: source, software: "skylark \(SkylarkVersion.current)") {
                io.sendDatagram(answer, to: source, socket: socket)
            } else if let message = try? STUNMessage.decode(bytes), message.messageClass == .successResponse,
                let mapped = (try? message.xorMappedAddress()) ?? (try? message.mappedAddress()) ?? nil
            {
                nat.probe?.handleBindingResponse(transactionID: message.transactionID, mappedAddress: mapped, now: now.monotonic)
            }
            return
        case .relay: return relayPacketArrived(bytes, from: source, overTCP: false, now: now)
        case .media: return mediaArrived(bytes, via: nil, from: source, now: now)
        case .unknown: return
        case .overlay: break
        }
        guard let datagram = try? OvDatagram(serializedBytes: Array(bytes.dropFirst())) else { return }
        switch datagram.body {
        case let .pathCheck(check)?:
            pathCheckArrived(check, via: .udp(source), now: now)
        case let .hostCacheQuery(query)?:
            guard let supernode, query.nonce.count <= 32 else { return }
            var answer = OvDatagram()
            answer.hostCacheAnswer = OvHostCacheAnswer()
            answer.hostCacheAnswer.nonce = query.nonce
            // Kept under a typical MTU: a dozen contacts.
            answer.hostCacheAnswer.supernodes = supernode.hostCacheContacts(maximum: min(12, Int(query.maximum))).map(\.message)
            sendDatagram(answer, to: source, socket: socket)
        case let .hostCacheAnswer(answer)?:
            bootstrapUDPAnswer(answer, from: source, now: now)
        case let .probeRequest(request)?:
            supernode?.probeRequested(request, from: source, now: now)
        case let .probe(probe)?:
            nat.probe?.handleProbeArrived(transactionID: Array(probe.transactionID), now: now.monotonic)
            reachability.udpReached(nonce: Array(probe.transactionID))
        case nil:
            return
        }
    }

    // MARK: - Shutdown

    /// Signs the user off first (buddies see it at once); a supernode then hands its clients over
    /// and announces its departure half a second later, once the sign-off has gone through it.
    func beginShutdown(now: Moment) {
        guard phase != .finished else { return }
        if case .stopping = phase { return finish() }
        phase = .stopping(since: now.monotonic)
        logger.info("stopping")
        session?.signOff(now: now)
    }

    func shutdownTick(now: Moment) {
        guard case let .stopping(since) = phase else { return }
        if let supernode, !supernode.hasDeparted, now.monotonic - since >= 0.5 {
            self.supernode?.depart(now: now)
        }
        let linger: Double = supernode == nil ? 1.5 : 2
        if now.monotonic - since >= linger || (supernode == nil && session?.isAttached != true) { finish() }
    }

    func fail(_ reason: String, exitCode: Int32) {
        outcome = .failed(reason, exitCode: exitCode)
        logger.error("\(reason)")
        finish()
    }

    func finish() {
        guard phase != .finished else { return }
        phase = .finished
        links.closeAll(reason: .nodeStopping)
        for waiter in searchWaiters.values { waiter.promise.succeed(#"{"ok":false,"error":"node stopping"}"#) }
        for waiter in messageWaiters.values { waiter.promise.succeed(#"{"ok":false,"error":"node stopping"}"#) }
        searchWaiters = [:]
        messageWaiters = [:]
        saveHostCache(now: now)
        console.finish()
    }

    func saveHostCache(now: Moment) {
        hostCacheDirty = false
        nextHostCacheSave = now.monotonic + 5
        do { try files.save(hostCache) } catch { logger.warning("cannot save the host cache", metadata: ["state.error": "\(error)"]) }
    }
}
