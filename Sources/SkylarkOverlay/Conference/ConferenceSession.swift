import Foundation
import SkylarkCrypto
import SkylarkWire

/// One conference as one node sees it, as a sans-I/O core: invitations, the mixer election, and
/// which mixer this node's leg goes to (or whether this node mixes). Legs themselves are
/// `CallSession`s the adapter runs; media is the adapter's.
///
/// - **Start.** The initiator asks every invitee, and the supernodes they are attached to, for
///   their `MixerCapability` (`gatherTimeout` at most), ranks them with `MixerElection`, and
///   invites everyone with that ranking. The ranking is the failover order: `epoch` is the index
///   of the mixer in charge.
/// - **Legs.** Each participant opens one leg to `mixers[epoch]`; if that is itself, it mixes.
///   A node outside the conference that is offered a leg naming it as the mixer starts mixing.
/// - **Failover.** When a participant's leg fails (the mixer died, left, or never answered) it
///   moves to the next entry; the others notice the same loss at the same time and move to the
///   same entry. A mixer taking over at a higher epoch tells every member it knows (`moved`),
///   so the whole conference converges on the newest epoch even when only one participant lost
///   its leg. Older epochs never win.
public struct ConferenceSession: Sendable {
    public struct Configuration: Sendable {
        /// How long the initiator waits for capabilities before electing with what it has.
        public var gatherTimeout: Double = 1.0
        public var ringTimeout: Double = 45
        /// A mixer outside the conference with no legs for this long stops.
        public var idleMixerTimeout: Double = 10
        /// At most this many participants per conference at a mixer.
        public var maximumParticipants = 32
        /// At most this many conferences a node mixes without taking part (for others).
        public var maximumMixedForOthers = 4
        /// The mixer sends its roster again this often (a lost or late roster heals).
        public var rosterRefresh: Double = 5
        public init() {}
    }

    public enum Phase: Equatable, Sendable {
        /// The initiator is collecting capabilities.
        case gathering
        /// Invited; waiting for the user.
        case ringing
        /// Our leg to the mixer is being set up (or we mix and wait for legs).
        case joining
        case active
        case ended(String)
    }

    public enum Action: Sendable, Equatable {
        case signal(OvConferenceSignal, to: String)
        /// Ring the user: an invitation.
        case ring(from: String)
        /// Open our leg to `mixer` (offer carrying `leg`).
        case openLeg(mixer: String, leg: OvConferenceLeg)
        /// Close our leg to the current mixer.
        case closeLeg(String)
        /// Start mixing for this conference (we are `mixers[epoch]`).
        case startMixing
        /// Stop mixing: end every leg we serve with this reason.
        case stopMixing(String)
        /// A line for the console.
        case note(String)
        case ended(String)
    }

    /// What to do with a leg someone offers us.
    public enum LegDecision: Sendable, Equatable {
        case accept
        /// Refuse: `moved` names the mixer in charge when the offer was for an older epoch.
        case refuse(String, moved: OvConferenceMoved?)
    }

    public let configuration: Configuration
    public let conferenceID: [UInt8]
    public let ownName: String
    public private(set) var initiator: String
    /// Whether the user takes part (false for a node that only mixes).
    public private(set) var participating: Bool
    public private(set) var phase: Phase
    public private(set) var mixers: [OvMixerCandidate] = []
    public private(set) var epoch = 0
    /// Whether this node mixes the conference now.
    public var isMixing: Bool { mixing != nil }
    /// Who is in: from the mixer's roster (or, at the mixer, the legs it serves).
    public private(set) var members: [String] = []
    public private(set) var invited: [String] = []
    /// Mixers this node has used, with when each took over, for `conf status`.
    public private(set) var mixerHistory: [(name: String, epoch: Int, at: Double)] = []
    public let startedAt: Double

