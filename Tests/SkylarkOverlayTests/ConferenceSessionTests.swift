import Foundation
import SkylarkOverlay
import SkylarkWire
import Testing

// MARK: - Fixtures

/// Signals, invitations and legs of one test conference.
enum Conf {
    static let id = [UInt8](repeating: 0xC0, count: 16)
    static let otherID = [UInt8](repeating: 0xEE, count: 16)

    static func signal(id: [UInt8] = Conf.id, _ fill: (inout OvConferenceSignal) -> Void) -> OvConferenceSignal {
        var signal = OvConferenceSignal()
        signal.conferenceID = Data(id)
        fill(&signal)
        return signal
    }

    static func capability(_ capability: OvMixerCapability, id: [UInt8] = Conf.id) -> OvConferenceSignal {
        signal(id: id) { $0.capability = capability }
    }

    static func moved(epoch: Int, mixer: String, id: [UInt8] = Conf.id) -> OvConferenceSignal {
        signal(id: id) {
            $0.moved.epoch = UInt32(epoch)
            $0.moved.mixer = mixer
        }
    }

    /// A roster as the mixer sends it; `version` counts up per epoch (default: the members'
    /// count, which grows and shrinks in these tests — give it when a roster shrinks).
    static func roster(epoch: Int, mixer: String, members: [String], version: UInt32? = nil) -> OvConferenceSignal {
        signal {
            $0.roster.version = version ?? UInt32(members.count)
            $0.roster.epoch = UInt32(epoch)
            $0.roster.mixer = mixer
            $0.roster.members = members
        }
    }

    static func decline(_ detail: String) -> OvConferenceSignal {
        signal { $0.decline.detail = detail }
    }

    static func candidates(_ names: [String]) -> [OvMixerCandidate] {
        names.map { name in
            var candidate = OvMixerCandidate()
            candidate.name = name
            candidate.capability = mixerCapability(name)
            candidate.reason = "reason for \(name)"
            return candidate
        }
    }

    static func invite(mixers: [String], epoch: Int = 0, initiator: String = "alice", invited: [String]) -> OvConferenceInvite {
        var invite = OvConferenceInvite()
        invite.initiator = initiator
        invite.invited = invited
        invite.mixers = candidates(mixers)
        invite.epoch = UInt32(epoch)
        return invite
    }

    static func leg(epoch: Int, mixers: [String], initiator: String = "alice") -> OvConferenceLeg {
        var leg = OvConferenceLeg()
        leg.epoch = UInt32(epoch)
        leg.mixers = candidates(mixers)
        leg.initiator = initiator
        return leg
    }

    static let mixers = ["bob", "carol", "sn"]
    static let invited = ["bob", "carol", "dave", "erin"]

    /// An invitee who answered: its leg to `mixers[0]` is up (or it mixes), actions drained.
    static func participant(
        _ name: String, mixers: [String] = Conf.mixers, invited: [String] = Conf.invited, now: Double = 0,
        configuration: ConferenceSession.Configuration = .init()
    ) -> ConferenceSession {
        var session = ConferenceSession(
            invite: invite(mixers: mixers, invited: invited), id: id, from: "alice", ownName: name,
            configuration: configuration, now: now)
        session.answer(now: now)
        session.legConnected(now: now)
        _ = session.drain()
        return session
    }

    /// An initiator after the election: `alice` invited `invitees`, everyone answered.
    static func initiator(
        invitees: [String], capabilities: [OvMixerCapability], alice: OvMixerCapability = mixerCapability("alice"),
        now: Double = 0
    ) -> ConferenceSession {
        var session = ConferenceSession(inviting: invitees, own: alice, id: id, now: now)
        for capability in capabilities { session.handleSignal(Conf.capability(capability), from: capability.name, now: now) }
        _ = session.drain()
        return session
    }
}

extension ConferenceSession {
    mutating func drain() -> [Action] {
        var out: [Action] = []
        while let action = poll() { out.append(action) }
        return out
    }
}

extension Array where Element == ConferenceSession.Action {
    var sent: [(signal: OvConferenceSignal, to: String)] {
        compactMap { action in
            if case let .signal(signal, to) = action { return (signal, to) }
            return nil
        }
    }
    var queried: [String] {
        sent.compactMap { entry in
            if case .query? = entry.signal.body { return entry.to }
            return nil
        }
    }
    var invites: [(to: String, invite: OvConferenceInvite)] {
        sent.compactMap { entry in
            if case let .invite(invite)? = entry.signal.body { return (entry.to, invite) }
            return nil
        }
    }
    var moves: [(to: String, moved: OvConferenceMoved)] {
        sent.compactMap { entry in
            if case let .moved(moved)? = entry.signal.body { return (entry.to, moved) }
            return nil
        }
    }
    var rosters: [(to: String, roster: OvConferenceRoster)] {
        sent.compactMap { entry in
            if case let .roster(roster)? = entry.signal.body { return (entry.to, roster) }
            return nil
        }
    }
    var declines: [(to: String, decline: OvConferenceDecline)] {
        sent.compactMap { entry in
            if case let .decline(decline)? = entry.signal.body { return (entry.to, decline) }
            return nil
        }
    }
    var openedLegs: [(mixer: String, leg: OvConferenceLeg)] {
        compactMap { action in
            if case let .openLeg(mixer, leg) = action { return (mixer, leg) }
            return nil
        }
    }
    var closedLegs: [String] {
        compactMap { action in
            if case let .closeLeg(reason) = action { return reason }
            return nil
        }
    }
    var stops: [String] {
        compactMap { action in
            if case let .stopMixing(reason) = action { return reason }
            return nil
        }
    }
    var startsMixing: Bool { contains(.startMixing) }
    var notes: [String] {
        compactMap { action in
            if case let .note(text) = action { return text }
            return nil
        }
    }
    var endings: [String] {
        compactMap { action in
            if case let .ended(reason) = action { return reason }
            return nil
        }
    }
}

// MARK: - An in-memory conference network

/// Many nodes' conference cores wired together in memory, in the way the node's reactor wires
/// them: every input is followed at once by draining that core's actions; signals and leg
/// events travel through one FIFO queue (the network). Queries are answered from a table of
/// capabilities; invitations create an invitee's core (answered at once unless held); an offered
/// leg reaches the named mixer's core (creating a mixing-only core via `init?(mixingFor:)` when
/// the node has none, as the reactor does) and, accepted, is a member there and connected at the
/// participant. A dead node receives nothing and says nothing; legs to it hang until
/// `timeOutDeadLegs`.
final class ConferenceNetwork {
    enum Event {
        case signal(OvConferenceSignal, from: String, to: String)
        case offer(leg: Int, OvConferenceLeg)
        case connected(leg: Int)
        case refused(leg: Int, reason: String)
        case hungUp(leg: Int, at: String, detail: String)
    }

    struct Leg {
        let participant: String
        let mixer: String
    }

    var now = 0.0
    var cores: [String: ConferenceSession] = [:]
    var capabilities: [String: OvMixerCapability] = [:]
    /// Invitees who do not answer when their invitation arrives (`answer` later).
    var holdAnswer: Set<String> = []
    private(set) var dead: Set<String> = []
    private(set) var legs: [Int: Leg] = [:]
    /// A participant's current leg (opened, maybe not yet accepted).
    private(set) var ownLeg: [String: Int] = [:]
    /// The legs a mixer serves.
    private(set) var served: [String: Set<Int>] = [:]
    /// Every action every core emitted, in order.
    private(set) var log: [(node: String, action: ConferenceSession.Action)] = []
    private var queue: [Event] = []
    private var nextLeg = 1

