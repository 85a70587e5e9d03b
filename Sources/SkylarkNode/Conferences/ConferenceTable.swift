import SkylarkMedia
import SkylarkOverlay
import SkylarkWire

/// A conference as the node holds it: the core, and the mixer's audio while this node mixes.
/// Legs are `CallEntry`s in the call table whose `conference` names this entry.
struct ConferenceEntry {
    var session: ConferenceSession
    var mixerMedia: MixerMedia<CallID>?
    /// Our leg to the mixer, while we have one.
    var legID: CallID?
    var endedAt: Double?
    var endReason: String?
}

/// A leg of a conference, as a `CallEntry` knows it.
struct ConferenceLegInfo {
    var conferenceID: ConferenceID
    /// We opened the leg (we take part; the peer mixes) or we serve it (we mix).
    var weMix: Bool
    /// The wrapper for the leg's call signalling.
    var template: OvConferenceLeg
}

/// Every conference the node takes part in or mixes, by id, and the leg offers held for a
/// conference we have not heard of yet: a participant that counts us among the invited may
/// open its leg to us before our own invitation arrives (it travels another path), so the
/// offer waits a moment for it instead of being taken as a request to mix for others.
struct ConferenceTable {
    /// How long a leg offer waits for our own invitation to the same conference (seconds).
    static let legOfferHold = 1.0
    /// Offers held per conference at most (the rest are dropped: a participant has one leg).
    static let heldOffersPerConference = 64
    /// Ended conferences are kept this long (seconds) for `skylark calls`.
    static let retention = 60.0

    struct HeldOffer {
        var peer: String
        var leg: OvConferenceLeg
        var at: Double
    }

    private(set) var entries: [ConferenceID: ConferenceEntry] = [:]
    private var held: [ConferenceID: [HeldOffer]] = [:]

    subscript(id: ConferenceID) -> ConferenceEntry? {
        get { entries[id] }
        set { entries[id] = newValue }
    }

    var ids: [ConferenceID] { Array(entries.keys) }

    /// Oldest first.
    var ordered: [(id: ConferenceID, entry: ConferenceEntry)] {
        entries.sorted { $0.value.session.startedAt < $1.value.session.startedAt }.map { ($0.key, $0.value) }
    }

    /// The conference we take part in (not one we only mix for others, nor one still ringing).
    var current: ConferenceID? {
        ordered.first { !$0.entry.session.isEnded && $0.entry.session.participating && $0.entry.session.phase != .ringing }?.id
    }

    var ringing: ConferenceID? { ordered.first { $0.entry.session.phase == .ringing }?.id }

    /// Conferences we mix without taking part (bounded by configuration).
    var mixedForOthers: Int { entries.values.filter { $0.session.isMixing && !$0.session.participating }.count }

    /// Members of every conference we mix: what room is left as a mixer.
    var mixedMembers: Int { entries.values.filter { $0.session.isMixing }.reduce(0) { $0 + $1.session.members.count } }

    var hasMixing: Bool { entries.values.contains { $0.mixerMedia != nil } }

    var mixers: [MixerMedia<CallID>] { entries.values.compactMap(\.mixerMedia) }

    // MARK: - Held leg offers

    /// Holds a leg offer for conference `id` until our invitation comes; false if too many wait.
    mutating func hold(_ leg: OvConferenceLeg, from peer: String, for id: ConferenceID, now: Double) -> Bool {
        guard (held[id]?.count ?? 0) < Self.heldOffersPerConference else { return false }
        held[id, default: []].append(HeldOffer(peer: peer, leg: leg, at: now))
        return true
    }

    /// Our invitation came: the offers held for it, in the order they arrived.
    mutating func releaseHeld(for id: ConferenceID) -> [HeldOffer] {
        held.removeValue(forKey: id) ?? []
    }

    /// Offers whose invitation never came within the hold: we are asked only to mix.
    mutating func expiredHolds(now: Double) -> [(id: ConferenceID, offers: [HeldOffer])] {
        let due = held.filter { now - ($0.value.first?.at ?? now) >= Self.legOfferHold }.sorted { $0.key.hex < $1.key.hex }
        for (id, _) in due { held[id] = nil }
        return due.map { ($0.key, $0.value) }
    }

    var heldOfferCount: Int { held.values.reduce(0) { $0 + $1.count } }

    /// Forgets conferences that ended longer than `retention` ago.
    mutating func removeExpired(now: Double) {
        var expired: [ConferenceID] = []
        for (id, entry) in entries { if let ended = entry.endedAt, now - ended > Self.retention { expired.append(id) } }
        for id in expired { entries[id] = nil }
    }
}

extension CallTable {
    /// Why a new call or conference cannot start, if it cannot: one at a time.
    func busyReason(conferences: ConferenceTable) -> String? {
        if let call = userCallInProgress { return "already in a call with \(call.session.peer) (skylark hangup first)" }
        if conferences.current != nil { return "already in a conference (skylark conf leave first)" }
        return nil
    }
}
