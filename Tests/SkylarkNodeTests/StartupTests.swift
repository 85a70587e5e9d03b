import SkylarkOverlay
import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkNode

/// Start-up on its own: the search for a supernode (UDP answers first, sixteen dials at a time,
/// rounds) and the login's way from direct to relayed to given up.
@Suite struct StartupTests {
    static func endpoints(_ count: Int) -> [HostPort] { (0..<count).map { HostPort(host: "10.0.\($0 / 250).\($0 % 250 + 1)", port: 443) } }

    @Test func theSearchDialsSixteenAtATimeAndAnAnsweringSupernodeGoesFirst() {
        let candidates = Self.endpoints(40)
        var search = SupernodeSearch(now: 100, candidates: candidates, reason: "start")
        #expect(search.queryTargets == candidates, "every candidate is asked over UDP at once")
        for (index, endpoint) in search.queryTargets.enumerated() { search.queried(endpoint, nonce: [UInt8(index)], now: 100) }

        // The 30th candidate answers over UDP before any dial goes out: it is dialled first.
        let answer = search.answered(nonce: [29], now: 100.05)
        #expect(answer?.endpoint == candidates[29])
        #expect(search.udpAnswered)
        #expect(search.answered(nonce: [29], now: 100.1) == nil, "an answer counts once")
        #expect(search.answered(nonce: [200], now: 100.1) == nil, "not our nonce")

        let first = search.nextDials()
        #expect(first.count == SupernodeSearch.parallelism)
        #expect(first.first == candidates[29])
        for (index, _) in first.enumerated() { search.dialing(LinkID(index)) }
        #expect(search.nextDials().isEmpty, "no more than sixteen at once")
        search.dialEnded(0)
        #expect(search.nextDials().count == 1, "a dial that ends makes room for the next")
    }

    @Test func whenEveryoneWasTriedTheSearchGoesRoundAgainSlowerAndWarnsOnce() {
        let candidates = Self.endpoints(3)
        var search = SupernodeSearch(now: 0, candidates: candidates + [candidates[0]], reason: "start")
        let dials = search.nextDials()
        #expect(dials == candidates, "each candidate once a round")
        for (index, _) in dials.enumerated() { search.dialing(LinkID(index)) }
        #expect(!search.isRoundOver(now: 5), "dials still out")
        for index in 0..<3 { search.dialEnded(LinkID(index)) }
        #expect(!search.isRoundOver(now: 1.9), "a round lasts two seconds at least")
        #expect(search.isRoundOver(now: 2))
        let early = search.startRound(now: 2, candidates: candidates, warnAfter: 10)
        #expect(!early, "too early to warn")
        #expect(search.nextDials() == candidates, "the same candidates are tried again")
        for index in 0..<3 { search.dialEnded(LinkID(index)) }
        #expect(!search.isRoundOver(now: 3.9))
        #expect(search.isRoundOver(now: 4))
        let late = search.startRound(now: 12, candidates: candidates, warnAfter: 10)
        #expect(late, "warned once the timeout passed")
        _ = search.nextDials()
        let again = search.startRound(now: 40, candidates: candidates, warnAfter: 10)
        #expect(!again, "and only once")
    }

    @Test func aLoginServerThatCannotBeReachedIsReachedThroughTheSupernodeOrTheNodeGivesUp() throws {
        var login = LoginProgress()
        login.startedDirect()
        let unreachable = LoginFailure.serverUnreachable(address: "10.0.0.1:8443", reason: "connection refused")
        #expect(login.directFinished(.failure(unreachable), now: 10, supernodeLinkUp: false) == .waitForSupernode)
        #expect(login.description == "waiting for a supernode to relay the login")
        #expect(login.directFinished(.failure(unreachable), now: 11, supernodeLinkUp: false) == nil, "the direct login ends once")
        #expect(login.wantsRelay())
        #expect(login.timedOut(now: 40, supernodeLinkUp: false, limit: 30) == nil)
        #expect(login.timedOut(now: 41, supernodeLinkUp: true, limit: 30) == nil, "a supernode is there to relay through")

        let exchange = try LoginClientExchange(
            .login(name: "alice", password: "correct horse", userPublicKey: Users.alice.publicKey), serverKey: TestKeys.login.publicKey, now: 12)
        login.relaying(exchange)
        #expect(!login.wantsRelay())
        #expect(login.description == "logging in through a supernode")
        // The supernode went before answering: the login waits for the next one.
        login.supernodeLinkLost(now: 20)
        #expect(login.wantsRelay())
        login.relaying(exchange)
        var refused = OvLinkMessage()
        refused.refused = OvRefused(code: .unavailable, reason: "the login server cannot be reached from this supernode either")
        #expect(login.relayAnswered(refused, via: "sn1") == .relayFailed("the login server cannot be reached from this supernode either"))

        var stranded = LoginProgress()
        stranded.startedDirect()
        _ = stranded.directFinished(.failure(.timedOut(address: "10.0.0.1:8443")), now: 0, supernodeLinkUp: false)
        guard case let .fail(reason, exitCode)? = stranded.timedOut(now: 31, supernodeLinkUp: false, limit: 30) else {
            Issue.record("no supernode within the limit: give up")
            return
        }
        #expect(exitCode == 6)
        #expect(reason.contains("no supernode could be reached to relay the login"))
    }

    @Test func aLoginRefusedByTheServerIsNotRelayedAndSuccessSaysHow() {
        var login = LoginProgress()
        login.startedDirect()
        #expect(
            login.directFinished(.failure(.wrongPassword(name: "alice")), now: 0, supernodeLinkUp: true) == .fail("wrong password for 'alice'", exitCode: 3))

        var direct = LoginProgress()
        direct.startedDirect()
        #expect(direct.directFinished(.success(Users.alice.credential), now: 0, supernodeLinkUp: true) == .loggedIn(Users.alice.credential, path: "direct"))
        direct.loggedIn(path: "direct")
        #expect(direct.isDone && direct.description == "direct")
    }
}
