import Foundation
import SkylarkMedia
import SkylarkOverlay
import SkylarkWire

extension Reactor {
    static let controlWait: Double = 12

    func control(_ request: ControlRequest, promise: ControlReply, now: Moment) {
        if request.command == .status { return promise.succeed(Self.answer(statusReport(now: now))) }
        if let answer = audioControl(request) { return promise.succeed(answer) }
        guard session != nil else { return promise.succeed(Self.failure("not logged in yet (\(login.description))")) }
        let name = request.name ?? ""
        do {
            switch request.command {
            case .status, .mute, .unmute, .volume:
                break
            case .buddyAdd:
                try session!.addBuddy(name, text: request.text ?? "", now: now)
                promise.succeed(Self.answer(ControlResults.Done(done: "buddy request sent to \(canonical(name))")))
            case .buddyAccept:
                try session!.acceptBuddy(name, now: now)
                promise.succeed(Self.answer(ControlResults.Done(done: "\(canonical(name)) is now your buddy")))
            case .buddyRemove:
                try session!.removeBuddy(name, now: now)
                promise.succeed(Self.answer(ControlResults.Done(done: "\(canonical(name)) removed")))
            case .buddyList:
                promise.succeed(Self.answer(buddyEntries()))
            case .search:
                let token = try session!.search(name, now: now)
                searchWaiters[token] = (promise, now.monotonic + Self.controlWait)
            case .message:
                let id = try session!.sendMessage(to: name, text: request.text ?? "", now: now)
                guard !id.isEmpty else { return promise.succeed(Self.failure("the message could not be sealed")) }
                // Answer once a supernode took it (delivered or stored), or with "queued".
                messageWaiters[id] = (promise, now.monotonic + Self.controlWait)
            case .inbox:
                let state = session!.state
                promise.succeed(Self.answer(ControlResults.Inbox(messages: state.inbox, outbox: state.outbox.map(messageResult))))
            case .presence:
                guard let status = PresenceStatus(rawValue: request.text ?? ""), status == .online || status == .away else {
                    return promise.succeed(Self.failure("presence is 'online' or 'away'"))
                }
                session!.setStatus(status, now: now)
                promise.succeed(Self.answer(ControlResults.Done(done: "presence set to \(status.rawValue)")))
            case .call:
                startCall(to: name, relayFirst: request.text == "relay-first", promise: promise, now: now)
            case .answer:
                answerCall(request.name, promise: promise, now: now)
            case .hangup:
                hangUp(request.name, promise: promise, now: now)
            case .conferenceStart:
                startConference(with: request.names ?? (name.isEmpty ? [] : [name]), promise: promise, now: now)
            case .conferenceAdd:
                addToConference(name, promise: promise, now: now)
            case .conferenceLeave:
                leaveConference(promise: promise, now: now)
            case .conferenceStatus:
                let reports = conferences.ordered.map { conferenceReport($0.id, now: now) }
                promise.succeed(Self.answer(reports))
            case .calls:
                let reports = calls.userCalls.map { callReport($0.id, entry: $0.entry, now: now) }
                promise.succeed(Self.answer(reports))
            }
        } catch {
            promise.succeed(Self.failure(error.description))
        }
    }

    /// mute, unmute, volume: they need no login.
    func audioControl(_ request: ControlRequest) -> String? {
        switch request.command {
        case .mute: audio.muted = true
        case .unmute: audio.muted = false
        case .volume:
            guard let text = request.text, let percent = Int(text), (0...Int(AudioControls.maximumVolume * 100)).contains(percent) else {
                return Self.failure("volume is a percentage from 0 to \(Int(AudioControls.maximumVolume * 100))")
            }
            audio.volume = Double(percent) / 100
        default: return nil
        }
        return Self.answer(audioReport())
    }

    func audioReport() -> ControlResults.Audio {
        let levels = audio.levels
        return ControlResults.Audio(
            muted: audio.muted, volumePercent: Int((audio.volume * 100).rounded()), microphoneDBFS: levels.microphone.rounded(),
            speakerDBFS: levels.speaker.rounded())
    }