    private var actions: [Action] = []
    private var deadline: Double?
    /// What only the initiator has while it gathers capabilities; gone once it has elected.
    private struct Gathering {
        var capabilities: [String: OvMixerCapability]
        /// Who was asked for a capability (each once).
        var queried: Set<String> = []
    }

    private var gathering: Gathering?
    /// What only the mixer has, while this node mixes; made fresh each time it takes over.
    private struct Mixing {
        /// Members whose legs are up, in the order they joined.
        var legMembers: [String] = []
        /// Legs accepted and not yet up: they count against `maximumParticipants` too.
        var pendingLegs: Set<String> = []
        /// Members already told that we took over (`moved`).
        var movedSent: Set<String> = []
        /// Rosters sent in this epoch.
        var rosterVersion: UInt32 = 0
        var nextRosterAt: Double?
        /// Since when no leg is up (a mixer outside the conference then ends).
        var idleSince: Double?
    }

    private var mixing: Mixing?
    /// The newest roster taken (participant).
    private var rosterSeen: (epoch: Int, version: UInt32)?

    // MARK: - Starting

    /// We start a conference with `invitees`; `own` is our capability, measured now.
    /// `alsoAsking`: nodes outside the conference worth asking too (supernodes we know).
    public init(
        inviting invitees: [String], own: OvMixerCapability, alsoAsking: [String] = [], id: [UInt8] = SecureRandom.bytes(16),
        configuration: Configuration = .init(), now: Double
    ) {
        self.configuration = configuration
        conferenceID = id
        ownName = own.name
        initiator = own.name
        participating = true
        phase = .gathering
        startedAt = now
        invited = invitees.filter { $0 != own.name }
        members = [own.name]
        gathering = Gathering(capabilities: [own.name: own])
        deadline = now + configuration.gatherTimeout
        for name in invited { query(name) }
        if !own.supernodeName.isEmpty { query(own.supernodeName) }
        for name in alsoAsking { query(name) }
        if gathering?.queried.isEmpty == true { elect(now: now) }
    }

    /// An invitation arrived from `inviter`.
    public init(invite: OvConferenceInvite, id: [UInt8], from inviter: String, ownName: String, configuration: Configuration = .init(), now: Double) {
        self.configuration = configuration
        conferenceID = id
        self.ownName = ownName
        initiator = invite.initiator.isEmpty ? inviter : invite.initiator
        participating = true
        phase = .ringing
        startedAt = now
        mixers = invite.mixers
        epoch = Int(invite.epoch)
        invited = invite.invited.filter { $0 != ownName }
        deadline = now + configuration.ringTimeout
        actions.append(.ring(from: inviter))
    }

    /// Someone offered a leg naming us as the mixer of a conference we are not in.
    public init?(mixingFor leg: OvConferenceLeg, id: [UInt8], ownName: String, configuration: Configuration = .init(), now: Double) {
        guard Int(leg.epoch) < leg.mixers.count, leg.mixers[Int(leg.epoch)].name == ownName else { return nil }
        self.configuration = configuration
        conferenceID = id
        self.ownName = ownName
        initiator = leg.initiator
        participating = false
        phase = .active
        startedAt = now
        mixers = leg.mixers
        epoch = Int(leg.epoch)
        mixing = Mixing(idleSince: now)
        mixerHistory.append((ownName, epoch, now))
        actions.append(.startMixing)
        actions.append(.note("mixing a conference of \(leg.initiator) (\(leg.mixers[epoch].reason))"))
    }

    public mutating func poll() -> Action? {
        actions.isEmpty ? nil : actions.removeFirst()
    }

    public var isEnded: Bool {
        if case .ended = phase { return true }
        return false
    }

    public var mixer: OvMixerCandidate? { epoch < mixers.count ? mixers[epoch] : nil }

    public var nextDeadline: Double? {
        guard !isEnded else { return nil }
        var times = [deadline]
        if let mixing, !mixing.legMembers.isEmpty { times.append(mixing.nextRosterAt) }
        if let idleSince = mixing?.idleSince, !participating { times.append(idleSince + configuration.idleMixerTimeout) }
        return times.compactMap { $0 }.min()
    }

