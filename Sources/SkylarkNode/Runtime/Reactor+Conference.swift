import Foundation
import SkylarkMedia
import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire

extension Reactor {
    /// Supernodes beyond the participants' own that an initiator asks for their capability.
    static let extraMixerCandidates = 3

    // MARK: - Control

    func startConference(with rawNames: [String], promise: ControlReply, now: Moment) {
        guard let session else { return promise.succeed(Self.failure("not logged in yet")) }
        var names: [String] = []
        for raw in rawNames {
            guard let name = try? UserName.canonical(raw) else { return promise.succeed(Self.failure("invalid name '\(raw)'")) }
            guard name != identity.name else { continue }
            guard let buddy = session.state.buddies[name], buddy.state == .confirmed else {
                return promise.succeed(Self.failure("\(name) is not your buddy (conferences invite buddies: skylark buddy add \(name))"))
            }
            guard buddy.presence == .online || buddy.presence == .away else { return promise.succeed(Self.failure("\(name) is offline")) }
            if !names.contains(name) { names.append(name) }
        }
        guard !names.isEmpty else { return promise.succeed(Self.failure("name at least one buddy to invite")) }
        if let busy = busyText() { return promise.succeed(Self.failure(busy)) }
        // Besides the invitees and their supernodes, a few supernodes we know are asked too.
        let own = ownMixerCapability()
        let known = Set((Array(knownSupernodes.values) + (supernode?.dht.routing.allContacts ?? [])).map(\.name)).subtracting([own.name, own.supernodeName, ""])
            .sorted()
        let conference = ConferenceSession(
            inviting: names, own: own, alsoAsking: Array(known.shuffled(using: &random).prefix(Self.extraMixerCandidates)),
            configuration: configuration.conference, now: now.monotonic)
        let id = conference.id
        conferences[id] = ConferenceEntry(session: conference)
        console.note("conference \(id.hex.prefix(8)) with \(names.joined(separator: ", ")): asking who can mix")
        logger.info("conference started", metadata: ["conference.id": "\(id)", "conference.invited": "\(names.joined(separator: ","))"])
        drainConference(id, now: now)
        promise.succeed(Self.answer(conferenceReport(id, now: now)))
    }

    func addToConference(_ rawName: String, promise: ControlReply, now: Moment) {
        guard let id = currentConference() else { return promise.succeed(Self.failure("not in a conference")) }
        guard let name = try? UserName.canonical(rawName) else { return promise.succeed(Self.failure("invalid name '\(rawName)'")) }
        guard let buddy = session?.state.buddies[name], buddy.state == .confirmed else {
            return promise.succeed(Self.failure("\(name) is not your buddy (skylark buddy add \(name))"))
        }
        guard buddy.presence == .online || buddy.presence == .away else { return promise.succeed(Self.failure("\(name) is offline")) }
        guard !conferences[id]!.session.members.contains(name) else { return promise.succeed(Self.failure("\(name) is already in the conference")) }
        conferences[id]!.session.invite(name, now: now.monotonic)
        drainConference(id, now: now)
        promise.succeed(Self.answer(conferenceReport(id, now: now)))
    }

    func leaveConference(promise: ControlReply, now: Moment) {
        guard let id = currentConference() ?? ringingConference() else { return promise.succeed(Self.failure("not in a conference")) }
        conferences[id]!.session.leave(now: now.monotonic)
        drainConference(id, now: now)
        promise.succeed(Self.answer(conferenceReport(id, now: now)))
    }

    /// `skylark answer` when no call rings: a conference invitation.
    func answerConference(promise: ControlReply, now: Moment) -> Bool {
        guard let id = ringingConference() else { return false }
        if let busy = busyText() {
            promise.succeed(Self.failure(busy))
            return true
        }
        conferences[id]!.session.answer(now: now.monotonic)
        drainConference(id, now: now)
        promise.succeed(Self.answer(conferenceReport(id, now: now)))
        return true
    }

    /// The conference we take part in (not one we only mix for others).
    func currentConference() -> ConferenceID? { conferences.current }

    func ringingConference() -> ConferenceID? { conferences.ringing }

    /// Why a new call or conference cannot start, if it cannot.
    func busyText() -> String? { calls.busyReason(conferences: conferences) }

    // MARK: - Capability

