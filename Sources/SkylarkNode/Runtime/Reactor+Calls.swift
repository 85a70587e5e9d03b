import Foundation
import SkylarkCrypto
import SkylarkMedia
import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire

extension Reactor {
    static let callRequestID: UInt64 = 1 << 61

    // MARK: - Control

    func startCall(to rawName: String, relayFirst: Bool = false, promise: ControlReply, now: Moment) {
        guard let session else { return promise.succeed(Self.failure("not logged in yet")) }
        guard let name = try? UserName.canonical(rawName) else { return promise.succeed(Self.failure("invalid name '\(rawName)'")) }
        guard let buddy = session.state.buddies[name], buddy.state == .confirmed else {
            return promise.succeed(Self.failure("\(name) is not your buddy (calls are between buddies: skylark buddy add \(name))"))
        }
        guard buddy.presence == .online || buddy.presence == .away else {
            return promise.succeed(Self.failure("\(name) is offline"))
        }
        if let busy = busyText() { return promise.succeed(Self.failure(busy)) }
        do {
            let call = try CallSession(
                calling: name, candidates: ownMediaCandidates(), natType: natType, peerNAT: buddy.natType ?? .unknown,
                ssrc: UInt32.random(in: 1...UInt32.max, using: &random), relayFirst: relayFirst, configuration: configuration.call, now: now.monotonic)
            let id = call.id
            calls[id] = CallEntry(session: call, startedAt: now.monotonic)
            console.note("calling \(name) (call \(id.hex.prefix(8)))")
            logger.info("call started", metadata: ["call.id": "\(id)", "call.peer": "\(name)"])
            drainCall(id, now: now)
            promise.succeed(Self.answer(callReport(id, now: now)))
        } catch {
            promise.succeed(Self.failure("cannot start the call: \(error)"))
        }
    }

    func answerCall(_ prefix: String?, promise: ControlReply, now: Moment) {
        guard let id = resolveCall(prefix, where: { $0.session.phase == .ringing }) else {
            if prefix == nil, answerConference(promise: promise, now: now) { return }
            return promise.succeed(Self.failure(prefix.map { "no ringing call \($0)" } ?? "no call is ringing"))
        }
        calls[id]?.session.answer(now: now.monotonic)
        calls[id]?.answeredAt = now.monotonic
        drainCall(id, now: now)
        promise.succeed(Self.answer(callReport(id, now: now)))
    }

    func hangUp(_ prefix: String?, promise: ControlReply, now: Moment) {
        guard let id = resolveCall(prefix, where: { !$0.session.isEnded }) else {
            return promise.succeed(Self.failure(prefix.map { "no call \($0)" } ?? "no call in progress"))
        }
        if calls[id]?.session.phase == .ringing { calls[id]?.session.decline() } else { calls[id]?.session.hangUp() }
        drainCall(id, now: now)
        promise.succeed(Self.answer(callReport(id, now: now)))
    }

    /// A user call by (a prefix of) its hex id, or the newest call matching `filter`.
    func resolveCall(_ prefix: String?, where filter: (CallEntry) -> Bool) -> CallID? {
        calls.resolve(prefix, where: filter)
    }

    /// Our candidates: LAN addresses and the public UDP mapping (none when UDP is blocked).
    func ownMediaCandidates() -> [OvMediaCandidate] {
        guard natType != .udpBlocked else { return [] }
        var candidates: [OvMediaCandidate] = []
        for endpoint in privateEndpoints() {
            var candidate = OvMediaCandidate()
            candidate.kind = .host
            candidate.endpoint = endpoint
            candidates.append(candidate)
        }
        if let publicUDP, !candidates.contains(where: { $0.endpoint == publicUDP.description }) {
            var candidate = OvMediaCandidate()
            candidate.kind = .reflexive
            candidate.endpoint = publicUDP.description
            candidates.append(candidate)
        }
        return candidates
    }

    // MARK: - Signalling and checks in