    // MARK: - User actions

    public mutating func answer(now: Double) {
        guard phase == .ringing else { return }
        deadline = nil
        phase = .joining
        members = [ownName]
        join(now: now)
    }

    public mutating func decline(now: Double) {
        guard phase == .ringing else { return }
        var decline = OvConferenceDecline()
        decline.detail = "\(ownName) declined"
        actions.append(.signal(signal { $0.decline = decline }, to: initiator))
        end("declined")
    }

    /// `conf add`: invite one more (any participant may).
    public mutating func invite(_ name: String, now: Double) {
        guard participating, !isEnded, phase != .gathering, phase != .ringing, name != ownName else { return }
        if !invited.contains(name) { invited.append(name) }
        actions.append(.signal(inviteSignal(), to: name))
    }

    public mutating func leave(now: Double) {
        guard !isEnded else { return }
        if phase == .ringing { return decline(now: now) }
        if isMixing {
            // The legs end with "mixer left": everyone moves to the next mixer at once.
            mixing = nil
            actions.append(.stopMixing("\(ownName) (the mixer) left"))
        } else {
            actions.append(.closeLeg("\(ownName) left"))
        }
        end("left")
    }

    // MARK: - Signals

    public mutating func handleSignal(_ signal: OvConferenceSignal, from sender: String, now: Double) {
        guard Array(signal.conferenceID) == conferenceID, !isEnded else { return }
        switch signal.body {
        case let .capability(capability)?:
            guard gathering?.queried.contains(sender) == true, capability.name == sender else { return }
            gathering?.capabilities[sender] = capability
            // A participant's supernode is a candidate too.
            if !capability.supernodeName.isEmpty { query(capability.supernodeName) }
            if let gathering, gathering.queried.allSatisfy({ gathering.capabilities[$0] != nil }) { elect(now: now) }
        case let .decline(decline)?:
            guard invited.contains(sender) else { return }
            invited.removeAll { $0 == sender }
            actions.append(.note("\(sender) declined the conference\(decline.detail.isEmpty ? "" : ": \(decline.detail)")"))
        case let .roster(roster)?:
            guard Int(roster.epoch) == epoch, sender == mixer?.name, !isMixing else { return }
            // Rosters travel as separate envelopes and may overtake each other: newest wins.
            if let seen = rosterSeen, seen.epoch == epoch, roster.version <= seen.version { return }
            rosterSeen = (epoch, roster.version)
            let joined = roster.members.filter { !members.contains($0) && $0 != ownName }
            let left = members.filter { !roster.members.contains($0) && $0 != ownName }
            members = roster.members
            invited.removeAll { members.contains($0) }
            if !joined.isEmpty { actions.append(.note("in the conference now: \(joined.joined(separator: ", "))")) }
            if !left.isEmpty { actions.append(.note("left the conference: \(left.joined(separator: ", "))")) }
        case let .moved(moved)?:
            let newEpoch = Int(moved.epoch)
            guard newEpoch > epoch, newEpoch < mixers.count, mixers[newEpoch].name == moved.mixer else { return }
            // From the new mixer itself, or from an earlier one that refused our leg.
            guard sender == moved.mixer || mixers[..<newEpoch].contains(where: { $0.name == sender }) else { return }
            if phase == .ringing {
                // Answering later joins the conference where it is now.
                epoch = newEpoch
                return
            }
            guard phase == .joining || phase == .active else { return }
            move(to: newEpoch, because: "\(moved.mixer) took over mixing", now: now)
        case .query?, .invite?, .leg?, nil:
            return
        }
    }

    // MARK: - Legs