    /// What this node offers as a mixer, measured now: idle cores, uplink, reachability.
    func ownMixerCapability() -> OvMixerCapability {
        var capability = OvMixerCapability()
        capability.name = identity.name ?? ""
        capability.idleCores = idleCPUShare * Double(ProcessInfo.processInfo.activeProcessorCount)
        capability.upstreamKbps = UInt32(clamping: configuration.upstreamKbps ?? UplinkSpeed.measuredKbps() ?? UplinkSpeed.assumedKbps)
        capability.natType = natType.rawValue
        capability.supernode = supernode != nil
        capability.supernodeName = supernode == nil ? (session?.supernode?.name ?? "") : ""
        capability.room = UInt32(max(1, configuration.conference.maximumParticipants - conferences.mixedMembers))
        return capability
    }

    // MARK: - Signals in

    func conferenceSignalArrived(from peer: String, _ signal: OvConferenceSignal, now: Moment) {
        guard signal.conferenceID.count == 16 else { return }
        let id = ConferenceID(Array(signal.conferenceID))
        switch signal.body {
        case .query?:
            var answer = OvConferenceSignal()
            answer.conferenceID = signal.conferenceID
            answer.capability = ownMixerCapability()
            logger.info(
                "mixer capability asked",
                metadata: [
                    "conference.id": "\(id)", "peer.name": "\(peer)",
                    "conference.room": "\(answer.capability.room)", "conference.idle_cores": "\(answer.capability.idleCores)",
                ])
            try? session?.sendConferenceSignal(answer, to: peer, now: now)
        case let .invite(invite)?:
            guard conferences[id] == nil, let own = identity.name else { return }
            if let busy = busyText() {
                var decline = OvConferenceSignal()
                decline.conferenceID = signal.conferenceID
                decline.decline.detail = "\(own) is busy: \(busy)"
                try? session?.sendConferenceSignal(decline, to: peer, now: now)
                return
            }
            var conference = ConferenceSession(
                invite: invite, id: Array(signal.conferenceID), from: peer, ownName: own,
                configuration: configuration.conference, now: now.monotonic)
            if configuration.autoAnswer { conference.answer(now: now.monotonic) }
            conferences[id] = ConferenceEntry(session: conference)
            drainConference(id, now: now)
            for held in conferences.releaseHeld(for: id) { legSignalArrived(from: held.peer, held.leg, conferenceID: id, now: now) }
        case let .leg(leg)?:
            legSignalArrived(from: peer, leg, conferenceID: id, now: now)
        default:
            conferences[id]?.session.handleSignal(signal, from: peer, now: now.monotonic)
            drainConference(id, now: now)
        }
    }

    /// Call signalling of a leg: for a leg we have, or an offer naming us as the mixer.
    func legSignalArrived(from peer: String, _ leg: OvConferenceLeg, conferenceID id: ConferenceID, mayHold: Bool = true, now: Moment) {
        let signal = leg.call
        guard signal.callID.count == 16 else { return }
        let callID = CallID(Array(signal.callID))
        if let entry = calls[callID] {
            guard entry.session.peer == peer, entry.conference?.conferenceID == id else { return }
            calls[callID]!.session.handleSignal(signal, now: now.monotonic)
            drainCall(callID, now: now)
            return
        }
        guard case let .offer(offer)? = signal.body, let own = identity.name else { return }
        if conferences[id] == nil, mayHold, leg.members.contains(own) {
            // The participant counts us among the invited: our invitation may arrive after this
            // leg (it travels another path). A mixer outside the conference is not held up.
            if !conferences.hold(leg, from: peer, for: id, now: now.monotonic) {
                logger.debug("too many leg offers held", metadata: ["conference.id": "\(id)"])
            }
            return
        }
        if conferences[id] == nil, conferences.mixedForOthers < configuration.conference.maximumMixedForOthers,
            let mixing = ConferenceSession(
                mixingFor: leg, id: id.bytes, ownName: own, configuration: configuration.conference,
                now: now.monotonic)
        {
            conferences[id] = ConferenceEntry(session: mixing)
        }
        let decision = conferences[id]?.session.legOffered(from: peer, leg, now: now.monotonic) ?? .refuse("\(own) does not mix this conference", moved: nil)
        drainConference(id, now: now)
        switch decision {
        case .accept:
            do {
                var call = try CallSession(
                    offer: offer, callID: Array(signal.callID), from: peer, candidates: ownMediaCandidates(), natType: natType,
                    ssrc: UInt32.random(in: 1...UInt32.max, using: &random), configuration: .conferenceLeg, now: now.monotonic)
                call.answer(now: now.monotonic)
                var template = OvConferenceLeg()
                template.epoch = leg.epoch
                calls[callID] = CallEntry(
                    session: call, startedAt: now.monotonic, answeredAt: now.monotonic,
                    conference: ConferenceLegInfo(conferenceID: id, weMix: true, template: template))
                logger.info("conference leg accepted", metadata: ["conference.id": "\(id)", "call.id": "\(callID)", "call.peer": "\(peer)"])
                drainCall(callID, now: now)
            } catch {
                logger.warning("cannot take a conference leg", metadata: ["call.error": "\(error)"])
            }
        case let .refuse(reason, moved):
            var end = OvConferenceSignal()
            end.conferenceID = Data(id.bytes)
            end.leg.epoch = leg.epoch
            end.leg.call.callID = signal.callID
            end.leg.call.end.reason = .declined
            end.leg.call.end.detail = reason
            try? session?.sendConferenceSignal(end, to: peer, now: now)
            if let moved {
                var signal = OvConferenceSignal()
                signal.conferenceID = Data(id.bytes)
                signal.moved = moved
                try? session?.sendConferenceSignal(signal, to: peer, now: now)
            }
        }
    }

