import Foundation
import SkylarkClientCLI
import Testing

@testable import SkylarkNode
@testable import SkylarkOverlay

/// The CLI decodes exactly what the node's control server encodes (`Reactor.answer`), and says
/// plainly when an answer is not what the command expects.
@Suite struct ControlAnswerTests {
    /// Through the server's encoder and back: the decoded value encodes to the very same line.
    func roundTrip<Result: Codable & Sendable>(_ value: Result) throws -> Result {
        let line = Reactor.answer(value)
        let decoded: Result = try ControlAnswers.result(of: line)
        #expect(Reactor.answer(decoded) == line)
        #expect(try ControlAnswers.isOK(line))
        return decoded
    }

    @Test func everyResultTypeDecodesFromTheServersJSON() throws {
        _ = try roundTrip(Fixtures.supernodeStatus)
        _ = try roundTrip(Fixtures.clientStatus)
        _ = try roundTrip(Fixtures.supernodeStatus.buddies)
        _ = try roundTrip(ControlResults.Done(done: "bob removed"))
        _ = try roundTrip(Fixtures.search)
        _ = try roundTrip(Fixtures.delivered)
        _ = try roundTrip(Fixtures.inbox)
        _ = try roundTrip(Fixtures.activeCall)
        _ = try roundTrip([Fixtures.activeCall, Fixtures.declinedCall])
        _ = try roundTrip(Fixtures.conference)
        _ = try roundTrip([Fixtures.conference])
    }

    @Test func answerIsACallOrTheConferenceItJoined() throws {
        guard case let .call(call) = try ControlAnswers.result(of: Reactor.answer(Fixtures.activeCall), as: CallOrConference.self) else {
            Issue.record("a call decoded as a conference")
            return
        }
        #expect(call.id == Fixtures.activeCall.id)
        guard case let .conference(conference) = try ControlAnswers.result(of: Reactor.answer(Fixtures.conference), as: CallOrConference.self) else {
            Issue.record("a conference decoded as a call")
            return
        }
        #expect(conference.initiator == "alice")
    }

    @Test func refusalsGiveTheNodesReason() throws {
        let refused = Reactor.failure("not logged in yet (logging in)")
        #expect(try ControlAnswers.isOK(refused) == false)
        #expect(throws: ControlAnswerFailure.refused("not logged in yet (logging in)")) {
            try ControlAnswers.result(of: refused, as: ControlResults.Status.self)
        }
        #expect(throws: ControlAnswerFailure.refused("the node refused the request")) {
            try ControlAnswers.result(of: #"{"ok":false}"#, as: ControlResults.Done.self)
        }
    }

    @Test func malformedAnswersSayWhatIsWrong() throws {
        func failure(_ line: String) -> String? {
            do { _ = try ControlAnswers.result(of: line, as: ControlResults.Status.self) } catch { return error.description }
            return nil
        }
        #expect(failure("skylark") == "the node gave an answer that is not JSON")
        #expect(failure(#"{"ok":true"#) == "the node gave an answer that is not JSON")
        #expect(failure("[1,2]") == "the node gave an unexpected answer: not a JSON object")
        #expect(failure("{}") == "the node gave an unexpected answer: missing 'ok'")
        #expect(failure(#"{"ok":true}"#) == "the node gave an unexpected answer: no result")
        #expect(failure(#"{"ok":true,"result":null}"#) == "the node gave an unexpected answer: no result")
        #expect(failure(Reactor.answer(ControlResults.Done(done: "done"))) == "the node gave an unexpected answer: missing 'result.name'")
        let wrongType = Reactor.answer(Fixtures.supernodeStatus).replacingOccurrences(of: #""name":"bob""#, with: #""name":7"#)
        #expect(failure(wrongType) == "the node gave an unexpected answer: wrong type at 'result.buddies.0.name'")
        #expect(throws: ControlAnswerFailure.notJSON) { try ControlAnswers.isOK("skylark") }
        #expect(throws: ControlAnswerFailure.unexpected("missing 'ok'")) { try ControlAnswers.isOK(#"{"error":"x"}"#) }
    }
}