    func controlTick(now: Moment) {
        for (token, waiter) in searchWaiters where waiter.deadline <= now.monotonic {
            searchWaiters[token] = nil
            waiter.promise.succeed(Self.failure("the search did not finish in time"))
        }
        for (id, waiter) in messageWaiters where waiter.deadline <= now.monotonic {
            messageWaiters[id] = nil
            waiter.promise.succeed(messageAnswer(id: id))
        }
    }

    func messageAnswer(id: String) -> String {
        guard let message = session?.state.outbox.first(where: { $0.id == id }) else { return Self.failure("unknown message") }
        return Self.answer(messageResult(message))
    }

    func messageResult(_ message: OutboxMessage) -> ControlResults.Message {
        switch message.state {
        case .queued: return ControlResults.Message(id: message.id, to: message.to, state: "queued", replicas: nil, receipt: nil)
        case let .stored(replicas): return ControlResults.Message(id: message.id, to: message.to, state: "stored", replicas: replicas, receipt: nil)
        case let .delivered(_, receipt): return ControlResults.Message(id: message.id, to: message.to, state: "delivered", replicas: nil, receipt: receipt)
        }
    }

    func searchAnswer(_ answer: ClientSession.SearchAnswer) -> String {
        if let error = answer.error { return Self.failure("search failed: \(error)") }
        return Self.answer(
            ControlResults.Search(
                name: answer.name, found: answer.found, status: answer.status.rawValue, supernode: answer.supernode,
                natType: answer.natType, publicEndpoint: answer.publicEndpoint,
                privateEndpoints: answer.privateEndpoints, hops: answer.hops))
    }

    func buddyEntries() -> [ControlResults.BuddyEntry] {
        (session?.state.buddies.values.sorted { $0.name < $1.name } ?? []).map {
            ControlResults.BuddyEntry(
                name: $0.name, state: $0.state.rawValue, presence: $0.state == .confirmed ? $0.presence.rawValue : "-",
                supernode: $0.supernode, natType: $0.natType, requestText: $0.requestText)
        }
    }

    func statusReport(now: Moment) -> ControlResults.Status {
        let supernodeName: String?
        if let supernode {
            supernodeName = "self (\(supernode.contact.endpoints.map(\.description).joined(separator: ", ")))"
        } else if let link = supernodeLink, let entry = links[link] {
            supernodeName = "\(entry.peer?.name ?? "?") (\(entry.dialled?.description ?? "?"))"
        } else {
            supernodeName = nil
        }
        return ControlResults.Status(
            name: identity.name ?? configuration.name,
            nodeID: identity.nodeID?.hex ?? "",
            role: supernode == nil ? "client" : "supernode",
            roleReason: reachability.reason,
            failedDialBacks: reachability.policy.failedChecksInARow,
            supernode: supernodeName,
            loginPath: login.description,
            natType: natType,
            publicEndpoint: publicUDP?.description,
            observedEndpoint: observedEndpoint?.description,
            listen: listening.map(\.description),
            advertised: advertisedTCP().map(\.description),
            presence: session?.isAttached == true ? session!.status.rawValue : "offline",
            attachedClients: supernode.map { $0.clients.keys.filter { $0 != .local }.count },
            dhtContacts: supernode?.dht.routing.count,
            storedRecords: supernode?.dht.store.count,
            hostCacheEntries: hostCache.count,
            hostCacheRefresh: hostCacheRefresh,
            uptimeSeconds: (now.monotonic - startedAt).rounded(),
            buddies: buddyEntries(),
            queues: sink.counters, audio: audioReport())
    }

    private func canonical(_ name: String) -> String { (try? UserName.canonical(name)) ?? name }

    static func answer<T: Codable & Sendable>(_ result: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(ControlAnswer(ok: true, error: nil, result: result)) else { return failure("cannot encode the answer") }
        return String(decoding: data, as: UTF8.self)
    }

    static func failure(_ text: String) -> String {
        let encoder = JSONEncoder()
        guard let data = try? encoder.encode(ControlAnswer<ControlResults.Done>(ok: false, error: text, result: nil)) else { return #"{"ok":false}"# }
        return String(decoding: data, as: UTF8.self)
    }
}