    func callSignalArrived(from peer: String, _ signal: OvCallSignal, now: Moment) {
        let id = CallID(Array(signal.callID))
        guard signal.callID.count == 16 else { return }
        if calls[id] != nil {
            guard calls[id]!.session.peer == peer else { return }
            calls[id]!.session.handleSignal(signal, now: now.monotonic)
            if case .answer? = signal.body { calls[id]!.answeredAt = now.monotonic }
            drainCall(id, now: now)
            return
        }
        guard case let .offer(offer)? = signal.body else { return }
        if busyText() != nil {
            // Busy: one call (or conference) at a time.
            var busy = OvCallSignal()
            busy.callID = signal.callID
            busy.end = OvCallEnd()
            busy.end.reason = .busy
            busy.end.detail = "\(identity.name ?? "callee") is in another call"
            try? session?.sendCallSignal(busy, to: peer, now: now)
            return
        }
        do {
            let call = try CallSession(
                offer: offer, callID: Array(signal.callID), from: peer, candidates: ownMediaCandidates(), natType: natType,
                ssrc: UInt32.random(in: 1...UInt32.max, using: &random), configuration: configuration.call, now: now.monotonic)
            calls[id] = CallEntry(session: call, startedAt: now.monotonic)
            console.note("incoming call from \(peer) (call \(id.hex.prefix(8)))\(configuration.autoAnswer ? ", answering" : " — skylark answer")")
            logger.info("call ringing", metadata: ["call.id": "\(id)", "call.peer": "\(peer)"])
            if configuration.autoAnswer {
                calls[id]!.session.answer(now: now.monotonic)
                calls[id]!.answeredAt = now.monotonic
            }
            drainCall(id, now: now)
        } catch {
            logger.warning("cannot take a call", metadata: ["call.error": "\(error)"])
        }
    }

    func pathCheckArrived(_ check: OvPathCheck, via route: MediaRoute, now: Moment) {
        let id = CallID(Array(check.callID))
        logger.trace(
            "path check in",
            metadata: [
                "call.id": "\(id)", "peer.address": "\(route.endpoint)", "call.known": "\(calls[id] != nil)",
                "call.response": "\(check.response)", "call.circuit": "\(route.circuit?.hexString.prefix(8) ?? "-")",
            ])
        guard calls[id] != nil else { return }
        calls[id]!.session.handleCheck(check, arrivedVia: route, now: now.monotonic)
        drainCall(id, now: now)
    }

    /// A relay packet for this node (not one to forward): its payload is a path check or media.
    func relayPacketArrived(_ packet: [UInt8], from source: HostPort, overTCP: Bool, now: Moment) {
        guard let (leg, payload) = RelayCircuits.parse(packet), !payload.isEmpty else { return }
        if DatagramKind(Array(payload)) == .overlay, let datagram = try? OvDatagram(serializedBytes: Array(payload.dropFirst())),
            case let .pathCheck(check)? = datagram.body
        {
            return pathCheckArrived(check, via: MediaRoute(endpoint: source, circuit: leg, overTCP: overTCP), now: now)
        }
        mediaArrived(Array(payload), via: leg, from: source, now: now)
    }

    /// Encrypted RTP from the peer, straight or out of a circuit.
    func mediaArrived(_ packet: [UInt8], via leg: [UInt8]?, from source: HostPort, now: Moment) {
        guard let id = calls.owner(ofMedia: packet, circuit: leg, from: source, mixer: { self.conferences[$0]?.mixerMedia }) else { return }
        if let media = calls[id]!.media {
            if media.receive(packet, now: now.monotonic) { calls[id]!.session.mediaArrived(now: now.monotonic) }
        } else if let conference = calls[id]!.conference, let mixer = conferences[conference.conferenceID]?.mixerMedia,
            mixer.receive(packet, leg: id, now: now.monotonic)
        {
            calls[id]!.session.mediaArrived(now: now.monotonic)
        }
    }

    // MARK: - Actions out

    func drainCall(_ id: CallID, now: Moment) {
        while let action = calls[id]?.session.poll() {
            switch action {
            case let .signal(signal):
                guard let peer = calls[id]?.session.peer else { continue }
                if let conference = calls[id]?.conference {
                    // A leg's signalling travels inside conference messages (the mixer need not be a buddy).
                    var wrapped = OvConferenceSignal()
                    wrapped.conferenceID = Data(conference.conferenceID.bytes)
                    wrapped.leg = conference.template
                    wrapped.leg.call = signal
                    try? session?.sendConferenceSignal(wrapped, to: peer, now: now)
                    continue
                }
                do { try session?.sendCallSignal(signal, to: peer, now: now) } catch {
                    logger.warning("cannot signal the call", metadata: ["call.error": "\(error)"])
                }
            case let .sendCheck(check, route):
                logger.trace(
                    "path check out",
                    metadata: [
                        "call.id": "\(id)", "peer.address": "\(route.endpoint)", "call.response": "\(check.response)",
                        "call.circuit": "\(route.circuit?.hexString.prefix(8) ?? "-")",
                    ])
                var datagram = OvDatagram()
                datagram.pathCheck = check
                guard let body = try? datagram.serializedBytes() as [UInt8] else { continue }
                sendCallPacket(DatagramKind.overlay(body), via: route)
            case let .requestRelay(avoid):
                requestRelay(for: id, avoid: avoid, now: now)
            case let .pathChanged(path):
                callPathChanged(id, path, now: now)
            case let .ended(reason, detail):
                callEnded(id, reason: reason, detail: detail, now: now)
            }
        }
    }