/// The printed lines, as the CLI printed them before its answers were typed.
@Suite struct ControlReportTests {
    @Test func status() throws {
        #expect(
            ControlReport.status(Fixtures.supernodeStatus) == [
                "name:        alice  (node id 0123456789abcdef)",
                "role:        supernode — publicly reachable",
                "supernode:   self (10.0.0.1:7100)",
                "login:       direct",
                "NAT type:    open, public UDP 203.0.113.5:7100",
                "presence:    online",
                "listening:   0.0.0.0:7100, 0.0.0.0:443; advertised 203.0.113.5:7100",
                "serving:     3 client(s), 7 DHT contact(s), 0 record(s)",
                "host cache:  2 supernode(s), last refreshed over udp",
                "buddies:",
                "  bob                  online (via carol (10.0.0.2:7100))",
                "  dave                 wants to be your buddy — skylark buddy accept dave",
                "  erin                 request sent, waiting for consent",
            ])
        #expect(
            ControlReport.status(Fixtures.clientStatus) == [
                "name:        bob  (node id )",
                "role:        client — not reachable from outside",
                "supernode:   -",
                "login:       waiting for a supernode to relay the login",
                "NAT type:    symmetric",
                "presence:    offline",
                "listening:   0.0.0.0:7100; advertised ",
                "host cache:  0 supernode(s), last refreshed over none",
                "buddies:     none",
            ])
    }

    @Test func searchMessagesAndInbox() {
        #expect(ControlReport.search(Fixtures.search) == ["bob: online via supernode carol (10.0.0.2:7100), NAT restricted (2 DHT hop(s))"])
        var missing = Fixtures.search
        missing.found = false
        #expect(ControlReport.search(missing) == ["bob: not found (offline or no such user)"])
        #expect(ControlReport.message(Fixtures.delivered) == ["delivered to bob"])
        #expect(ControlReport.message(Fixtures.stored) == ["carol is offline: stored on 3 supernode(s), delivered at their next login"])
        #expect(ControlReport.message(Fixtures.queued) == ["queued: will be sent as soon as a supernode accepts it"])
        #expect(
            ControlReport.inbox(Fixtures.inbox) == [
                "2025-01-01T00:00:00Z  bob: hi there",
                "sent:",
                "  to bob: delivered, receipt",
                "  to carol: stored on 3 supernode(s)",
                "  to dave: queued",
            ])
        #expect(ControlReport.inbox(ControlResults.Inbox(messages: [], outbox: [])) == ["no messages"])
        #expect(ControlReport.done(ControlResults.Done(done: "presence set to away")) == ["presence set to away"])
    }

    @Test func calls() {
        #expect(
            ControlReport.calls([Fixtures.activeCall, Fixtures.declinedCall]) == [
                "call c0ffee00 outgoing bob: active",
                "  path: punched UDP 203.0.113.9:40000",
                "  rtt 41.3 ms  loss 0.5 %  jitter 3.0 ms  bitrate 24.3 kb/s  setup 812.0 ms",
                "call deadbeef incoming bob: ended (declined)",
            ])
        #expect(ControlReport.calls([]) == ["no calls"])
        #expect(ControlReport.callOrConference(.call(Fixtures.declinedCall)) == ["call deadbeef incoming bob: ended (declined)"])
    }

    @Test func conferences() {
        #expect(
            ControlReport.conferences([Fixtures.conference]) == [
                "conference abcdef01 of alice: active, mixing for others",
                "  mixer: carol (this node) — most uplink",
                "  members: alice, bob",
                "  invited: dave",
                "  mixers so far: bob → carol",
                "  leg to carol: connecting; rtt 20.0 ms  loss -  jitter 1.5 ms",
                "  leg from alice: direct; 12 packets in, 10 out",
                "  leg from bob: connecting; 0 packets in, 0 out",
                "  mixing: 50 ticks, 100 decodes, 60 encodes (40 shared by listeners)",
            ])
        #expect(ControlReport.conferences([]) == ["no conferences"])
    }
}

enum Fixtures {
    static let supernodeStatus = ControlResults.Status(
        name: "alice", nodeID: "0123456789abcdef0123", role: "supernode", roleReason: "publicly reachable", failedDialBacks: 0,
        supernode: "self (10.0.0.1:7100)", loginPath: "direct", natType: .open, publicEndpoint: "203.0.113.5:7100", observedEndpoint: nil,
        listen: ["0.0.0.0:7100", "0.0.0.0:443"], advertised: ["203.0.113.5:7100"], presence: "online",
        attachedClients: 3, dhtContacts: 7, storedRecords: nil, hostCacheEntries: 2, hostCacheRefresh: "udp", uptimeSeconds: 61,
        buddies: [
            .init(name: "bob", state: "confirmed", presence: "online", supernode: "carol (10.0.0.2:7100)", natType: .restricted, requestText: nil),
            .init(name: "dave", state: "incoming", presence: "-", supernode: nil, natType: nil, requestText: "hello / it's dave"),
            .init(name: "erin", state: "outgoing", presence: "-", supernode: nil, natType: nil, requestText: nil),
        ])