    init(_ capabilities: [OvMixerCapability]) {
        for capability in capabilities { self.capabilities[capability.name] = capability }
    }

    func start(initiator: String, inviting invitees: [String], alsoAsking: [String] = []) {
        cores[initiator] = ConferenceSession(inviting: invitees, own: capabilities[initiator]!, alsoAsking: alsoAsking, id: Conf.id, now: now)
        drain(initiator)
        run()
    }

    func answer(_ name: String) {
        cores[name]!.answer(now: now)
        drain(name)
        run()
    }

    func leave(_ name: String) {
        cores[name]!.leave(now: now)
        drain(name)
        run()
    }

    /// The node stops: it hears nothing and says nothing; the other ends of its legs notice only
    /// when `timeOutDeadLegs` is called.
    func kill(_ name: String) { dead.insert(name) }

    /// Both ends of every leg touching a dead node notice it is gone (the participants call
    /// `legEnded`, a mixer `memberLeft`).
    func timeOutDeadLegs(_ detail: String = "no answer") {
        for id in legs.keys.sorted() {
            guard let leg = legs[id], dead.contains(leg.participant) || dead.contains(leg.mixer) else { continue }
            endLeg(id, detail: detail)
        }
        run()
    }

    /// One participant's leg fails (its own network): both ends notice.
    func dropLeg(of participant: String, _ detail: String = "no media for 5 s") {
        guard let id = ownLeg[participant] else { return }
        endLeg(id, detail: detail)
        run()
    }

    /// The nodes still taking part in the conference.
    var participants: [String] {
        cores.filter { !dead.contains($0.key) && $0.value.participating && ($0.value.phase == .joining || $0.value.phase == .active) }.keys.sorted()
    }

    /// The mixer a participant's leg is accepted at, if any.
    func servingMixer(of participant: String) -> String? {
        guard let id = ownLeg[participant], let leg = legs[id], served[leg.mixer]?.contains(id) == true else { return nil }
        return leg.mixer
    }

    func run() {
        var steps = 0
        while !queue.isEmpty {
            steps += 1
            if steps > 100_000 {
                Issue.record("the conference network never went quiet")
                return
            }
            handle(queue.removeFirst())
        }
    }

    // MARK: Internals

    private func endLeg(_ id: Int, detail: String) {
        guard let leg = legs[id] else { return }
        if !dead.contains(leg.participant), ownLeg[leg.participant] == id {
            ownLeg[leg.participant] = nil
            cores[leg.participant]?.legEnded(detail, now: now)
            drain(leg.participant)
        }
        if !dead.contains(leg.mixer), served[leg.mixer]?.remove(id) != nil {
            cores[leg.mixer]?.memberLeft(leg.participant, detail: detail, now: now)
            drain(leg.mixer)
        }
    }

    private func drain(_ name: String) {
        guard !dead.contains(name) else { return }
        while let action = cores[name]?.poll() {
            log.append((name, action))
            switch action {
            case let .signal(signal, to):
                queue.append(.signal(signal, from: name, to: to))
            case let .openLeg(mixer, template):
                let id = nextLeg
                nextLeg += 1
                legs[id] = Leg(participant: name, mixer: mixer)
                ownLeg[name] = id
                queue.append(.offer(leg: id, template))
            case let .closeLeg(reason):
                if let id = ownLeg.removeValue(forKey: name) { queue.append(.hungUp(leg: id, at: legs[id]!.mixer, detail: reason)) }
            case let .stopMixing(reason):
                for id in (served[name] ?? []).sorted() { queue.append(.hungUp(leg: id, at: legs[id]!.participant, detail: reason)) }
                served[name] = []
            case .ended:
                if let id = ownLeg.removeValue(forKey: name) { queue.append(.hungUp(leg: id, at: legs[id]!.mixer, detail: "ended")) }
            case .ring, .startMixing, .note:
                break
            }
        }
    }

    private func handle(_ event: Event) {
        switch event {
        case let .signal(signal, from, to):
            guard !dead.contains(to) else { return }
            switch signal.body {
            case .query?:
                guard let capability = capabilities[to] else { return }
                var reply = signal
                reply.capability = capability
                queue.append(.signal(reply, from: to, to: from))
            case let .invite(invite)? where cores[to] == nil:
                var core = ConferenceSession(invite: invite, id: Array(signal.conferenceID), from: from, ownName: to, now: now)
                if !holdAnswer.contains(to) { core.answer(now: now) }
                cores[to] = core
                drain(to)
            default:
                cores[to]?.handleSignal(signal, from: from, now: now)
                drain(to)
            }
        case let .offer(id, template):
            let leg = legs[id]!
            guard !dead.contains(leg.mixer) else { return }
            if cores[leg.mixer] == nil, let mixing = ConferenceSession(mixingFor: template, id: Conf.id, ownName: leg.mixer, now: now) {
                cores[leg.mixer] = mixing
            }
            let decision =
                cores[leg.mixer]?.legOffered(from: leg.participant, template, now: now)
                ?? .refuse("\(leg.mixer) does not mix this conference", moved: nil)
            drain(leg.mixer)
            switch decision {
            case .accept:
                served[leg.mixer, default: []].insert(id)
                cores[leg.mixer]!.memberJoined(leg.participant, now: now)
                drain(leg.mixer)
                queue.append(.connected(leg: id))
            case let .refuse(reason, moved):
                // As the reactor does: the leg's call ends, then `moved` follows from the refuser.
                queue.append(.refused(leg: id, reason: reason))
                if let moved { queue.append(.signal(Conf.signal { $0.moved = moved }, from: leg.mixer, to: leg.participant)) }
            }
        case let .connected(id):
            let participant = legs[id]!.participant
            guard !dead.contains(participant), ownLeg[participant] == id else { return }
            cores[participant]!.legConnected(now: now)
            drain(participant)
        case let .refused(id, reason):
            let participant = legs[id]!.participant
            guard !dead.contains(participant), ownLeg[participant] == id else { return }
            ownLeg[participant] = nil
            cores[participant]!.legEnded(reason, now: now)
            drain(participant)
        case let .hungUp(id, node, detail):
            guard !dead.contains(node) else { return }
            let leg = legs[id]!
            if node == leg.participant {
                guard ownLeg[node] == id else { return }
                ownLeg[node] = nil
                cores[node]!.legEnded(detail, now: now)
                drain(node)
            } else if served[node]?.remove(id) != nil {
                cores[node]!.memberLeft(leg.participant, detail: detail, now: now)
                drain(node)
            }
        }
    }
}

// MARK: - Tests

@Suite("Conference sessions")
struct ConferenceSessionTests {
    typealias Phase = ConferenceSession.Phase

    // MARK: Starting: capabilities and the election