    /// Sends a call packet (path check or media) straight over UDP, or into a relay circuit:
    /// over UDP to our supernode's relay port, or over our TCP link when UDP is blocked.
    func sendCallPacket(_ payload: [UInt8], via route: MediaRoute) {
        guard let circuit = route.circuit else {
            io.sendDatagram(payload, to: route.endpoint, socket: 0)
            return
        }
        let packet = RelayCircuits.packet(leg: circuit, payload: payload)
        if supernode != nil {
            // Our end of the circuit is in our own table.
            io.relayFromLocal(packet)
        } else if route.overTCP, let link = supernodeLink {
            var message = OvLinkMessage()
            message.relayData = OvRelayData()
            message.relayData.packet = Data(packet)
            send(message, on: link)
        } else {
            io.sendDatagram(packet, to: route.endpoint, socket: 0)
        }
    }

    func requestRelay(for id: CallID, avoid: [String], now: Moment) {
        guard let peer = calls[id]?.session.peer else { return }
        var request = OvRelayRequest()
        request.callID = Data(id.bytes)
        request.callee = peer
        // Relays of a circuit that died are avoided by node id (the core names them).
        let contacts = Array(knownSupernodes.values) + (supernode?.dht.routing.allContacts ?? [])
        request.avoid = avoid.compactMap { name in contacts.first { $0.name == name }.map { Data($0.nodeID.bytes) } }
        let message: (inout OvLinkMessage) -> Void = { $0.relayRequest = request }
        if supernode != nil {
            var local = OvLinkMessage()
            local.id = makeRequestID()
            message(&local)
            runtimeRequests[local.id] = (.relay(callID: id), now.monotonic + 15)
            supernode?.handleClientMessage(local, link: .local, peer: ownPeer, observedEndpoint: "local", now: now)
        } else if let link = supernodeLink {
            sendRuntimeRequest(.relay(callID: id), on: link, now: now, timeout: 15, message)
        } else {
            calls[id]?.session.relayRefused("not attached to a supernode", now: now.monotonic)
        }
        logger.info("relay requested", metadata: ["call.id": "\(id)", "call.avoid": "\(avoid.joined(separator: ","))"])
    }

    func relayAnswered(callID id: CallID, _ message: OvLinkMessage, now: Moment) {
        guard calls[id] != nil else { return }
        switch message.body {
        case let .relayGranted(granted)?:
            // Our end of the circuit is our supernode's UDP port (ourselves, when we are one).
            let ownEnd = supernode?.contact.udpEndpoint ?? session?.supernode?.udpEndpoint
            guard let ownEnd else { return calls[id]!.session.relayRefused("no supernode UDP endpoint", now: now.monotonic) }
            // Over our TCP link unless UDP is known to work (blocked, or not yet tested).
            let overTCP = supernode == nil && (natType == .udpBlocked || natType == .unknown)
            calls[id]!.session.relayGranted(granted, ownEnd: ownEnd, overTCP: overTCP, now: now.monotonic)
            logger.info("relay granted", metadata: ["call.id": "\(id)", "call.relays": "\(granted.relays.joined(separator: ">"))"])
        case let .refused(refused)?:
            calls[id]!.session.relayRefused(refused.reason, now: now.monotonic)
            logger.warning("relay refused", metadata: ["call.id": "\(id)", "call.error": "\(refused.reason)"])
        default:
            calls[id]!.session.relayRefused("unexpected answer", now: now.monotonic)
        }
        drainCall(id, now: now)
    }