    // MARK: - Actions out

    func drainConference(_ id: ConferenceID, now: Moment) {
        while let action = conferences[id]?.session.poll() {
            switch action {
            case let .signal(signal, to):
                do { try session?.sendConferenceSignal(signal, to: to, now: now) } catch {
                    logger.warning("cannot signal the conference", metadata: ["conference.id": "\(id)", "peer.name": "\(to)", "conference.error": "\(error)"])
                }
            case let .ring(from):
                let answered = conferences[id]!.session.phase != .ringing
                let others = conferences[id]!.session.invited.filter { $0 != identity.name }
                console.note(
                    "conference invitation from \(from)\(others.isEmpty ? "" : " (with \(others.joined(separator: ", ")))")"
                        + (answered ? ", joining" : " — skylark answer to join, skylark conf leave to decline"))
                logger.info("conference ringing", metadata: ["conference.id": "\(id)", "conference.from": "\(from)"])
            case let .openLeg(mixer, leg):
                openLeg(id, to: mixer, leg: leg, now: now)
            case let .closeLeg(reason):
                guard let legID = conferences[id]?.legID else { continue }
                conferences[id]!.legID = nil  // a leg we close is not a lost mixer
                calls[legID]?.session.hangUp()
                drainCall(legID, now: now)
                logger.info("conference leg closed", metadata: ["conference.id": "\(id)", "conference.reason": "\(reason)"])
            case .startMixing:
                startMixing(id, now: now)
            case let .stopMixing(reason):
                stopMixing(id, reason: reason, now: now)
            case let .note(text):
                console.note(text)
                logger.info("conference", metadata: ["conference.id": "\(id)", "conference.note": "\(text)"])
            case let .ended(reason):
                conferences[id]!.endedAt = now.monotonic
                conferences[id]!.endReason = reason
                if let legID = conferences[id]!.legID {
                    conferences[id]!.legID = nil
                    calls[legID]?.session.hangUp()
                    drainCall(legID, now: now)
                }
                if conferences[id]!.session.participating { console.note("conference \(id.hex.prefix(8)) ended: \(reason)") }
                logger.info("conference ended", metadata: ["conference.id": "\(id)", "conference.reason": "\(reason)"])
            }
        }
    }

    func openLeg(_ id: ConferenceID, to mixer: String, leg: OvConferenceLeg, now: Moment) {
        let peerNAT = leg.mixers.first { $0.name == mixer }.map { $0.capability.supernode ? .open : NATType(reported: $0.capability.natType) } ?? .unknown
        do {
            let call = try CallSession(
                calling: mixer, candidates: ownMediaCandidates(), natType: natType, peerNAT: peerNAT,
                ssrc: UInt32.random(in: 1...UInt32.max, using: &random), configuration: .conferenceLeg, now: now.monotonic)
            let callID = call.id
            calls[callID] = CallEntry(session: call, startedAt: now.monotonic, conference: ConferenceLegInfo(conferenceID: id, weMix: false, template: leg))
            conferences[id]?.legID = callID
            logger.info(
                "conference leg opened",
                metadata: [
                    "conference.id": "\(id)", "call.id": "\(callID)", "conference.mixer": "\(mixer)",
                    "conference.epoch": "\(leg.epoch)",
                ])
            drainCall(callID, now: now)
        } catch {
            conferences[id]?.session.legEnded("cannot open a leg: \(error)", now: now.monotonic)
            drainConference(id, now: now)
        }
    }