    @Test("The initiator asks every invitee and every supernode it hears of, and elects once all capabilities are in")
    func gatherThenElect() throws {
        var alice = ConferenceSession(
            inviting: ["bob", "carol", "alice"], own: mixerCapability("alice", supernodeName: "sn-a"),
            alsoAsking: ["sn-x"], id: Conf.id, now: 0)
        let asked = alice.drain()
        #expect(asked.queried.sorted() == ["bob", "carol", "sn-a", "sn-x"], "each asked once, never itself")
        #expect(asked.invites.isEmpty, "nobody rings before the election")
        #expect(alice.phase == .gathering)
        #expect(alice.nextDeadline == 1.0)
        #expect(alice.invited == ["bob", "carol"])
        #expect(alice.initiator == "alice" && alice.members == ["alice"] && alice.participating)

        // bob names his supernode: it is asked too, and the election waits for it.
        alice.handleSignal(Conf.capability(mixerCapability("bob", nat: "symmetric", supernodeName: "sn-b")), from: "bob", now: 0.1)
        #expect(alice.drain().queried == ["sn-b"])
        alice.handleSignal(Conf.capability(mixerCapability("carol", supernodeName: "sn-a")), from: "carol", now: 0.1)
        alice.handleSignal(Conf.capability(mixerCapability("sn-a", supernode: true, room: 2)), from: "sn-a", now: 0.2)
        alice.handleSignal(Conf.capability(mixerCapability("sn-x", supernode: true, cores: 8)), from: "sn-x", now: 0.2)
        #expect(alice.drain().isEmpty, "sn-a asked once; still waiting for sn-b")
        #expect(alice.phase == .gathering)

        alice.handleSignal(Conf.capability(mixerCapability("sn-b", supernode: true, cores: 8)), from: "sn-b", now: 0.3)
        let elected = alice.drain()
        // Public supernodes with room first (by name), then the participants, then the one without room.
        #expect(alice.mixers.map(\.name) == ["sn-b", "sn-x", "alice", "carol", "bob", "sn-a"])
        #expect(alice.epoch == 0)
        #expect(elected.invites.map(\.to) == ["bob", "carol"])
        for (_, invite) in elected.invites {
            #expect(invite.mixers == alice.mixers, "every invitee holds the same failover order")
            #expect(invite.epoch == 0 && invite.initiator == "alice" && invite.invited == ["bob", "carol"])
        }
        let note = try #require(elected.notes.first)
        #expect(note.contains("sn-b mixes") && note.contains("public supernode"), "\(note)")
        let leg = try #require(elected.openedLegs.first)
        #expect(elected.openedLegs.count == 1)
        #expect(leg.mixer == "sn-b")
        #expect(leg.leg.epoch == 0 && leg.leg.mixers == alice.mixers && leg.leg.initiator == "alice")
        // Invitations go out before the leg.
        let lastInvite = try #require(elected.lastIndex { if case .signal = $0 { true } else { false } })
        let openLeg = try #require(elected.firstIndex { if case .openLeg = $0 { true } else { false } })
        #expect(lastInvite < openLeg)
        #expect(alice.phase == .joining)
        #expect(alice.nextDeadline == nil)
        #expect(alice.mixerHistory.map(\.name) == ["sn-b"])

        // A late capability changes nothing.
        alice.handleSignal(Conf.capability(mixerCapability("sn-b", supernode: true, cores: 0)), from: "sn-b", now: 0.5)
        #expect(alice.drain().isEmpty)
        #expect(alice.mixers.first?.name == "sn-b")
    }

    @Test("At the gather timeout (1 s) the initiator elects with what it has, and still invites everyone")
    func gatherTimeout() throws {
        var alice = ConferenceSession(inviting: ["bob", "carol"], own: mixerCapability("alice"), id: Conf.id, now: 5)
        #expect(alice.drain().queried == ["bob", "carol"])
        alice.handleSignal(Conf.capability(mixerCapability("bob", nat: "open")), from: "bob", now: 5.2)
        #expect(alice.drain().isEmpty)
        alice.handleTimeout(now: 5.999)
        #expect(alice.drain().isEmpty)
        #expect(alice.phase == .gathering)

        alice.handleTimeout(now: 6.0)
        let actions = alice.drain()
        #expect(alice.mixers.map(\.name) == ["bob", "alice"], "carol never answered: not a candidate")
        #expect(actions.invites.map(\.to) == ["bob", "carol"])
        #expect(actions.openedLegs.map(\.mixer) == ["bob"])
        #expect(alice.phase == .joining)

        // carol's capability after the election is ignored.
        alice.handleSignal(Conf.capability(mixerCapability("carol", supernode: true, cores: 32)), from: "carol", now: 6.1)
        #expect(alice.drain().isEmpty)
        #expect(alice.mixers.map(\.name) == ["bob", "alice"])
    }

    @Test("Capabilities from someone not asked, under another's name, or for another conference are ignored")
    func strayCapabilities() {
        var alice = ConferenceSession(inviting: ["bob"], own: mixerCapability("alice"), id: Conf.id, now: 0)
        _ = alice.drain()
        alice.handleSignal(Conf.capability(mixerCapability("mallory", supernode: true, cores: 64)), from: "mallory", now: 0.1)
        alice.handleSignal(Conf.capability(mixerCapability("mallory", supernode: true, cores: 64)), from: "bob", now: 0.1)
        alice.handleSignal(Conf.capability(mixerCapability("bob"), id: Conf.otherID), from: "bob", now: 0.1)
        #expect(alice.drain().isEmpty)
        #expect(alice.phase == .gathering, "none of those counts as bob's answer")
        alice.handleSignal(Conf.capability(mixerCapability("bob", nat: "symmetric")), from: "bob", now: 0.2)
        _ = alice.drain()
        #expect(alice.mixers.map(\.name) == ["alice", "bob"])
    }

    @Test("An initiator who is the best mixer mixes at once; with nobody to ask it elects itself immediately")
    func initiatorMixes() {
        var lone = ConferenceSession(inviting: [], own: mixerCapability("alice", nat: "open"), id: Conf.id, now: 0)
        let actions = lone.drain()
        #expect(actions.queried.isEmpty)
        #expect(actions.startsMixing)
        #expect(lone.isMixing && lone.phase == .active && lone.members == ["alice"])

        var best = ConferenceSession(inviting: ["bob"], own: mixerCapability("alice", nat: "open"), id: Conf.id, now: 0)
        _ = best.drain()
        best.handleSignal(Conf.capability(mixerCapability("bob", nat: "symmetric")), from: "bob", now: 0.1)
        let elected = best.drain()
        #expect(elected.invites.map(\.to) == ["bob"])
        #expect(elected.startsMixing)
        #expect(elected.openedLegs.isEmpty)
        #expect(elected.moves.isEmpty, "epoch 0: nobody to move")
        #expect(best.isMixing && best.phase == .active && best.mixer?.name == "alice")
    }

    // MARK: Invitations

    @Test("An invitation rings; answering opens a leg to mixers[0] carrying the ranked list")
    func answerOpensLeg() throws {
        let invite = Conf.invite(mixers: ["sn", "bob", "carol"], invited: ["bob", "carol"])
        var bob = ConferenceSession(invite: invite, id: Conf.id, from: "alice", ownName: "bob", now: 10)
        #expect(bob.drain() == [.ring(from: "alice")])
        #expect(bob.phase == .ringing)
        #expect(bob.nextDeadline == 55)
        #expect(bob.initiator == "alice" && bob.participating && !bob.isMixing)
        #expect(bob.mixers == invite.mixers && bob.epoch == 0)

        bob.answer(now: 12)
        let actions = bob.drain()
        let leg = try #require(actions.openedLegs.first)
        #expect(actions.openedLegs.count == 1)
        #expect(leg.mixer == "sn")
        #expect(leg.leg.epoch == 0 && leg.leg.mixers == invite.mixers && leg.leg.initiator == "alice")
        #expect(bob.phase == .joining)
        #expect(bob.nextDeadline == nil, "no ring timeout once answered")
        #expect(bob.members == ["bob"])
        #expect(bob.mixerHistory.map(\.name) == ["sn"] && bob.mixerHistory.map(\.at) == [12])

        bob.legConnected(now: 12.4)
        #expect(bob.phase == .active)
        bob.answer(now: 13)
        bob.handleTimeout(now: 100)
        #expect(bob.drain().isEmpty)
        #expect(bob.phase == .active, "the ring timeout is gone")
    }