    func callPathChanged(_ id: CallID, _ path: CallSession.Path?, now: Moment) {
        guard var entry = calls[id] else { return }
        if let path {
            let text = Self.describe(path)
            entry.pathHistory.append(text)
            console.note("\(entry.conference == nil ? "call with" : "conference leg with") \(entry.session.peer): \(text)")
            logger.info("call path", metadata: ["call.id": "\(id)", "call.path": "\(text)"])
            if entry.conference != nil {
                calls[id] = entry
                conferenceLegConnected(id, now: now)
                return drainCall(id, now: now)
            }
            if entry.media == nil, let secret = entry.session.sharedSecret, let peerSSRC = entry.session.peerSSRC {
                do {
                    let devices = try callAudio(speaker: speakerPath(for: entry.session))
                    entry.media = try CallMedia(
                        sharedSecret: secret, callID: entry.session.callID, role: entry.session.role == .caller ? .caller : .callee,
                        ssrc: entry.session.ssrc, peerSSRC: peerSSRC, source: devices.source, sink: devices.sink,
                        dtx: configuration.discontinuousTransmission && CallAudio.isDevice(microphone: configuration.microphone),
                        sequence: .random(in: 0...UInt16.max, using: &random),
                        timestamp: .random(in: 0...UInt32.max, using: &random), now: now.monotonic)
                } catch {
                    logger.error("cannot start the call's audio", metadata: ["call.error": "\(error)"])
                    entry.session.hangUp()
                }
            }
            for waiter in entry.waiters { waiter.succeed(Self.answer(callReport(id, entry: entry, now: now))) }
            entry.waiters = []
        }
        calls[id] = entry
        drainCall(id, now: now)
    }

    func callEnded(_ id: CallID, reason: OvCallEndReason, detail: String, now: Moment) {
        guard var entry = calls[id] else { return }
        entry.endedAt = now.monotonic
        entry.endReason = detail
        entry.media?.close()
        if entry.conference != nil {
            calls[id] = entry
            logger.info("conference leg ended", metadata: ["call.id": "\(id)", "call.reason": "\(detail)"])
            return conferenceLegEnded(id, detail: detail, now: now)
        }
        console.note("call with \(entry.session.peer) ended: \(detail)")
        logger.info("call ended", metadata: ["call.id": "\(id)", "call.reason": "\(detail)"])
        for waiter in entry.waiters { waiter.succeed(Self.answer(callReport(id, entry: entry, now: now))) }
        entry.waiters = []
        calls[id] = entry
    }

    /// This node's microphone and `speaker` for one call or leg (paired when both are devices).
    func callAudio(speaker: String?) throws -> (source: any AudioSource, sink: (any AudioSink)?) {
        try CallAudio.make(
            microphone: configuration.microphone, speaker: speaker, processing: configuration.voiceProcessing, logger: logger, controls: audio)
    }

    /// The recording of a call: the --speaker path, where "{peer}" and "{call}" are replaced by
    /// the peer's name and the call id (one file per call), or none.
    func speakerPath(for call: CallSession) -> String? {
        configuration.speaker.map { $0.replacingOccurrences(of: "{peer}", with: call.peer).replacingOccurrences(of: "{call}", with: call.callID.hexString) }
    }

    // MARK: - Time

    /// Called every 20 ms while a call has media, and from the 100 ms tick.
    func callsTick(now: Moment) {
        for id in calls.ids {
            guard var entry = calls[id] else { continue }
            if let deadline = entry.session.nextDeadline, deadline <= now.monotonic {
                entry.session.handleTimeout(now: now.monotonic)
                calls[id] = entry
                drainCall(id, now: now)
                entry = calls[id]!
            }
            if let path = entry.session.path, let media = entry.media {
                for packet in media.packetsDue(now: now.monotonic) {
                    sendCallPacket(packet, via: path.route)
                }
                if media.playOut(now: now.monotonic), entry.firstAudioAt == nil {
                    calls[id]?.firstAudioAt = now.monotonic
                    logger.info(
                        "first audio",
                        metadata: [
                            "call.id": "\(id)", "call.setup_ms": "\(Int((now.monotonic - entry.startedAt) * 1000))",
                            "call.path": "\(entry.session.path.map(Self.describe) ?? "-")",
                        ])
                }
            }
        }
        calls.removeExpired(now: now.monotonic)
        conferenceMediaTick(now: now)
    }

    var hasActiveMedia: Bool { conferences.hasMixing || calls.hasActiveMedia }

    // MARK: - Reports

    func callReport(_ id: CallID, now: Moment) -> ControlResults.Call {
        callReport(id, entry: calls[id]!, now: now)
    }

    func callReport(_ id: CallID, entry: CallEntry, now: Moment) -> ControlResults.Call {
        CallTable.report(id, entry: entry, now: now)
    }

    static func describe(_ path: CallSession.Path) -> String { CallTable.describe(path) }
}