    func startMixing(_ id: ConferenceID, now: Moment) {
        guard let conference = conferences[id], conference.mixerMedia == nil else { return }
        let local = conference.session.participating ? conference.session.ownName : nil
        do {
            let devices = try local.map { _ in try callAudio(speaker: conferenceSpeakerPath(id, mixer: conference.session.ownName)) }
            conferences[id]!.mixerMedia = try MixerMedia(localName: local, source: devices?.source, sink: devices?.sink, now: now.monotonic)
            logger.info("mixing", metadata: ["conference.id": "\(id)", "conference.epoch": "\(conference.session.epoch)"])
        } catch {
            logger.error("cannot start mixing", metadata: ["conference.id": "\(id)", "conference.error": "\(error)"])
            conferences[id]!.session.leave(now: now.monotonic)
        }
    }

    func stopMixing(_ id: ConferenceID, reason: String, now: Moment) {
        for (callID, _) in calls.mixedLegs(of: id) {
            calls[callID]!.session.hangUp()
            drainCall(callID, now: now)
        }
        conferences[id]?.mixerMedia?.close()
        conferences[id]?.mixerMedia = nil
        logger.info("mixing stopped", metadata: ["conference.id": "\(id)", "conference.reason": "\(reason)"])
    }

    // MARK: - Legs (called from the call code)

    /// A leg's path works: its audio starts (ours to the mixer, or one more at our mixer).
    func conferenceLegConnected(_ callID: CallID, now: Moment) {
        guard let entry = calls[callID], let leg = entry.conference, let secret = entry.session.sharedSecret,
            let peerSSRC = entry.session.peerSSRC, conferences[leg.conferenceID] != nil
        else { return }
        let id = leg.conferenceID
        if leg.weMix {
            guard let media = conferences[id]!.mixerMedia, !media.hasLeg(callID) else { return }
            do {
                try media.addLeg(
                    callID, participant: entry.session.peer, sharedSecret: secret, callID: entry.session.callID, ssrc: entry.session.ssrc,
                    peerSSRC: peerSSRC, sequence: .random(in: 0...UInt16.max, using: &random), timestamp: .random(in: 0...UInt32.max, using: &random))
                conferences[id]!.session.memberJoined(entry.session.peer, now: now.monotonic)
            } catch {
                logger.error("cannot mix a leg", metadata: ["conference.id": "\(id)", "conference.error": "\(error)"])
                calls[callID]!.session.hangUp()
                drainCall(callID, now: now)
            }
        } else {
            guard entry.media == nil, conferences[id]!.legID == callID else { return }
            do {
                let devices = try callAudio(speaker: conferenceSpeakerPath(id, mixer: entry.session.peer))
                calls[callID]!.media = try CallMedia(
                    sharedSecret: secret, callID: entry.session.callID, role: .caller, ssrc: entry.session.ssrc,
                    peerSSRC: peerSSRC, source: devices.source, sink: devices.sink, conferenceLeg: true,
                    sequence: .random(in: 0...UInt16.max, using: &random), timestamp: .random(in: 0...UInt32.max, using: &random), now: now.monotonic)
                conferences[id]!.session.legConnected(now: now.monotonic)
            } catch {
                logger.error("cannot start the conference audio", metadata: ["conference.error": "\(error)"])
                calls[callID]!.session.hangUp()
                drainCall(callID, now: now)
            }
        }
        drainConference(id, now: now)
    }

    /// A leg ended: a member left our mix, or we lost our mixer (unless we closed the leg).
    func conferenceLegEnded(_ callID: CallID, detail: String, now: Moment) {
        guard let leg = calls[callID]?.conference, let peer = calls[callID]?.session.peer, conferences[leg.conferenceID] != nil else { return }
        let id = leg.conferenceID
        if leg.weMix {
            conferences[id]!.mixerMedia?.removeLeg(callID)
            conferences[id]!.session.memberLeft(peer, detail: detail, now: now.monotonic)
        } else if conferences[id]!.legID == callID {
            conferences[id]!.legID = nil
            conferences[id]!.session.legEnded(detail, now: now.monotonic)
        }
        drainConference(id, now: now)
    }

    /// Our mixer's packets for one tick, out on each leg's path.
    func conferenceMediaTick(now: Moment) {
        for media in conferences.mixers {
            for (legID, packet) in media.tick(now: now.monotonic) {
                guard let path = calls[legID]?.session.path else { continue }
                sendCallPacket(packet, via: path.route)
            }
        }
    }