    /// A leg offered to us (we would be its mixer).
    public mutating func legOffered(from name: String, _ leg: OvConferenceLeg, now: Double) -> LegDecision {
        guard !isEnded, phase != .ringing, phase != .gathering else { return .refuse("not in this conference", moved: nil) }
        let offered = Int(leg.epoch)
        if offered < epoch {
            guard let mixer else { return .refuse("no mixer", moved: nil) }
            var moved = OvConferenceMoved()
            moved.epoch = UInt32(epoch)
            moved.mixer = mixer.name
            return .refuse("the conference moved to \(mixer.name)", moved: moved)
        }
        if mixers.isEmpty { mixers = leg.mixers }
        guard offered < mixers.count, mixers[offered].name == ownName else { return .refuse("\(ownName) is not this conference's mixer", moved: nil) }
        let seats = Set(mixing?.legMembers ?? []).union(mixing?.pendingLegs ?? []).subtracting([name]).count + (participating ? 1 : 0)
        guard seats < configuration.maximumParticipants else {
            return .refuse("the conference is full (\(configuration.maximumParticipants))", moved: nil)
        }
        if offered > epoch || !isMixing {
            // We take over: leave the old mixer, tell everyone.
            if !isMixing && (phase == .active || phase == .joining) && offered > epoch, participating { actions.append(.closeLeg("taking over mixing")) }
            epoch = offered
            becomeMixer(now: now)
        }
        mixing?.pendingLegs.insert(name)
        // Whoever the participant knew is still on an older mixer: move them here.
        if epoch > 0 { tellMoved(leg.members.filter { $0 != name }) }
        return .accept
    }

    /// At the mixer: a participant's leg is up.
    public mutating func memberJoined(_ name: String, now: Double) {
        mixing?.pendingLegs.remove(name)
        guard let members = mixing?.legMembers, !members.contains(name) else { return }
        mixing?.legMembers.append(name)
        mixing?.idleSince = nil
        invited.removeAll { $0 == name }
        actions.append(.note("\(name) joined the conference"))
        publishRoster(now: now)
    }

    /// At the mixer: a participant's leg ended.
    public mutating func memberLeft(_ name: String, detail: String, now: Double) {
        mixing?.pendingLegs.remove(name)
        guard let members = mixing?.legMembers, members.contains(name) else { return }
        mixing?.legMembers.removeAll { $0 == name }
        actions.append(.note("\(name) left the conference (\(detail))"))
        if mixing?.legMembers.isEmpty == true { mixing?.idleSince = now }
        publishRoster(now: now)
    }

    /// Our leg to the mixer works.
    public mutating func legConnected(now: Double) {
        guard phase == .joining, !isMixing else { return }
        phase = .active
    }

    /// Our leg to the mixer ended or failed: the next mixer.
    public mutating func legEnded(_ detail: String, now: Double) {
        guard !isEnded, !isMixing, phase == .joining || phase == .active else { return }
        move(to: epoch + 1, because: "lost \(mixer?.name ?? "the mixer"): \(detail)", now: now)
    }

    // MARK: - Time

    public mutating func handleTimeout(now: Double) {
        guard !isEnded else { return }
        if let deadline, now >= deadline {
            self.deadline = nil
            switch phase {
            case .gathering: elect(now: now)
            case .ringing: end("not answered")
            default: break
            }
        }
        if let mixing, let refresh = mixing.nextRosterAt, now >= refresh, !mixing.legMembers.isEmpty { publishRoster(now: now) }
        if !participating, let idleSince = mixing?.idleSince, now - idleSince >= configuration.idleMixerTimeout {
            mixing = nil
            actions.append(.stopMixing("no participants left"))
            end("no participants left")
        }
    }

    // MARK: - Internals

    private mutating func query(_ name: String) {
        guard name != ownName, gathering?.queried.insert(name).inserted == true else { return }
        actions.append(.signal(signal { $0.query = OvConferenceQuery() }, to: name))
    }