    @Test("An invitation without an initiator names the inviter as initiator")
    func inviterIsInitiator() {
        var bob = ConferenceSession(
            invite: Conf.invite(mixers: ["sn"], initiator: "", invited: ["bob"]), id: Conf.id, from: "carol",
            ownName: "bob", now: 0)
        #expect(bob.initiator == "carol")
        #expect(bob.drain() == [.ring(from: "carol")])
    }

    @Test("Declining sends a decline to the initiator (not to whoever invited) and ends; the initiator notes it")
    func decline() throws {
        var bob = ConferenceSession(
            invite: Conf.invite(mixers: ["sn"], invited: ["bob", "carol"]), id: Conf.id, from: "carol",
            ownName: "bob", now: 0)
        _ = bob.drain()
        bob.decline(now: 3)
        let actions = bob.drain()
        let decline = try #require(actions.declines.first)
        #expect(actions.declines.count == 1)
        #expect(decline.to == "alice")
        #expect(decline.decline.detail == "bob declined")
        #expect(actions.endings == ["declined"])
        #expect(bob.phase == .ended("declined") && bob.isEnded && bob.nextDeadline == nil)
        bob.answer(now: 4)
        #expect(bob.drain().isEmpty)

        var alice = Conf.initiator(invitees: ["bob", "carol"], capabilities: [mixerCapability("bob"), mixerCapability("carol")])
        alice.handleSignal(Conf.decline("bob declined"), from: "bob", now: 3)
        let noted = alice.drain()
        #expect(noted.notes == ["bob declined the conference: bob declined"])
        #expect(alice.invited == ["carol"])
        // A decline from someone never invited is ignored.
        alice.handleSignal(Conf.decline("nope"), from: "mallory", now: 3)
        #expect(alice.drain().isEmpty)
        #expect(alice.invited == ["carol"])
    }

    @Test("An unanswered invitation ends 'not answered' after 45 s; leave while ringing declines")
    func ringTimeout() {
        var bob = ConferenceSession(invite: Conf.invite(mixers: ["sn"], invited: ["bob"]), id: Conf.id, from: "alice", ownName: "bob", now: 10)
        _ = bob.drain()
        bob.handleTimeout(now: 54.9)
        #expect(bob.drain().isEmpty)
        #expect(bob.phase == .ringing)
        bob.handleTimeout(now: 55)
        #expect(bob.drain() == [.ended("not answered")])
        #expect(bob.phase == .ended("not answered"))
        bob.answer(now: 56)
        #expect(bob.drain().isEmpty, "too late to answer")

        var carol = ConferenceSession(invite: Conf.invite(mixers: ["sn"], invited: ["carol"]), id: Conf.id, from: "alice", ownName: "carol", now: 0)
        _ = carol.drain()
        carol.leave(now: 1)
        let actions = carol.drain()
        #expect(actions.declines.map(\.to) == ["alice"])
        #expect(actions.endings == ["declined"])
        #expect(actions.closedLegs.isEmpty)
    }

    @Test("Answering an invitation that names no mixer ends the conference 'no mixer left'")
    func inviteWithoutMixers() {
        var bob = ConferenceSession(invite: Conf.invite(mixers: [], invited: ["bob"]), id: Conf.id, from: "alice", ownName: "bob", now: 0)
        _ = bob.drain()
        bob.answer(now: 1)
        #expect(bob.drain() == [.ended("no mixer left")])
        #expect(bob.phase == .ended("no mixer left"))
    }

    @Test("conf add: a participant invites one more with the current epoch and mixers; not while ringing, not itself")
    func addInvitee() throws {
        var dave = Conf.participant("dave")
        dave.handleSignal(Conf.moved(epoch: 1, mixer: "carol"), from: "carol", now: 1)
        _ = dave.drain()
        dave.invite("frank", now: 2)
        let actions = dave.drain()
        let invite = try #require(actions.invites.first)
        #expect(actions.invites.count == 1 && invite.to == "frank")
        #expect(invite.invite.epoch == 1)
        #expect(invite.invite.mixers.map(\.name) == Conf.mixers)
        #expect(invite.invite.initiator == "alice")
        #expect(invite.invite.invited.contains("frank"))
        #expect(dave.invited.contains("frank"))
        dave.invite("dave", now: 2)
        #expect(dave.drain().isEmpty)

        var ringing = ConferenceSession(invite: Conf.invite(mixers: ["sn"], invited: ["bob"]), id: Conf.id, from: "alice", ownName: "bob", now: 0)
        _ = ringing.drain()
        ringing.invite("frank", now: 1)
        #expect(ringing.drain().isEmpty)
    }

    // MARK: Mixing

    @Test("An invitee at the head of the list mixes when it answers")
    func inviteeMixes() {
        var bob = ConferenceSession(invite: Conf.invite(mixers: Conf.mixers, invited: Conf.invited), id: Conf.id, from: "alice", ownName: "bob", now: 0)
        _ = bob.drain()
        bob.answer(now: 1)
        let actions = bob.drain()
        #expect(actions.startsMixing)
        #expect(actions.openedLegs.isEmpty)
        #expect(actions.moves.isEmpty, "epoch 0: nobody to move")
        #expect(bob.isMixing && bob.phase == .active && bob.members == ["bob"])
        #expect(bob.mixerHistory.map(\.name) == ["bob"] && bob.mixerHistory.map(\.epoch) == [0])
    }

    @Test("The mixer accepts participants' legs and publishes the roster; participants follow the roster")
    func rosterFlow() throws {
        var bob = Conf.participant("bob")
        #expect(bob.isMixing)
        let leg = Conf.leg(epoch: 0, mixers: Conf.mixers)
        #expect(bob.legOffered(from: "carol", leg, now: 1) == .accept)
        #expect(bob.drain().isEmpty, "nothing until the leg is up")
        bob.memberJoined("carol", now: 1.2)
        var actions = bob.drain()
        #expect(actions.rosters.map(\.to) == ["carol"])
        #expect(actions.rosters.first?.roster.members == ["bob", "carol"])
        #expect(actions.rosters.first?.roster.epoch == 0 && actions.rosters.first?.roster.mixer == "bob")
        #expect(actions.notes == ["carol joined the conference"])

        #expect(bob.legOffered(from: "dave", leg, now: 2) == .accept)
        bob.memberJoined("dave", now: 2.2)
        actions = bob.drain()
        #expect(actions.rosters.map(\.to) == ["carol", "dave"])
        #expect(actions.rosters.allSatisfy { $0.roster.members == ["bob", "carol", "dave"] })
        #expect(bob.members == ["bob", "carol", "dave"])
        bob.memberJoined("dave", now: 2.3)
        #expect(bob.drain().isEmpty, "a member joins once")

        // carol's side.
        var carol = Conf.participant("carol")
        #expect(carol.mixer?.name == "bob" && carol.phase == .active)
        carol.handleSignal(Conf.roster(epoch: 0, mixer: "bob", members: ["bob", "carol", "dave"]), from: "bob", now: 2.3)
        #expect(carol.drain().notes == ["in the conference now: bob, dave"])
        #expect(carol.members == ["bob", "carol", "dave"])
        #expect(carol.invited == ["erin"], "who joined is no longer only invited")
        // Rosters not from the mixer in charge, or for another epoch, are ignored.
        carol.handleSignal(Conf.roster(epoch: 0, mixer: "dave", members: ["dave"]), from: "dave", now: 3)
        carol.handleSignal(Conf.roster(epoch: 1, mixer: "bob", members: ["bob"]), from: "bob", now: 3)
        #expect(carol.drain().isEmpty)
        #expect(carol.members == ["bob", "carol", "dave"])

        // dave leaves: the mixer tells the rest, and carol notes it.
        bob.memberLeft("dave", detail: "hung up", now: 4)
        actions = bob.drain()
        #expect(actions.notes == ["dave left the conference (hung up)"])
        #expect(actions.rosters.map(\.to) == ["carol"])
        #expect(actions.rosters.first?.roster.members == ["bob", "carol"])
        bob.memberLeft("mallory", detail: "?", now: 4)
        #expect(bob.drain().isEmpty)
        // An older roster overtaken by a newer one changes nothing; the newer one counts.
        carol.handleSignal(Conf.roster(epoch: 0, mixer: "bob", members: ["bob", "carol"], version: 2), from: "bob", now: 4)
        #expect(carol.drain().isEmpty, "version 2 after version 3")
        #expect(carol.members == ["bob", "carol", "dave"])
        carol.handleSignal(Conf.roster(epoch: 0, mixer: "bob", members: ["bob", "carol"], version: 4), from: "bob", now: 4)
        #expect(carol.drain().notes == ["left the conference: dave"])
        #expect(carol.members == ["bob", "carol"])
        // The mixer sends its roster again every rosterRefresh (5 s), a lost one heals.
        bob.handleTimeout(now: 4 + ConferenceSession.Configuration().rosterRefresh)
        #expect(bob.drain().rosters.map(\.to) == ["carol"])
    }