    static let clientStatus = ControlResults.Status(
        name: "bob", nodeID: "", role: "client", roleReason: "not reachable from outside", failedDialBacks: 2,
        supernode: nil, loginPath: "waiting for a supernode to relay the login", natType: .symmetric, publicEndpoint: nil,
        observedEndpoint: "198.51.100.4:51000",
        listen: ["0.0.0.0:7100"], advertised: [], presence: "offline",
        attachedClients: nil, dhtContacts: nil, storedRecords: nil, hostCacheEntries: 0, hostCacheRefresh: "none", uptimeSeconds: 3.5, buddies: [])

    static let search = ControlResults.Search(
        name: "bob", found: true, status: "online", supernode: "carol (10.0.0.2:7100)", natType: .restricted,
        publicEndpoint: "", privateEndpoints: ["10.0.0.3:7100"], hops: 2)

    static let delivered = ControlResults.Message(id: "m-1", to: "bob", state: "delivered", replicas: nil, receipt: true)
    static let stored = ControlResults.Message(id: "m-2", to: "carol", state: "stored", replicas: 3, receipt: nil)
    static let queued = ControlResults.Message(id: "m-3", to: "dave", state: "queued", replicas: nil, receipt: nil)

    static let inbox = ControlResults.Inbox(
        messages: [InboxMessage(id: "m-0", from: "bob", text: "hi there", sentAt: 1_735_689_600, receivedAt: 1_735_689_601.25)],
        outbox: [delivered, stored, queued])

    static let activeCall = ControlResults.Call(
        id: "c0ffee00deadbeef", peer: "bob", direction: "outgoing", state: "active", path: "punched", relays: [], overTCP: false,
        pathDetail: "punched UDP 203.0.113.9:40000", pathHistory: ["relayed", "punched"], rttMilliseconds: 41.3, lossPercent: 0.5,
        jitterMilliseconds: 3, bitrateKbps: 24.3, packetsSent: 100, packetsReceived: 98, longestGapMilliseconds: nil, setupMilliseconds: 812,
        startedAtMs: 1_735_689_600_000, firstAudioAtMs: 1_735_689_600_812, ended: nil)

    static let declinedCall = ControlResults.Call(
        id: "deadbeef00c0ffee", peer: "bob", direction: "incoming", state: "ended", path: nil, relays: ["carol"], overTCP: true,
        pathDetail: nil, pathHistory: [], rttMilliseconds: nil, lossPercent: nil, jitterMilliseconds: nil, bitrateKbps: nil,
        packetsSent: nil, packetsReceived: nil, longestGapMilliseconds: nil, setupMilliseconds: nil,
        startedAtMs: 1_735_689_600_000, firstAudioAtMs: nil, ended: "declined")

    static let conference = ControlResults.Conference(
        id: "abcdef0123456789", initiator: "alice", state: "active", participating: false, mixer: "carol", mixerReason: "most uplink", weMix: true,
        epoch: 1, candidates: [.init(name: "bob", reason: "initiator's pick"), .init(name: "carol", reason: "most uplink")],
        members: ["alice", "bob"], invited: ["dave"],
        mixerHistory: [.init(name: "bob", epoch: 0, atMs: 1_735_689_600_000), .init(name: "carol", epoch: 1, atMs: 1_735_689_605_000)],
        leg: ControlResults.Call(
            id: "1e9", peer: "carol", direction: "outgoing", state: "connecting", path: nil, relays: [], overTCP: false, pathDetail: nil,
            pathHistory: [], rttMilliseconds: 20, lossPercent: nil, jitterMilliseconds: 1.5, bitrateKbps: nil, packetsSent: nil,
            packetsReceived: nil, longestGapMilliseconds: nil, setupMilliseconds: nil, startedAtMs: 1_735_689_600_000, firstAudioAtMs: nil, ended: nil),
        legs: [
            .init(participant: "alice", path: "direct", packetsSent: 10, packetsReceived: 12, lossPercent: 0, jitterMilliseconds: 2.5),
            .init(participant: "bob", path: nil, packetsSent: 0, packetsReceived: 0, lossPercent: nil, jitterMilliseconds: nil),
        ],
        mixing: .init(ticks: 50, decodes: 100, encodes: 60, sharedEncodes: 40, packetsOut: 90),
        audioSinceMs: nil, startedAtMs: 1_735_689_600_000, ended: nil)
}
