import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire
import Testing

@testable import SkylarkNode

/// The node's tables of calls and conferences: which call a command means, one call or
/// conference at a time, leg offers held for an invitation still on its way, and how long an
/// ended one is kept.
@Suite struct CallAndConferenceTableTests {
    static func call(to peer: String, at now: Double) throws -> CallEntry {
        let session = try CallSession(calling: peer, candidates: [], natType: .open, peerNAT: .open, ssrc: 7, now: now)
        return CallEntry(session: session, startedAt: now)
    }

    static func leg(of conference: ConferenceID, to mixer: String, at now: Double) throws -> CallEntry {
        var entry = try call(to: mixer, at: now)
        entry.conference = ConferenceLegInfo(conferenceID: conference, weMix: false, template: OvConferenceLeg())
        return entry
    }

    @Test func commandsFindTheNewestMatchingUserCallOrTheOneNamedByAPrefix() throws {
        var calls = CallTable()
        let older = try Self.call(to: "bob", at: 10)
        let newer = try Self.call(to: "carol", at: 20)
        let leg = try Self.leg(of: ConferenceID([UInt8](repeating: 1, count: 16)), to: "dave", at: 30)
        calls[older.session.id] = older
        calls[newer.session.id] = newer
        calls[leg.session.id] = leg

        #expect(calls.userCalls.map(\.entry.session.peer) == ["bob", "carol"], "conference legs are not the user's calls")
        #expect(calls.resolve(nil) { _ in true } == newer.session.id)
        #expect(calls.resolve(String(older.session.id.hex.prefix(6)).uppercased()) { _ in true } == older.session.id, "a prefix in any case")
        #expect(calls.resolve(String(leg.session.id.hex.prefix(8))) { _ in true } == nil, "a leg is not hung up by id")
        #expect(calls.resolve(nil) { $0.session.peer == "nobody" } == nil)
    }

    @Test func oneCallOrConferenceAtATime() throws {
        var calls = CallTable()
        var conferences = ConferenceTable()
        #expect(calls.busyReason(conferences: conferences) == nil)

        let conferenceID = ConferenceID([UInt8](repeating: 2, count: 16))
        let leg = try Self.leg(of: conferenceID, to: "dave", at: 0)
        calls[leg.session.id] = leg
        #expect(calls.busyReason(conferences: conferences) == nil, "a leg we serve as a mixer does not make us busy")

        var own = OvMixerCapability()
        own.name = "alice"
        conferences[conferenceID] = ConferenceEntry(session: ConferenceSession(inviting: ["bob"], own: own, id: conferenceID.bytes, now: 0))
        #expect(conferences.current == conferenceID)
        #expect(calls.busyReason(conferences: conferences) == "already in a conference (skylark conf leave first)")
        conferences[conferenceID] = nil

        var call = try Self.call(to: "bob", at: 1)
        calls[call.session.id] = call
        #expect(calls.busyReason(conferences: conferences) == "already in a call with bob (skylark hangup first)")
        call.session.hangUp()
        calls[call.session.id] = call
        #expect(calls.busyReason(conferences: conferences) == nil, "an ended call frees the line")
    }

    @Test func endedCallsAndConferencesAreKeptAMinute() throws {
        var calls = CallTable()
        var call = try Self.call(to: "bob", at: 0)
        call.endedAt = 100
        calls[call.session.id] = call
        let live = try Self.call(to: "carol", at: 0)
        calls[live.session.id] = live
        calls.removeExpired(now: 100 + CallTable.retention)
        #expect(calls[call.session.id] != nil, "still listed a minute after it ended")
        calls.removeExpired(now: 100.1 + CallTable.retention)
        #expect(calls[call.session.id] == nil)
        #expect(calls[live.session.id] != nil, "a call that has not ended stays")
    }

    @Test func legOffersWaitForTheInvitationAtMostASecondAndNoMoreThanSixtyFour() {
        var conferences = ConferenceTable()
        let early = ConferenceID([UInt8](repeating: 3, count: 16))
        let other = ConferenceID([UInt8](repeating: 4, count: 16))
        var leg = OvConferenceLeg()
        leg.epoch = 1
        for index in 0..<ConferenceTable.heldOffersPerConference {
            let held = conferences.hold(leg, from: "member\(index)", for: early, now: 10)
            #expect(held)
        }
        let overflow = conferences.hold(leg, from: "flooder", for: early, now: 10)
        #expect(!overflow, "a full hold refuses more")
        let another = conferences.hold(leg, from: "carol", for: other, now: 10.5)
        #expect(another, "each conference has its own hold")
        #expect(conferences.heldOfferCount == ConferenceTable.heldOffersPerConference + 1)

        // The invitation for `early` comes: its offers are taken in order.
        let released = conferences.releaseHeld(for: early)
        #expect(released.map(\.peer) == (0..<ConferenceTable.heldOffersPerConference).map { "member\($0)" })
        #expect(conferences.releaseHeld(for: early).isEmpty, "released once")

        // No invitation for `other`: after the hold, we are only asked to mix.
        #expect(conferences.expiredHolds(now: 10.5 + ConferenceTable.legOfferHold - 0.01).isEmpty)
        let expired = conferences.expiredHolds(now: 10.5 + ConferenceTable.legOfferHold)
        #expect(expired.map(\.id) == [other] && expired.first?.offers.map(\.peer) == ["carol"])
        #expect(conferences.heldOfferCount == 0)
    }
}