    @Test("A mixer refuses legs while ringing, for someone else's epoch, and once ended")
    func refusedLegs() {
        let leg = Conf.leg(epoch: 0, mixers: Conf.mixers)
        var ringing = ConferenceSession(
            invite: Conf.invite(mixers: Conf.mixers, invited: Conf.invited), id: Conf.id, from: "alice",
            ownName: "bob", now: 0)
        #expect(ringing.legOffered(from: "carol", leg, now: 1) == .refuse("not in this conference", moved: nil))

        var bob = Conf.participant("bob")
        #expect(bob.legOffered(from: "dave", Conf.leg(epoch: 1, mixers: Conf.mixers), now: 1) == .refuse("bob is not this conference's mixer", moved: nil))
        #expect(bob.legOffered(from: "dave", Conf.leg(epoch: 9, mixers: Conf.mixers), now: 1) == .refuse("bob is not this conference's mixer", moved: nil))
        #expect(bob.drain().isEmpty)
        #expect(bob.isMixing && bob.epoch == 0)

        bob.leave(now: 2)
        _ = bob.drain()
        #expect(bob.legOffered(from: "dave", leg, now: 3) == .refuse("not in this conference", moved: nil))
    }

    @Test("A leg offered for an older epoch is refused with `moved` naming the mixer in charge")
    func olderEpochRefusedWithMoved() {
        var bob = Conf.participant("bob")
        bob.handleSignal(Conf.moved(epoch: 1, mixer: "carol"), from: "carol", now: 5)
        _ = bob.drain()
        #expect(bob.epoch == 1 && !bob.isMixing)
        var moved = OvConferenceMoved()
        moved.epoch = 1
        moved.mixer = "carol"
        #expect(bob.legOffered(from: "erin", Conf.leg(epoch: 0, mixers: Conf.mixers), now: 6) == .refuse("the conference moved to carol", moved: moved))
    }