    /// Timers of the conference cores, every 100 ms; ended conferences are kept a minute.
    func conferencesTick(now: Moment) {
        if now.monotonic >= nextCPUSample {
            nextCPUSample = now.monotonic + 2
            if let idle = conferenceCPU.sample() { idleCPUShare = idle }
        }
        for (id, offers) in conferences.expiredHolds(now: now.monotonic) {
            // No invitation came: we only mix.
            for offer in offers { legSignalArrived(from: offer.peer, offer.leg, conferenceID: id, mayHold: false, now: now) }
        }
        for id in conferences.ids {
            if let deadline = conferences[id]?.session.nextDeadline, deadline <= now.monotonic {
                conferences[id]!.session.handleTimeout(now: now.monotonic)
                drainConference(id, now: now)
            }
        }
        conferences.removeExpired(now: now.monotonic)
    }

    /// `--speaker` for conference audio: "{peer}" becomes "conference-MIXER", so each mixer's
    /// audio (before and after a failover) is its own file; "{call}" the conference id.
    func conferenceSpeakerPath(_ id: ConferenceID, mixer: String) -> String? {
        configuration.speaker.map { $0.replacingOccurrences(of: "{peer}", with: "conference-\(mixer)").replacingOccurrences(of: "{call}", with: id.hex) }
    }

    // MARK: - Reports

    func conferenceReport(_ id: ConferenceID, now: Moment) -> ControlResults.Conference {
        let entry = conferences[id]!
        let core = entry.session
        let state: String
        switch core.phase {
        case .gathering: state = "gathering"
        case .ringing: state = "ringing"
        case .joining: state = "joining"
        case .active: state = "active"
        case .ended: state = "ended"
        }
        var legs: [ControlResults.ConferenceLeg] = []
        if let media = entry.mixerMedia {
            for (callID, call) in calls.mixedLegs(of: id) {
                let stats = media.legStatistics(callID)
                legs.append(
                    ControlResults.ConferenceLeg(
                        participant: call.session.peer, path: call.session.path.map(Self.describe),
                        packetsSent: stats?.sent ?? 0, packetsReceived: stats?.received ?? 0,
                        lossPercent: stats?.lossPercent, jitterMilliseconds: stats?.playout?.jitterMs, framesMixed: stats?.framesMixed,
                        latePackets: stats?.playout?.late, concealedFrames: stats?.playout?.concealed, discardedPackets: stats?.playout?.discarded,
                        targetDelayMilliseconds: stats?.playout?.targetDelayMs, delayMilliseconds: stats?.playout?.currentDelayMs))
            }
            legs.sort { $0.participant < $1.participant }
        }
        let counters = entry.mixerMedia?.counters
        return ControlResults.Conference(
            id: id.hex, initiator: core.initiator, state: state, participating: core.participating,
            mixer: core.mixer?.name, mixerReason: core.mixer?.reason, weMix: core.isMixing, epoch: core.epoch,
            candidates: core.mixers.map { ControlResults.MixerCandidate(name: $0.name, reason: $0.reason) },
            members: core.members, invited: core.invited,
            mixerHistory: core.mixerHistory.map { ControlResults.MixerTurn(name: $0.name, epoch: $0.epoch, atMs: (now.wallTime(at: $0.at) * 1000).rounded()) },
            leg: entry.legID.flatMap { calls[$0] != nil ? callReport($0, now: now) : nil },
            legs: legs,
            mixing: counters.map {
                ControlResults.MixingCounters(
                    ticks: $0.ticks, decodes: $0.decodes, encodes: $0.encodes, sharedEncodes: $0.sharedEncodes,
                    packetsOut: $0.packetsOut)
            },
            audioSinceMs: (entry.mixerMedia.map(\.firstLocalAudioAt) ?? entry.legID.flatMap { calls[$0]?.firstAudioAt }).map {
                (now.wallTime(at: $0) * 1000).rounded()
            },
            startedAtMs: (now.wallTime(at: core.startedAt) * 1000).rounded(), ended: entry.endReason)
    }
}

/// The uplink a mixer offers when `--upstream-kbps` is not given: the speed of the interface
/// that holds the default route (/sys/class/net/IF/speed, Mb/s), else an assumed 1 Mb/s.
enum UplinkSpeed {
    static let assumedKbps = 1_000

    static func measuredKbps() -> Int? {
        guard let routes = try? String(contentsOfFile: "/proc/net/route", encoding: .utf8) else { return nil }
        for line in routes.split(separator: "\n").dropFirst() {
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            guard fields.count > 2, fields[1] == "00000000" else { continue }
            guard let text = try? String(contentsOfFile: "/sys/class/net/\(fields[0])/speed", encoding: .utf8),
                let megabits = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), megabits > 0
            else { return nil }
            return megabits * 1000
        }
        return nil
    }
}