    private mutating func elect(now: Double) {
        guard phase == .gathering, let gathered = gathering else { return }
        gathering = nil
        deadline = nil
        let participants = Set([ownName] + invited)
        let known = gathered.capabilities.values.sorted { $0.name < $1.name }
        mixers = MixerElection.rank(known, participants: participants, conferenceSize: participants.count)
        epoch = 0
        for name in invited { actions.append(.signal(inviteSignal(), to: name)) }
        if let mixer { actions.append(.note("conference: \(mixer.name) mixes (\(mixer.reason))")) }
        phase = .joining
        join(now: now)
    }

    /// Joins `mixers[epoch]`: our own mixing, or a leg to it.
    private mutating func join(now: Double) {
        guard let mixer else { return end("no mixer left") }
        if mixer.name == ownName {
            becomeMixer(now: now)
        } else {
            mixerHistory.append((mixer.name, epoch, now))
            actions.append(.openLeg(mixer: mixer.name, leg: legTemplate()))
        }
    }

    private mutating func move(to newEpoch: Int, because reason: String, now: Double) {
        if isMixing {
            mixing = nil
            actions.append(.stopMixing("the conference moved to \(newEpoch < mixers.count ? mixers[newEpoch].name : "nobody")"))
            if !participating {
                epoch = newEpoch
                return end("the conference moved on")
            }
        } else {
            actions.append(.closeLeg(reason))
        }
        epoch = newEpoch
        guard let mixer else { return end("no mixer left (\(reason))") }
        actions.append(.note("conference: \(reason); \(mixer.name) mixes now (\(mixer.reason))"))
        phase = .joining
        join(now: now)
    }

    private mutating func becomeMixer(now: Double) {
        guard !isMixing else { return }
        mixing = Mixing(idleSince: participating ? nil : now)
        phase = .active
        mixerHistory.append((ownName, epoch, now))
        actions.append(.startMixing)
        // Taking over: whoever is still on an older mixer moves here.
        if epoch > 0 { tellMoved(members + invited + [initiator]) }
        members = participating ? [ownName] : []
    }

    private mutating func tellMoved(_ names: [String]) {
        var moved = OvConferenceMoved()
        moved.epoch = UInt32(epoch)
        moved.mixer = ownName
        for name in names.sorted() where name != ownName && mixing?.movedSent.insert(name).inserted == true {
            actions.append(.signal(signal { $0.moved = moved }, to: name))
        }
    }

    private mutating func publishRoster(now: Double) {
        guard var state = mixing else { return }
        members = (participating ? [ownName] : []) + state.legMembers
        state.rosterVersion += 1
        state.nextRosterAt = now + configuration.rosterRefresh
        mixing = state
        var roster = OvConferenceRoster()
        roster.version = state.rosterVersion
        roster.epoch = UInt32(epoch)
        roster.mixer = ownName
        roster.members = members
        for member in state.legMembers { actions.append(.signal(signal { $0.roster = roster }, to: member)) }
    }

    private func legTemplate() -> OvConferenceLeg {
        var leg = OvConferenceLeg()
        leg.epoch = UInt32(epoch)
        leg.mixers = mixers
        leg.initiator = initiator
        // Invitees and the initiator too: one still ringing must hear where the conference went.
        var known = members
        for name in invited + [initiator] where !known.contains(name) { known.append(name) }
        leg.members = known
        return leg
    }

    private func inviteSignal() -> OvConferenceSignal {
        var invite = OvConferenceInvite()
        invite.initiator = initiator
        invite.invited = invited
        invite.mixers = mixers
        invite.epoch = UInt32(epoch)
        return signal { $0.invite = invite }
    }

    private func signal(_ fill: (inout OvConferenceSignal) -> Void) -> OvConferenceSignal {
        var signal = OvConferenceSignal()
        signal.conferenceID = Data(conferenceID)
        fill(&signal)
        return signal
    }

    private mutating func end(_ reason: String) {
        guard !isEnded else { return }
        phase = .ended(reason)
        gathering = nil
        deadline = nil
        actions.append(.ended(reason))
    }
}