    @Test("A full conference refuses more legs (maximumParticipants counts the mixer when it takes part)")
    func conferenceFull() throws {
        var configuration = ConferenceSession.Configuration()
        configuration.maximumParticipants = 3
        var bob = Conf.participant("bob", configuration: configuration)
        let leg = Conf.leg(epoch: 0, mixers: Conf.mixers)
        for name in ["carol", "dave"] {
            #expect(bob.legOffered(from: name, leg, now: 1) == .accept)
            bob.memberJoined(name, now: 1)
        }
        #expect(bob.legOffered(from: "erin", leg, now: 2) == .refuse("the conference is full (3)", moved: nil))
        bob.memberLeft("dave", detail: "left", now: 3)
        #expect(bob.legOffered(from: "erin", leg, now: 4) == .accept, "room again once someone left")

        // A node that only mixes counts only its legs.
        configuration.maximumParticipants = 2
        var sn = try #require(
            ConferenceSession(
                mixingFor: Conf.leg(epoch: 2, mixers: Conf.mixers), id: Conf.id, ownName: "sn",
                configuration: configuration, now: 0))
        let snLeg = Conf.leg(epoch: 2, mixers: Conf.mixers)
        for name in ["alice", "bob"] {
            #expect(sn.legOffered(from: name, snLeg, now: 1) == .accept)
            sn.memberJoined(name, now: 1)
        }
        #expect(sn.legOffered(from: "carol", snLeg, now: 1) == .refuse("the conference is full (2)", moved: nil))
    }

    @Test("Legs accepted but not yet up count against maximumParticipants")
    func conferenceFullCountsPendingLegs() {
        var configuration = ConferenceSession.Configuration()
        configuration.maximumParticipants = 3
        var bob = Conf.participant("bob", configuration: configuration)
        let leg = Conf.leg(epoch: 0, mixers: Conf.mixers)
        // Everyone opens a leg right after the invitations: the offers arrive before any leg is up.
        let decisions = ["carol", "dave", "erin", "frank"].map { bob.legOffered(from: $0, leg, now: 1) }
        #expect(decisions.filter { $0 == .accept }.count == 2, "\(decisions)")
    }

    @Test("A node outside the conference offered a leg naming it mixes; it stops after idleMixerTimeout without legs")
    func outsideMixer() throws {
        #expect(
            ConferenceSession(mixingFor: Conf.leg(epoch: 0, mixers: ["bob", "sn"]), id: Conf.id, ownName: "sn", now: 0) == nil,
            "the leg names bob, not sn")
        #expect(
            ConferenceSession(mixingFor: Conf.leg(epoch: 2, mixers: ["bob", "sn"]), id: Conf.id, ownName: "sn", now: 0) == nil,
            "an epoch beyond the list names nobody")
        #expect(ConferenceSession(mixingFor: Conf.leg(epoch: 0, mixers: []), id: Conf.id, ownName: "sn", now: 0) == nil)

        var sn = try #require(ConferenceSession(mixingFor: Conf.leg(epoch: 1, mixers: ["bob", "sn"]), id: Conf.id, ownName: "sn", now: 100))
        let started = sn.drain()
        #expect(started.first == .startMixing)
        #expect(started.notes.first?.contains("mixing a conference of alice") == true)
        #expect(!sn.participating && sn.isMixing && sn.phase == .active)
        #expect(sn.epoch == 1 && sn.initiator == "alice" && sn.members.isEmpty)
        #expect(sn.mixerHistory.map(\.name) == ["sn"])

        // Nobody comes: it stops 10 s later.
        sn.handleTimeout(now: 109.9)
        #expect(sn.drain().isEmpty)
        sn.handleTimeout(now: 110)
        #expect(sn.drain() == [.stopMixing("no participants left"), .ended("no participants left")])
        #expect(!sn.isMixing && sn.isEnded)

        // With a leg it keeps mixing; 10 s after the last leg left it stops.
        var busy = try #require(ConferenceSession(mixingFor: Conf.leg(epoch: 1, mixers: ["bob", "sn"]), id: Conf.id, ownName: "sn", now: 0))
        _ = busy.drain()
        #expect(busy.legOffered(from: "carol", Conf.leg(epoch: 1, mixers: ["bob", "sn"]), now: 1) == .accept)
        busy.memberJoined("carol", now: 1)
        let joined = busy.drain()
        #expect(joined.rosters.first?.roster.members == ["carol"], "a mixer outside the conference is not a member")
        #expect(busy.members == ["carol"])
        busy.handleTimeout(now: 500)
        #expect(busy.drain().rosters.map(\.to) == ["carol"], "only the roster refresh while carol is in")
        busy.memberLeft("carol", detail: "left", now: 600)
        _ = busy.drain()
        busy.handleTimeout(now: 609)
        #expect(busy.drain().isEmpty)
        busy.handleTimeout(now: 610)
        #expect(busy.drain().endings == ["no participants left"])
    }

    // MARK: Failover

    @Test("A lost leg moves a participant to the next mixer (epoch + 1); out of mixers the conference ends 'no mixer left'")
    func legEndedMovesOn() throws {
        var dave = Conf.participant("dave")
        #expect(dave.mixer?.name == "bob" && dave.phase == .active)
        dave.legEnded("no media for 5 s", now: 30)
        var actions = dave.drain()
        #expect(actions.closedLegs.count == 1)
        #expect(actions.closedLegs.first?.contains("lost bob: no media for 5 s") == true)
        #expect(actions.notes.first?.contains("carol mixes now") == true)
        let leg = try #require(actions.openedLegs.first)
        #expect(leg.mixer == "carol" && leg.leg.epoch == 1 && leg.leg.mixers.map(\.name) == Conf.mixers)
        #expect(dave.epoch == 1 && dave.phase == .joining && dave.mixer?.name == "carol")
        dave.legConnected(now: 31)
        #expect(dave.phase == .active)

        dave.legEnded("refused", now: 40)
        actions = dave.drain()
        #expect(actions.openedLegs.map(\.mixer) == ["sn"])
        #expect(dave.mixerHistory.map(\.name) == ["bob", "carol", "sn"])
        #expect(dave.mixerHistory.map(\.epoch) == [0, 1, 2])

        dave.legEnded("timeout", now: 50)
        actions = dave.drain()
        #expect(actions.endings.count == 1)
        #expect(actions.endings.first?.hasPrefix("no mixer left") == true)
        #expect(dave.isEnded && dave.mixer == nil)

        // Ended: nothing moves it any more.
        dave.legEnded("again", now: 51)
        dave.handleSignal(Conf.moved(epoch: 2, mixer: "sn"), from: "sn", now: 51)
        #expect(dave.drain().isEmpty)
    }

    @Test("legEnded is ignored while ringing and at the mixer itself")
    func legEndedIgnored() {
        var ringing = ConferenceSession(
            invite: Conf.invite(mixers: Conf.mixers, invited: Conf.invited), id: Conf.id, from: "alice",
            ownName: "dave", now: 0)
        _ = ringing.drain()
        ringing.legEnded("?", now: 1)
        #expect(ringing.drain().isEmpty && ringing.epoch == 0)
        var bob = Conf.participant("bob")
        bob.legEnded("?", now: 1)
        #expect(bob.drain().isEmpty && bob.epoch == 0 && bob.isMixing)
    }

    @Test("When the next mixer is itself, the participant mixes and tells every member and invitee it knows (`moved`)")
    func takeOverTellsEveryone() {
        var carol = Conf.participant("carol", invited: ["bob", "carol", "dave", "erin", "frank"])
        carol.handleSignal(Conf.roster(epoch: 0, mixer: "bob", members: ["bob", "alice", "carol", "dave", "erin"]), from: "bob", now: 1)
        _ = carol.drain()
        carol.legEnded("bob vanished", now: 20)
        let actions = carol.drain()
        #expect(actions.closedLegs.count == 1)
        #expect(actions.startsMixing)
        #expect(actions.openedLegs.isEmpty)
        #expect(actions.moves.map(\.to).sorted() == ["alice", "bob", "dave", "erin", "frank"])
        #expect(actions.moves.allSatisfy { $0.moved.epoch == 1 && $0.moved.mixer == "carol" })
        #expect(carol.isMixing && carol.phase == .active && carol.epoch == 1 && carol.members == ["carol"])
    }

    @Test("A participant offered a leg at a newer epoch naming it takes over: leaves the old mixer, mixes, tells everyone")
    func takeOverOnOffer() {
        var carol = Conf.participant("carol")
        carol.handleSignal(Conf.roster(epoch: 0, mixer: "bob", members: ["bob", "alice", "carol", "dave"]), from: "bob", now: 1)
        _ = carol.drain()
        #expect(carol.legOffered(from: "dave", Conf.leg(epoch: 1, mixers: Conf.mixers), now: 2) == .accept)
        let actions = carol.drain()
        #expect(actions.closedLegs == ["taking over mixing"])
        #expect(actions.startsMixing)
        #expect(actions.moves.map(\.to).sorted() == ["alice", "bob", "dave", "erin"])
        #expect(carol.isMixing && carol.epoch == 1)
        carol.memberJoined("dave", now: 2.5)
        #expect(
            carol.drain().rosters.first?.roster
                == {
                    var roster = OvConferenceRoster()
                    roster.version = 1
                    roster.epoch = 1
                    roster.mixer = "carol"
                    roster.members = ["carol", "dave"]
                    return roster
                }())
    }

    @Test("`moved` from mixers[newEpoch] moves a participant still on an older mixer, and the old mixer too")
    func movedMoves() throws {
        var dave = Conf.participant("dave")
        dave.handleSignal(Conf.moved(epoch: 1, mixer: "carol"), from: "carol", now: 7)
        var actions = dave.drain()
        #expect(actions.closedLegs.count == 1)
        #expect(actions.notes.first?.contains("carol took over mixing") == true)
        let leg = try #require(actions.openedLegs.first)
        #expect(leg.mixer == "carol" && leg.leg.epoch == 1)
        #expect(dave.epoch == 1 && dave.phase == .joining)

        // It may skip epochs: the newest mixer wins.
        var erin = Conf.participant("erin")
        erin.handleSignal(Conf.moved(epoch: 2, mixer: "sn"), from: "sn", now: 7)
        #expect(erin.drain().openedLegs.map(\.mixer) == ["sn"])
        #expect(erin.epoch == 2)

        // The old mixer stops mixing and joins the new one as a participant.
        var bob = Conf.participant("bob")
        #expect(bob.legOffered(from: "dave", Conf.leg(epoch: 0, mixers: Conf.mixers), now: 1) == .accept)
        bob.memberJoined("dave", now: 1)
        _ = bob.drain()
        bob.handleSignal(Conf.moved(epoch: 1, mixer: "carol"), from: "carol", now: 7)
        actions = bob.drain()
        #expect(actions.stops == ["the conference moved to carol"])
        #expect(actions.openedLegs.map(\.mixer) == ["carol"])
        #expect(!bob.isMixing && bob.epoch == 1 && bob.phase == .joining && bob.participating)

        // A node that only mixed ends.
        var sn = try #require(ConferenceSession(mixingFor: Conf.leg(epoch: 0, mixers: ["sn", "carol"]), id: Conf.id, ownName: "sn", now: 0))
        _ = sn.drain()
        sn.handleSignal(Conf.moved(epoch: 1, mixer: "carol"), from: "carol", now: 5)
        actions = sn.drain()
        #expect(actions.stops == ["the conference moved to carol"])
        #expect(actions.endings == ["the conference moved on"])
        #expect(actions.openedLegs.isEmpty)
    }

    @Test("`moved` for an older or equal epoch, from anyone but the new mixer or an earlier one, or for another conference is ignored")
    func movedIgnored() {
        let mixers = ["bob", "carol", "sn", "erin"]
        var dave = Conf.participant("dave", mixers: mixers)
        dave.legEnded("lost bob", now: 1)
        dave.legConnected(now: 1)
        _ = dave.drain()
        #expect(dave.epoch == 1 && dave.mixer?.name == "carol")
        let ignored: [(OvConferenceSignal, String)] = [
            (Conf.moved(epoch: 1, mixer: "carol"), "carol"),  // same epoch
            (Conf.moved(epoch: 0, mixer: "bob"), "bob"),  // older epoch
            (Conf.moved(epoch: 2, mixer: "sn"), "erin"),  // sender is neither mixers[2] nor an earlier mixer
            (Conf.moved(epoch: 2, mixer: "bob"), "bob"),  // names someone who is not mixers[2]
            (Conf.moved(epoch: 2, mixer: "erin"), "erin"),  // erin is mixers[3], not mixers[2]
            (Conf.moved(epoch: 9, mixer: "zed"), "zed"),  // beyond the list
            (Conf.moved(epoch: 2, mixer: "sn", id: Conf.otherID), "sn"),  // another conference
        ]
        for (signal, sender) in ignored {
            dave.handleSignal(signal, from: sender, now: 2)
            #expect(dave.drain().isEmpty, "\(signal.moved) from \(sender)")
            #expect(dave.epoch == 1 && dave.phase == .active)
        }
        dave.handleSignal(Conf.moved(epoch: 3, mixer: "erin"), from: "erin", now: 3)
        #expect(dave.drain().openedLegs.map(\.mixer) == ["erin"])
        #expect(dave.epoch == 3)
    }

    @Test("`moved` passed on by an earlier mixer that refused our leg takes us straight to the mixer it names")
    func movedFromRefuser() {
        var dave = Conf.participant("dave", mixers: ["bob", "carol", "sn", "erin"])
        _ = dave.drain()
        // bob (mixers[0]) refuses dave's leg: the conference is at sn (epoch 2) now.
        dave.handleSignal(Conf.moved(epoch: 2, mixer: "sn"), from: "bob", now: 1)
        #expect(dave.drain().openedLegs.map(\.mixer) == ["sn"], "not carol, the next on the list")
        #expect(dave.epoch == 2)
    }

    @Test("leave: the mixer stops mixing (its legs move on), a participant closes its leg; both end 'left'")
    func leave() throws {
        var bob = Conf.participant("bob")
        bob.leave(now: 9)
        #expect(bob.drain() == [.stopMixing("bob (the mixer) left"), .ended("left")])
        #expect(!bob.isMixing && bob.phase == .ended("left"))
        bob.leave(now: 10)
        #expect(bob.drain().isEmpty)

        var dave = Conf.participant("dave")
        dave.leave(now: 9)
        #expect(dave.drain() == [.closeLeg("dave left"), .ended("left")])

        var sn = try #require(ConferenceSession(mixingFor: Conf.leg(epoch: 2, mixers: Conf.mixers), id: Conf.id, ownName: "sn", now: 0))
        _ = sn.drain()
        sn.leave(now: 1)
        #expect(sn.drain().stops.count == 1)
    }

    @Test("Signals and timeouts after the end change nothing")
    func endedIsFinal() {
        var dave = Conf.participant("dave")
        dave.leave(now: 1)
        _ = dave.drain()
        dave.handleSignal(Conf.roster(epoch: 0, mixer: "bob", members: ["bob", "dave"]), from: "bob", now: 2)
        dave.handleSignal(Conf.moved(epoch: 1, mixer: "carol"), from: "carol", now: 2)
        dave.handleTimeout(now: 1_000)
        dave.legEnded("x", now: 2)
        dave.legConnected(now: 2)
        dave.memberJoined("x", now: 2)
        #expect(dave.drain().isEmpty)
        #expect(dave.phase == .ended("left") && dave.epoch == 0 && dave.nextDeadline == nil)
    }

    // MARK: - Whole conferences in memory

    static let tenNames = (0..<10).map { "p\($0)" }

    /// Ten participants behind port-restricted NATs except p4 (open, lots of room: the mixer) and
    /// p7 (full cone, less room: next), all attached to supernode sn1, which is public but has
    /// room for only 5 (so it ranks last).
    static func tenParticipants(supernodeRoom: UInt32 = 5, extra: [OvMixerCapability] = []) -> ConferenceNetwork {
        var capabilities = tenNames.map { name -> OvMixerCapability in
            switch name {
            case "p4": return mixerCapability(name, nat: "open", cores: 4, kbps: 10_000, supernodeName: "sn1")
            case "p7": return mixerCapability(name, nat: "full-cone", cores: 1, kbps: 2_000, supernodeName: "sn1")
            default: return mixerCapability(name, nat: "port-restricted", supernodeName: "sn1")
            }
        }
        capabilities.append(mixerCapability("sn1", nat: "open", supernode: true, cores: 8, kbps: 100_000, room: supernodeRoom))
        return ConferenceNetwork(capabilities + extra)
    }

    /// Everyone in `members` is active at epoch `epoch` on `mixer`, with the roster `members`.
    static func expectConverged(
        _ network: ConferenceNetwork, on mixer: String, epoch: Int, members: [String],
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let expected = members.sorted()
        #expect(network.participants == expected, "participants", sourceLocation: sourceLocation)
        for name in members {
            guard let core = network.cores[name] else {
                Issue.record("\(name) has no conference", sourceLocation: sourceLocation)
                continue
            }
            #expect(core.phase == .active, "\(name): \(core.phase)", sourceLocation: sourceLocation)
            #expect(core.epoch == epoch, "\(name) at epoch \(core.epoch)", sourceLocation: sourceLocation)
            #expect(core.mixer?.name == mixer, "\(name) on \(core.mixer?.name ?? "-")", sourceLocation: sourceLocation)
            #expect(core.members.sorted() == expected, "\(name) sees \(core.members.sorted())", sourceLocation: sourceLocation)
            let mixing = core.isMixing
            if name == mixer {
                #expect(mixing, "\(name) should mix", sourceLocation: sourceLocation)
            } else {
                #expect(!mixing, "\(name) should not mix", sourceLocation: sourceLocation)
                #expect(
                    network.servingMixer(of: name) == mixer, "\(name)'s leg is at \(network.servingMixer(of: name) ?? "-")",
                    sourceLocation: sourceLocation)
            }
        }
        if !members.contains(mixer), let core = network.cores[mixer] {
            // A mixer outside the conference: mixing, not a member.
            let mixesForOthers = core.isMixing && !core.participating
            #expect(mixesForOthers, "\(mixer) should mix for the others", sourceLocation: sourceLocation)
            #expect(core.members.sorted() == expected, sourceLocation: sourceLocation)
        }
    }

    @Test("Ten participants in memory: one election, one mixer, a roster of ten; the mixer dies and the nine move to the same next one")
    func tenParticipantsFailover() throws {
        let network = Self.tenParticipants()
        network.start(initiator: "p0", inviting: Array(Self.tenNames.dropFirst()))

        let initiator = try #require(network.cores["p0"])
        let expectedOrder = ["p4", "p7", "p0", "p1", "p2", "p3", "p5", "p6", "p8", "p9", "sn1"]
        #expect(initiator.mixers.map(\.name) == expectedOrder)
        #expect(
            initiator.mixers
                == MixerElection.rank(
                    Self.tenNames.map { network.capabilities[$0]! } + [network.capabilities["sn1"]!],
                    participants: Set(Self.tenNames), conferenceSize: 10))
        for name in Self.tenNames { #expect(network.cores[name]?.mixers == initiator.mixers, "\(name) holds the same list") }
        // Queries: nine invitees and the supernode, once each.
        let queries = network.log.filter { $0.node == "p0" }.map(\.action).queried
        #expect(queries.sorted() == (Self.tenNames.dropFirst() + ["sn1"]).sorted())
        // sn1 was asked but has no room: it never mixes.
        #expect(network.cores["sn1"] == nil)
        Self.expectConverged(network, on: "p4", epoch: 0, members: Self.tenNames)
        #expect(network.cores["p0"]?.invited.isEmpty == true, "everyone invited is in")

        // The mixer dies; every participant's leg to it fails.
        network.now = 30
        network.kill("p4")
        network.timeOutDeadLegs("p4 stopped answering")
        let nine = Self.tenNames.filter { $0 != "p4" }
        Self.expectConverged(network, on: "p7", epoch: 1, members: nine)
        // p7 took over at epoch 1 and told the members it knew (p4 is dead and hears nothing).
        let moves = network.log.filter { $0.node == "p7" }.map(\.action).moves
        #expect(moves.map(\.to).sorted() == Self.tenNames.filter { $0 != "p7" })
        #expect(moves.allSatisfy { $0.moved.epoch == 1 && $0.moved.mixer == "p7" })
        for name in nine where name != "p7" {
            #expect(network.cores[name]!.mixerHistory.map(\.name) == ["p4", "p7"], "\(name)")
        }
        #expect(network.cores["p7"]!.mixerHistory.map(\.name) == ["p4", "p7"])

        // Then the next mixer dies too: the eight move on to mixers[2] = p0.
        network.now = 60
        network.kill("p7")
        network.timeOutDeadLegs()
        Self.expectConverged(network, on: "p0", epoch: 2, members: nine.filter { $0 != "p7" })
    }

    @Test("When the mixer leaves, the others move to the next mixer together")
    func mixerLeaves() {
        let network = Self.tenParticipants()
        network.start(initiator: "p0", inviting: Array(Self.tenNames.dropFirst()))
        network.now = 10
        network.leave("p4")
        #expect(network.cores["p4"]?.phase == .ended("left"))
        Self.expectConverged(network, on: "p7", epoch: 1, members: Self.tenNames.filter { $0 != "p4" })
    }

    @Test("One participant losing its leg moves the whole conference to the next mixer (the old mixer joins it)")
    func oneLostLegMovesEveryone() {
        let network = Self.tenParticipants()
        network.start(initiator: "p0", inviting: Array(Self.tenNames.dropFirst()))
        network.now = 20
        network.dropLeg(of: "p2")
        Self.expectConverged(network, on: "p7", epoch: 1, members: Self.tenNames)
        #expect(network.cores["p4"]!.mixerHistory.map(\.name) == ["p4", "p7"])
    }

    @Test("A public supernode outside the conference mixes for ten; when it dies they all move to mixers[1]")
    func supernodeMixerFailover() {
        let network = Self.tenParticipants(supernodeRoom: 0)
        network.start(initiator: "p0", inviting: Array(Self.tenNames.dropFirst()))
        #expect(network.cores["p0"]?.mixers.prefix(2).map(\.name) == ["sn1", "p4"])
        Self.expectConverged(network, on: "sn1", epoch: 0, members: Self.tenNames)
        #expect(network.log.contains { $0.node == "sn1" && $0.action == .startMixing })

        network.now = 30
        network.kill("sn1")
        network.timeOutDeadLegs()
        Self.expectConverged(network, on: "p4", epoch: 1, members: Self.tenNames)
    }

    @Test("A late joiner refused by an old mixer goes straight to the mixer its `moved` names, not down the list")
    func lateJoinerReachesCurrentMixer() {
        let network = Self.tenParticipants()
        network.holdAnswer = ["p9"]
        network.start(initiator: "p0", inviting: Array(Self.tenNames.dropFirst()))
        let nine = Self.tenNames.filter { $0 != "p9" }
        Self.expectConverged(network, on: "p4", epoch: 0, members: nine)
        #expect(network.cores["p9"]?.phase == .ringing)

        // p7 (mixers[1]) dies as a participant; then p2's leg alone fails: p2 tries p7 (dead),
        // then p0 (mixers[2]), which takes over and moves everyone to epoch 2.
        network.now = 10
        network.kill("p7")
        network.timeOutDeadLegs()
        network.dropLeg(of: "p2")
        network.timeOutDeadLegs()
        let eight = nine.filter { $0 != "p7" }
        Self.expectConverged(network, on: "p0", epoch: 2, members: eight)

        // p9 answers late. It heard `moved` from p0 while it rang (p0 told every invitee), so it
        // joins at epoch 2 at once.
        network.now = 20
        network.answer("p9")
        // Without waiting for a leg to dead p7 to time out, p9 should be at p0.
        Self.expectConverged(network, on: "p0", epoch: 2, members: eight + ["p9"])
        #expect(!network.log.contains { $0.node == "p9" && $0.action.isOpenLeg(to: "p7") }, "p9 should not try the dead p7")
        // Eventually (after the leg to dead p7 times out) it gets there anyway.
        network.now = 40
        network.timeOutDeadLegs()
        Self.expectConverged(network, on: "p0", epoch: 2, members: eight + ["p9"])
    }

    @Test("An invitee at the head of the list who answers late joins the conference where it is, not a mixer of its own")
    func lateAnsweringMixer() {
        let network = Self.tenParticipants()
        network.holdAnswer = ["p4"]
        network.start(initiator: "p0", inviting: Array(Self.tenNames.dropFirst()))
        // p4 rings: the legs offered to it are refused and everyone moves on to p7.
        let nine = Self.tenNames.filter { $0 != "p4" }
        Self.expectConverged(network, on: "p7", epoch: 1, members: nine)
        #expect(network.cores["p0"]?.invited == ["p4"])
        #expect(network.cores["p4"]?.phase == .ringing)

        network.now = 8
        network.answer("p4")
        Self.expectConverged(network, on: "p7", epoch: 1, members: Self.tenNames)
    }

    @Test("One participant losing its leg to a supernode mixer moves the whole conference when the next mixer is a supernode too")
    func oneLostLegWithSupernodeMixers() {
        let sn2 = mixerCapability("sn2", nat: "open", supernode: true, cores: 8, kbps: 100_000)
        let network = Self.tenParticipants(supernodeRoom: 0, extra: [sn2])
        network.start(initiator: "p0", inviting: Array(Self.tenNames.dropFirst()), alsoAsking: ["sn2"])
        #expect(network.cores["p0"]?.mixers.prefix(3).map(\.name) == ["sn1", "sn2", "p4"])
        Self.expectConverged(network, on: "sn1", epoch: 0, members: Self.tenNames)

        network.now = 20
        network.dropLeg(of: "p2")
        Self.expectConverged(network, on: "sn2", epoch: 1, members: Self.tenNames)
    }
}

extension ConferenceSession.Action {
    func isOpenLeg(to mixer: String) -> Bool {
        if case let .openLeg(name, _) = self { return name == mixer }
        return false
    }
}
