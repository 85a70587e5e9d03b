import Foundation
import SkylarkCrypto
import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkOverlay

@Suite("SecureLink")
struct SecureLinkTests {
    let alice = Users.alice
    let bob = Users.bob
    let carol = Users.carol

    // MARK: - PEER handshake and traffic

    @Test("PEER handshake: both sides learn the other's name and node id", arguments: [false, true])
    func peerHandshake(byteAtATime: Bool) throws {
        for (initiator, responder) in [(alice, bob), (bob, alice)] {
            var pair = try LinkPair(initiator: initiator.identity, responder: responder.identity, byteAtATime: byteAtATime)
            pair.handshake()
            let atInitiator = try #require(pair.established(.initiator).first)
            let atResponder = try #require(pair.established(.responder).first)
            #expect(atInitiator.peer?.name == responder.name)
            #expect(atInitiator.peer?.nodeID == responder.nodeID)
            #expect(atInitiator.peer?.userPublicKey == responder.publicKey)
            #expect(atInitiator.purpose == .peer)
            #expect(atResponder.peer?.name == initiator.name)
            #expect(atResponder.peer?.nodeID == initiator.nodeID)
            #expect(atResponder.purpose == .peer)
            #expect(pair.closes(.initiator).isEmpty && pair.closes(.responder).isEmpty)
            #expect(pair.initiator.isEstablished && pair.responder.isEstablished)
            #expect(pair.initiator.peer?.name == responder.name)
            #expect(pair.responder.peer?.name == initiator.name)
            // Three plaintext frames: Hello, Finish from the initiator; HelloReply from the responder.
            #expect(pair.wire(.initiator).count == 2)
            #expect(pair.wire(.responder).count == 1)
        }
    }

    @Test("Many sealed messages arrive in order, both directions", arguments: [false, true])
    func trafficBothWays(byteAtATime: Bool) throws {
        var pair = try LinkPair(initiator: alice.identity, responder: bob.identity, byteAtATime: byteAtATime)
        pair.handshake()
        #expect(pair.initiator.isEstablished && pair.responder.isEstablished)
        pair.clearEvents()
        let count: UInt64 = byteAtATime ? 40 : 300
        for index in 1...count {
            try pair.send(searchMessage(id: index, name: "to-bob-\(index)"), from: .initiator)
            if index % 3 == 0 { try pair.send(searchMessage(id: 10_000 + index, name: "to-alice-\(index)"), from: .responder) }
        }
        for index in 1...count { try pair.send(pingMessage(id: 20_000 + index), from: .responder) }

        let atBob = pair.messages(.responder)
        let atAlice = pair.messages(.initiator)
        #expect(atBob.map(\.id) == Array(1...count))
        #expect(atBob.map(\.search.name) == (1...count).map { "to-bob-\($0)" })
        let expectedAtAlice = (1...count).filter { $0 % 3 == 0 }.map { 10_000 + $0 } + (1...count).map { 20_000 + $0 }
        #expect(atAlice.map(\.id) == expectedAtAlice)
        #expect(pair.closes(.initiator).isEmpty && pair.closes(.responder).isEmpty)
    }

    @Test("The counter nonce advances: the same message seals differently each time")
    func counterNonceAdvances() throws {
        var pair = try LinkPair(initiator: alice.identity, responder: bob.identity)
        pair.handshake()
        let first = try pair.initiator.seal(pingMessage(id: 1))
        let second = try pair.initiator.seal(pingMessage(id: 1))
        #expect(first != second)
        #expect(first.count == second.count)
        // Both open, in order, on the other side.
        pair.inject(first + second, to: .responder)
        #expect(pair.messages(.responder).map(\.id) == [1, 1])
        #expect(pair.closes(.responder).isEmpty)
    }

    @Test("The initiator may send right after its Finish: Finish and first frame in one read")
    func pipelinedFirstFrame() throws {
        var pair = try LinkPair(initiator: alice.identity, responder: bob.identity)
        pair.deliver = false
        _ = pair.responder.start()
        let hello = try #require(pair.initiator.start().first?.sentBytes)
        let reply = try #require(pair.responder.receive(hello, now: testNow).first?.sentBytes)
        let afterReply = pair.initiator.receive(reply, now: testNow)
        let finish = try #require(afterReply.first?.sentBytes)
        #expect(afterReply.contains { $0.establishedPeer != nil })
        let early = try pair.initiator.seal(pingMessage(id: 99))
        let actions = pair.responder.receive(finish + early, now: testNow)
        #expect(actions.count == 2)
        #expect(actions.first?.establishedPeer?.peer?.name == "alice")
        #expect(actions.last?.linkMessage?.id == 99)
    }

    @Test("SUPERNODE links need a supernode responder")
    func supernodePurpose() throws {
        var accepted = try LinkPair(initiator: alice.identity, purpose: .supernode, responder: bob.identity, responderIsSupernode: true)
        accepted.handshake()
        #expect(accepted.established(.responder).first?.purpose == .supernode)
        #expect(accepted.established(.responder).first?.peer?.name == "alice")
        #expect(accepted.established(.initiator).first?.peer?.name == "bob")

        var refused = try LinkPair(initiator: alice.identity, purpose: .supernode, responder: bob.identity, responderIsSupernode: false)
        refused.handshake()
        #expect(refused.established(.initiator).isEmpty && refused.established(.responder).isEmpty)
        #expect(refused.closes(.initiator).first?.isRefusedByPeer == true)
    }

    @Test("A PEER initiator without a credential fails at start")
    func peerNeedsCredential() throws {
        var link = try SecureLink(role: .initiator(purpose: .peer), identity: try alice.anonymous(), verifier: makeVerifier())
        let actions = link.start()
        #expect(actions.count == 1)
        #expect(actions.first?.closeError?.isHandshake == true)
        #expect(link.isClosed)
    }

    // MARK: - ANONYMOUS links and upgrade

    @Test("ANONYMOUS initiator: a supernode accepts it with no peer identity", arguments: [false, true])
    func anonymousAccepted(byteAtATime: Bool) throws {
        var pair = try LinkPair(
            initiator: try alice.anonymous(), purpose: .anonymous, responder: bob.identity,
            responderIsSupernode: true, byteAtATime: byteAtATime)
        pair.handshake()
        let atResponder = try #require(pair.established(.responder).first)
        #expect(atResponder.peer == nil)
        #expect(atResponder.purpose == .anonymous)
        #expect(pair.responder.peer == nil)
        // The anonymous client still authenticated the supernode.
        #expect(pair.established(.initiator).first?.peer?.name == "bob")
        try pair.send(pingMessage(id: 5), from: .initiator)
        try pair.send(pingMessage(id: 6), from: .responder)
        #expect(pair.messages(.responder).map(\.id) == [5])
        #expect(pair.messages(.initiator).map(\.id) == [6])
    }

    @Test("ANONYMOUS initiator: a non-supernode refuses and the initiator learns why")
    func anonymousRefused() throws {
        var pair = try LinkPair(initiator: try alice.anonymous(), purpose: .anonymous, responder: bob.identity, responderIsSupernode: false)
        pair.handshake()
        #expect(pair.established(.initiator).isEmpty && pair.established(.responder).isEmpty)
        let initiatorClose = try #require(pair.closes(.initiator).first)
        #expect(initiatorClose.isRefusedByPeer)
        #expect(initiatorClose.reason.contains("anonymous"))
        #expect(pair.closes(.responder).first?.isHandshake == true)
        // The refusal is a plaintext frame the responder actually sent.
        #expect(pair.wire(.responder).count == 1)
        #expect(pair.initiator.isClosed && pair.responder.isClosed)
        #expect(throws: SecureLink.LinkError.self) { try pair.initiator.seal(pingMessage(id: 1)) }
    }

    func anonymousPair(_ who: TestUser = Users.alice, byteAtATime: Bool = false) throws -> LinkPair {
        var pair = try LinkPair(
            initiator: try who.anonymous(), purpose: .anonymous, responder: Users.bob.identity,
            responderIsSupernode: true, byteAtATime: byteAtATime)
        pair.handshake()
        #expect(pair.established(.responder).first.map { $0.peer == nil } == true)
        pair.clearEvents()
        return pair
    }

    @Test(
        "Upgrade: Authenticate on an anonymous link yields .upgraded and an Ack; a second one is refused",
        arguments: [false, true])
    func upgrade(byteAtATime: Bool) throws {
        var pair = try anonymousPair(byteAtATime: byteAtATime)
        // Alice logged in through the link and now holds a credential for the same key.
        let authenticate = try pair.initiator.authenticateMessage(requestID: 41, identity: alice.identity)
        try pair.send(authenticate, from: .initiator)
        let upgraded = try #require(pair.upgrades(.responder).first)
        #expect(upgraded.name == "alice")
        #expect(upgraded.nodeID == alice.nodeID)
        #expect(pair.responder.peer?.name == "alice")
        #expect(pair.messages(.responder).isEmpty, "an Authenticate is consumed by the link, not passed up")
        let ack = try #require(pair.messages(.initiator).first)
        #expect(ack.id == 41)
        if case .ack? = ack.body {} else { Issue.record("expected an Ack, got \(String(describing: ack.body))") }

        pair.clearEvents()
        let again = try pair.initiator.authenticateMessage(requestID: 42, identity: alice.identity)
        try pair.send(again, from: .initiator)
        #expect(pair.upgrades(.responder).isEmpty)
        let refused = try #require(pair.messages(.initiator).first)
        #expect(refused.id == 42)
        #expect(refused.refused.code == .notAllowed)
        #expect(pair.closes(.initiator).isEmpty && pair.closes(.responder).isEmpty)
        // The link still works after the refusal.
        try pair.send(pingMessage(id: 43), from: .initiator)
        #expect(pair.messages(.responder).map(\.id) == [43])
    }

    @Test("Upgrade: an Authenticate made for another link's transcript is refused")
    func upgradeFromAnotherLink() throws {
        var victim = try anonymousPair()
        let other = try anonymousPair()
        // Signed over the other link's transcript, by a real key with a real credential.
        let stolen = try other.initiator.authenticateMessage(requestID: 7, identity: alice.identity)
        try victim.send(stolen, from: .initiator)
        #expect(victim.upgrades(.responder).isEmpty)
        #expect(victim.responder.peer == nil)
        let answer = try #require(victim.messages(.initiator).first)
        #expect(answer.id == 7)
        #expect(answer.refused.code == .invalid)

        // The genuine one for this link still works afterwards.
        victim.clearEvents()
        try victim.send(try victim.initiator.authenticateMessage(requestID: 8, identity: alice.identity), from: .initiator)
        #expect(victim.upgrades(.responder).first?.name == "alice")
    }

    @Test("Upgrade: forged or expired credentials and wrong-key signatures are refused")
    func upgradeWithBadCredential() throws {
        let forged = try TestUser("mallory", signer: TestKeys.other)
        let expired = try TestUser("dave", issuedAt: Int64(testNow) - 7200, lifetime: 3600)
        // Carol's credential, but the signature made with another key.
        let wrongKey = try LocalIdentity(key: try Ed25519.PrivateKey(), credential: carol.credential)
        for identity in [forged.identity, expired.identity, wrongKey] {
            var pair = try anonymousPair()
            try pair.send(try pair.initiator.authenticateMessage(requestID: 3, identity: identity), from: .initiator)
            #expect(pair.upgrades(.responder).isEmpty)
            #expect(pair.responder.peer == nil)
            #expect(pair.messages(.initiator).first?.refused.code == .invalid)
        }
    }

    @Test("authenticateMessage needs an established link and a credential")
    func authenticateMessagePreconditions() throws {
        let idle = try SecureLink(role: .initiator(purpose: .anonymous), identity: try alice.anonymous(), verifier: makeVerifier())
        #expect(throws: SecureLink.LinkError.self) { try idle.authenticateMessage(requestID: 1, identity: alice.identity) }
        let pair = try anonymousPair()
        #expect(throws: SecureLink.LinkError.self) { try pair.initiator.authenticateMessage(requestID: 1, identity: try alice.anonymous()) }
    }

    @Test("An Authenticate on a PEER link is refused: the peer is already known")
    func authenticateOnPeerLink() throws {
        var pair = try LinkPair(initiator: alice.identity, responder: bob.identity)
        pair.handshake()
        pair.clearEvents()
        try pair.send(try pair.initiator.authenticateMessage(requestID: 9, identity: carol.identity), from: .initiator)
        #expect(pair.upgrades(.responder).isEmpty)
        #expect(pair.responder.peer?.name == "alice")
        #expect(pair.messages(.initiator).first?.refused.code == .notAllowed)
    }

    // MARK: - DIAL_BACK

    @Test("DIAL_BACK: the responder reports the nonce and both sides close as complete", arguments: [false, true])
    func dialBack(byteAtATime: Bool) throws {
        let nonce = Array("dial-back-nonce-0123456789abcdef".utf8)
        // The probed node is not (yet) a supernode.
        var pair = try LinkPair(
            initiator: bob.identity, purpose: .dialBack, dialBackNonce: nonce, responder: alice.identity,
            responderIsSupernode: false, byteAtATime: byteAtATime)
        pair.handshake()
        let responderEvents = pair.events(.responder)
        #expect(responderEvents.compactMap(\.dialBackNonce) == [nonce])
        #expect(pair.closes(.responder) == [.dialBackComplete])
        #expect(pair.closes(.initiator) == [.dialBackComplete])
        #expect(pair.established(.initiator).isEmpty && pair.established(.responder).isEmpty)
        #expect(pair.wire(.initiator).count == 1, "the prober sends only its Hello")
        #expect(pair.initiator.isClosed && pair.responder.isClosed)
    }

    @Test("DIAL_BACK: the prober still checks the answering node's credential")
    func dialBackChecksCredential() throws {
        let forged = try TestUser("alice", signer: TestKeys.other)
        var pair = try LinkPair(initiator: bob.identity, purpose: .dialBack, dialBackNonce: [1, 2, 3], responder: forged.identity)
        pair.handshake()
        #expect(pair.closes(.initiator).first?.isHandshake == true)
    }

    @Test("DIAL_BACK: an oversized nonce is refused")
    func dialBackOversizedNonce() throws {
        var pair = try LinkPair(
            initiator: bob.identity, purpose: .dialBack, dialBackNonce: [UInt8](repeating: 1, count: 65),
            responder: alice.identity)
        pair.handshake()
        #expect(pair.events(.responder).compactMap(\.dialBackNonce).isEmpty)
        #expect(pair.closes(.responder).first?.isHandshake == true)
    }

    // MARK: - Forged and invalid credentials

    @Test("A responder credential signed by another login key is refused by the initiator")
    func forgedResponderCredential() throws {
        let forgedBob = try TestUser("bob", signer: TestKeys.other)
        var pair = try LinkPair(initiator: alice.identity, responder: forgedBob.identity)
        pair.handshake()
        let close = try #require(pair.closes(.initiator).first)
        #expect(close.isHandshake)
        #expect(close.reason.contains("responder credential"))
        #expect(pair.established(.initiator).isEmpty && pair.established(.responder).isEmpty)
        #expect(pair.wire(.initiator).count == 1, "no Finish after a bad reply")
    }

    @Test("An initiator credential signed by another login key is refused by the responder")
    func forgedInitiatorCredential() throws {
        let forgedAlice = try TestUser("alice", signer: TestKeys.other)
        var pair = try LinkPair(initiator: forgedAlice.identity, responder: bob.identity)
        pair.handshake()
        let close = try #require(pair.closes(.responder).first)
        #expect(close.isHandshake)
        #expect(close.reason.contains("initiator credential"))
        #expect(pair.established(.responder).isEmpty)
        #expect(!pair.responder.isEstablished)
        #expect(pair.responder.peer == nil)
    }

    @Test("Expired credentials are refused on either side")
    func expiredCredentials() throws {
        let stale = try TestUser("erin", issuedAt: Int64(testNow) - 10 * 86_400, lifetime: 3600)
        var staleResponder = try LinkPair(initiator: alice.identity, responder: stale.identity)
        staleResponder.handshake()
        #expect(staleResponder.closes(.initiator).first?.isHandshake == true)
        #expect(staleResponder.closes(.initiator).first?.reason.contains("expired") == true)
        #expect(staleResponder.established(.initiator).isEmpty)

        var staleInitiator = try LinkPair(initiator: stale.identity, responder: bob.identity)
        staleInitiator.handshake()
        #expect(staleInitiator.closes(.responder).first?.isHandshake == true)
        #expect(staleInitiator.closes(.responder).first?.reason.contains("expired") == true)
        #expect(staleInitiator.established(.responder).isEmpty)

        // Valid until one second ago: refused; valid for one more second: accepted.
        let justExpired = try TestUser("frank", issuedAt: Int64(testNow) - 3600, lifetime: 3599)
        var late = try LinkPair(initiator: alice.identity, responder: justExpired.identity)
        late.handshake()
        #expect(late.established(.initiator).isEmpty)
        let stillValid = try TestUser("grace", issuedAt: Int64(testNow) - 3600, lifetime: 3601)
        var inTime = try LinkPair(initiator: alice.identity, responder: stillValid.identity)
        inTime.handshake()
        #expect(inTime.established(.initiator).count == 1 && inTime.established(.responder).count == 1)
    }

    @Test("A credential issued beyond the clock skew in the future is refused")
    func notYetValidCredential() throws {
        let future = try TestUser("heidi", issuedAt: Int64(testNow) + 3600)
        var pair = try LinkPair(initiator: alice.identity, responder: future.identity)
        pair.handshake()
        #expect(pair.closes(.initiator).first?.isHandshake == true)
        #expect(pair.established(.initiator).isEmpty)
    }

    @Test("expectedPeer: reaching another node than expected closes the link")
    func expectedPeerMismatch() throws {
        var wrong = try LinkPair(initiator: alice.identity, expectedPeer: carol.nodeID, responder: bob.identity)
        wrong.handshake()
        #expect(wrong.closes(.initiator).first?.isHandshake == true)
        #expect(wrong.established(.initiator).isEmpty)
        #expect(wrong.wire(.initiator).count == 1, "no Finish to the wrong node")

        var right = try LinkPair(initiator: alice.identity, expectedPeer: bob.nodeID, responder: bob.identity)
        right.handshake()
        #expect(right.established(.initiator).first?.peer?.nodeID == bob.nodeID)
        #expect(right.established(.responder).count == 1)
    }

    @Test("A HelloReply signed by another key than the credential certifies is refused")
    func replySignedByWrongKey() throws {
        // Mallory holds Bob's (public) credential but not Bob's key.
        let impostor = try LocalIdentity(key: try Ed25519.PrivateKey(), credential: bob.credential)
        var pair = try LinkPair(initiator: alice.identity, responder: impostor)
        pair.handshake()
        let close = try #require(pair.closes(.initiator).first)
        #expect(close.isHandshake)
        #expect(close.reason.contains("signature"))
        #expect(pair.established(.initiator).isEmpty)
    }

    @Test("A Finish signed by another key than the credential certifies is refused")
    func finishSignedByWrongKey() throws {
        let impostor = try LocalIdentity(key: try Ed25519.PrivateKey(), credential: alice.credential)
        var pair = try LinkPair(initiator: impostor, responder: bob.identity)
        pair.handshake()
        #expect(pair.closes(.responder).first?.isHandshake == true)
        #expect(pair.closes(.responder).first?.reason.contains("signature") == true)
        #expect(pair.established(.responder).isEmpty)
    }

    @Test("A recorded HelloReply replayed to a new initiator is refused")
    func replayedHelloReply() throws {
        var recorded = try LinkPair(initiator: alice.identity, responder: bob.identity)
        recorded.handshake()
        #expect(recorded.established(.initiator).count == 1)
        let reply = try #require(recorded.wire(.responder).first)

        // A new initiator (new ephemeral key) gets the old reply from an attacker.
        var fresh = try SecureLink(role: .initiator(purpose: .peer), identity: alice.identity, verifier: makeVerifier())
        _ = fresh.start()
        let actions = fresh.receive(reply, now: testNow + 5)
        #expect(actions.compactMap(\.sentBytes).isEmpty, "no Finish to a replayed reply")
        #expect(actions.contains { $0.establishedPeer != nil } == false)
        #expect(actions.first?.closeError?.isHandshake == true)
        #expect(fresh.isClosed)
    }

    @Test("A recorded Hello and Finish replayed to a fresh responder fail at the Finish")
    func replayedHelloAndFinish() throws {
        var recorded = try LinkPair(initiator: alice.identity, responder: bob.identity)
        recorded.handshake()
        #expect(recorded.established(.responder).count == 1)
        let hello = recorded.wire(.initiator)[0]
        let finish = recorded.wire(.initiator)[1]

        var fresh = try SecureLink(role: .responder(isSupernode: false), identity: bob.identity, verifier: makeVerifier())
        _ = fresh.start()
        let afterHello = fresh.receive(hello, now: testNow + 5)
        #expect(afterHello.compactMap(\.sentBytes).count == 1, "the responder answers the Hello with a new ephemeral key")
        let afterFinish = fresh.receive(finish, now: testNow + 5)
        #expect(afterFinish.contains { $0.establishedPeer != nil } == false)
        let close = try #require(afterFinish.first?.closeError)
        #expect(close.isHandshake)
        #expect(close.reason.contains("signature"))
        #expect(!fresh.isEstablished)

        // Control: with the very same ephemeral key the recording would be accepted, so it is the
        // new ephemeral that defeats the replay (and the signature check really runs).
        let ephemeral = try X25519.PrivateKey()
        var original = LinkPair(
            initiator: try SecureLink(role: .initiator(purpose: .peer), identity: alice.identity, verifier: makeVerifier()),
            responder: try SecureLink(
                role: .responder(isSupernode: false), identity: bob.identity,
                verifier: makeVerifier(), ephemeral: ephemeral))
        original.handshake()
        var sameEphemeral = try SecureLink(
            role: .responder(isSupernode: false), identity: bob.identity, verifier: makeVerifier(),
            ephemeral: ephemeral)
        _ = sameEphemeral.start()
        _ = sameEphemeral.receive(original.wire(.initiator)[0], now: testNow)
        let replayed = sameEphemeral.receive(original.wire(.initiator)[1], now: testNow)
        #expect(replayed.first?.establishedPeer?.peer?.name == "alice")
    }

    @Test("A responder that is not logged in refuses every link")
    func responderWithoutCredential() throws {
        var pair = try LinkPair(initiator: alice.identity, responder: try bob.anonymous(), responderIsSupernode: true)
        pair.handshake()
        #expect(pair.closes(.initiator).first?.isRefusedByPeer == true)
        #expect(pair.established(.responder).isEmpty)
    }

    @Test("An anonymous Finish that carries a credential is refused")
    func anonymousFinishWithCredential() throws {
        var pair = try LinkPair(initiator: try alice.anonymous(), purpose: .anonymous, responder: bob.identity, responderIsSupernode: true)
        pair.deliver = false
        _ = pair.responder.start()
        let hello = try #require(pair.initiator.start().first?.sentBytes)
        let reply = pair.responder.receive(hello, now: testNow)
        #expect(reply.count == 1)
        var finish = OvFinish()
        finish.credential = alice.signed
        var frame = OvHandshakeFrame()
        frame.finish = finish
        let actions = pair.responder.receive(try MessageEncoder.encode(frame), now: testNow)
        #expect(actions.first?.closeError?.isHandshake == true)
        #expect(!pair.responder.isEstablished)
    }

    @Test("A Hello whose purpose is changed in transit (PEER -> ANONYMOUS downgrade) fails the handshake")
    func downgradedHello() throws {
        var pair = try LinkPair(initiator: alice.identity, responder: bob.identity, responderIsSupernode: true)
        pair.deliver = false
        _ = pair.responder.start()
        let helloBytes = try #require(pair.initiator.start().first?.sentBytes)
        var frame = try OvHandshakeFrame(serializedBytes: Array(helloBytes.dropFirst(Framing.headerByteCount)))
        #expect(frame.hello.purpose == .peer)
        frame.hello.purpose = .anonymous
        let reply = pair.responder.receive(try MessageEncoder.encode(frame), now: testNow)
        let replyBytes = try #require(reply.first?.sentBytes, "the responder answers the altered Hello")
        let atInitiator = pair.initiator.receive(replyBytes, now: testNow)
        #expect(atInitiator.first?.closeError?.isHandshake == true)
        #expect(atInitiator.compactMap(\.sentBytes).isEmpty, "no Finish")
        #expect(!pair.initiator.isEstablished && !pair.responder.isEstablished)
    }

    @Test("A Hello with an unknown version or purpose is refused with a refusal frame", arguments: [(2 as UInt32, 0), (1, 9)])
    func unknownVersionOrPurpose(version: UInt32, purpose: Int) throws {
        var responder = try SecureLink(role: .responder(isSupernode: true), identity: bob.identity, verifier: makeVerifier())
        _ = responder.start()
        var frame = OvHandshakeFrame()
        frame.hello.version = version
        frame.hello.purpose = OvLinkPurpose(rawValue: purpose) ?? .UNRECOGNIZED(purpose)
        frame.hello.ephemeralKey = Data(try X25519.PrivateKey().publicKey())
        let actions = responder.receive(try MessageEncoder.encode(frame), now: testNow)
        let sent = try #require(actions.first?.sentBytes)
        let answer = try OvHandshakeFrame(serializedBytes: Array(sent.dropFirst(Framing.headerByteCount)))
        if case .refusal? = answer.body {} else { Issue.record("expected a refusal, got \(String(describing: answer.body))") }
        #expect(actions.last?.closeError?.isHandshake == true)
        #expect(responder.isClosed)
    }

    // MARK: - Tampering after establishment

    func establishedPair() throws -> LinkPair {
        var pair = try LinkPair(initiator: alice.identity, responder: bob.identity)
        pair.handshake()
        #expect(pair.initiator.isEstablished && pair.responder.isEstablished)
        pair.clearEvents()
        return pair
    }

    @Test("One flipped bit anywhere in a sealed frame's body closes the link with .decryption")
    func flippedBit() throws {
        let template = try establishedPair()
        var sample = template
        let frame = try sample.initiator.seal(searchMessage(id: 1, name: "hello"))
        // Every bit after the 4-byte length header: ciphertext and tag.
        for bit in stride(from: Framing.headerByteCount * 8, to: frame.count * 8, by: 7) {
            var pair = template
            let sealed = try pair.initiator.seal(searchMessage(id: 1, name: "hello"))
            #expect(sealed.count == frame.count)
            pair.inject(flipping(sealed, bit: bit), to: .responder)
            #expect(pair.closes(.responder) == [.decryption], "bit \(bit)")
            #expect(pair.messages(.responder).isEmpty)
            #expect(pair.responder.isClosed)
        }
        // Control: the untouched frame opens.
        var pair = template
        let sealed = try pair.initiator.seal(searchMessage(id: 1, name: "hello"))
        pair.inject(sealed, to: .responder)
        #expect(pair.messages(.responder).map(\.search.name) == ["hello"])
    }

    @Test("A frame delivered twice closes the link with .decryption")
    func replayedFrame() throws {
        var pair = try establishedPair()
        let first = try pair.initiator.seal(pingMessage(id: 1))
        pair.inject(first, to: .responder)
        #expect(pair.messages(.responder).map(\.id) == [1])
        pair.inject(first, to: .responder)
        #expect(pair.closes(.responder) == [.decryption])
        #expect(pair.messages(.responder).map(\.id) == [1], "the replay is not delivered")
        // Nothing more is accepted once closed.
        let second = try pair.initiator.seal(pingMessage(id: 2))
        #expect(pair.responder.receive(second, now: testNow).isEmpty)
    }

    @Test("Frames swapped in transit close the link")
    func reorderedFrames() throws {
        var pair = try establishedPair()
        let first = try pair.initiator.seal(pingMessage(id: 1))
        let second = try pair.initiator.seal(pingMessage(id: 2))
        pair.inject(second + first, to: .responder)
        #expect(pair.closes(.responder) == [.decryption])
        #expect(pair.messages(.responder).isEmpty)
    }

    @Test("A dropped frame makes the next one fail")
    func droppedFrame() throws {
        var pair = try establishedPair()
        _ = try pair.initiator.seal(pingMessage(id: 1))
        pair.inject(try pair.initiator.seal(pingMessage(id: 2)), to: .responder)
        #expect(pair.closes(.responder) == [.decryption])
    }

    @Test("A frame reflected back to its sender fails (one key per direction)")
    func reflectedFrame() throws {
        var pair = try establishedPair()
        let frame = try pair.initiator.seal(pingMessage(id: 1))
        pair.inject(frame, to: .initiator)
        #expect(pair.closes(.initiator) == [.decryption])
    }

    @Test(
        "Garbage before the handshake closes the link",
        arguments: [
            [0, 0, 0, 5, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF] as [UInt8],
            [0, 0, 0, 0] as [UInt8],
            [0, 0, 0, 3, 0x0A, 0x01, 0x00] as [UInt8],
            Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8),
        ])
    func garbageBeforeHandshake(garbage: [UInt8]) throws {
        var responder = try SecureLink(role: .responder(isSupernode: true), identity: bob.identity, verifier: makeVerifier())
        _ = responder.start()
        let atResponder = responder.receive(garbage, now: testNow)
        #expect(atResponder.compactMap(\.closeError).count == 1)
        #expect(!atResponder.contains { $0.establishedPeer != nil })
        #expect(responder.isClosed)

        var initiator = try SecureLink(role: .initiator(purpose: .peer), identity: alice.identity, verifier: makeVerifier())
        _ = initiator.start()
        let atInitiator = initiator.receive(garbage, now: testNow)
        #expect(atInitiator.compactMap(\.closeError).count == 1)
        #expect(atInitiator.compactMap(\.sentBytes).isEmpty)
        #expect(initiator.isClosed)
    }

    @Test("Bytes before start() close the link")
    func bytesBeforeStart() throws {
        var responder = try SecureLink(role: .responder(isSupernode: true), identity: bob.identity, verifier: makeVerifier())
        var hello = OvHandshakeFrame()
        hello.hello = OvHello()
        let actions = responder.receive(try MessageEncoder.encode(hello), now: testNow)
        #expect(actions.first?.closeError != nil)
        #expect(responder.isClosed)
    }

    @Test("A frame header above 256 KiB closes the link at once; exactly 256 KiB waits for the body")
    func oversizedFrameHeader() throws {
        let limit = SecureLink.maximumFrameSize
        #expect(limit == 256 * 1024)
        func header(_ length: Int) -> [UInt8] { [UInt8(length >> 24 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)] }

        var established = try establishedPair()
        established.inject(header(limit + 1), to: .responder)
        #expect(established.closes(.responder).first?.isWire == true)

        var atLimit = try establishedPair()
        atLimit.inject(header(limit), to: .responder)
        #expect(atLimit.closes(.responder).isEmpty)
        #expect(!atLimit.responder.isClosed)

        var handshaking = try SecureLink(role: .responder(isSupernode: true), identity: bob.identity, verifier: makeVerifier())
        _ = handshaking.start()
        #expect(handshaking.receive(header(Int(UInt32.max)), now: testNow).first?.closeError?.isWire == true)
    }

    @Test("End of input: during the handshake it is a handshake failure, afterwards a closed link")
    func endOfInput() throws {
        var initiator = try SecureLink(role: .initiator(purpose: .peer), identity: alice.identity, verifier: makeVerifier())
        _ = initiator.start()
        #expect(initiator.endOfInput().first?.closeError?.isHandshake == true)
        #expect(initiator.endOfInput().isEmpty)

        var pair = try establishedPair()
        #expect(pair.responder.endOfInput().first?.closeError?.isWire == true)
        #expect(pair.responder.isClosed)
    }

    @Test("seal before establishment throws")
    func sealBeforeEstablishment() throws {
        var idle = try SecureLink(role: .initiator(purpose: .peer), identity: alice.identity, verifier: makeVerifier())
        #expect(throws: SecureLink.LinkError.self) { try idle.seal(pingMessage(id: 1)) }
        _ = idle.start()
        #expect(throws: SecureLink.LinkError.self) { try idle.seal(pingMessage(id: 1)) }
        var responder = try SecureLink(role: .responder(isSupernode: false), identity: bob.identity, verifier: makeVerifier())
        _ = responder.start()
        #expect(throws: SecureLink.LinkError.self) { try responder.seal(pingMessage(id: 1)) }
    }

    @Test("A message too large to seal throws, and the link stays usable")
    func oversizedMessage() throws {
        var pair = try establishedPair()
        var big = OvLinkMessage()
        big.id = 1
        var relay = OvLoginRelay()
        relay.request = Data(count: SecureLink.maximumFrameSize + 1)
        big.loginRelay = relay
        #expect(throws: (any Error).self) { try pair.initiator.seal(big) }
        #expect(pair.initiator.isEstablished)
        // The next message must still reach the peer: a refused message costs no nonce.
        try pair.send(pingMessage(id: 2), from: .initiator)
        #expect(pair.messages(.responder).map(\.id) == [2])
        #expect(pair.closes(.responder).isEmpty)
    }

    @Test("Deterministic pseudo-random garbage never crashes and never yields a peer or a message")
    func garbageFuzz() throws {
        var random = SplitMix64(seed: 0x5EC0_11E5)
        let established = try establishedPair()
        var handshakeFrames: [[UInt8]] = []
        do {
            var recorded = try LinkPair(initiator: alice.identity, responder: bob.identity)
            recorded.handshake()
            handshakeFrames = recorded.wire(.initiator) + recorded.wire(.responder)
        }
        for round in 0..<300 {
            // Either pure noise, or a well-framed random body, or a real frame with random bit flips.
            let body: [UInt8]
            switch round % 3 {
            case 0:
                body = random.bytes(Int(random.next() % 200))
            case 1:
                let payload = random.bytes(Int(random.next() % 120))
                body = try Framing.encode(payload, maximumFrameSize: SecureLink.maximumFrameSize)
            default:
                var frame = handshakeFrames[Int(random.next() % UInt64(handshakeFrames.count))]
                for _ in 0...(random.next() % 4) { frame = flipping(frame, bit: Int(random.next() % UInt64(frame.count * 8))) }
                body = frame
            }
            var links: [SecureLink] = [
                try SecureLink(role: .responder(isSupernode: round % 2 == 0), identity: bob.identity, verifier: makeVerifier()),
                try SecureLink(role: .initiator(purpose: round % 2 == 0 ? .peer : .anonymous), identity: alice.identity, verifier: makeVerifier()),
                established.responder,
                established.initiator,
            ]
            for index in links.indices {
                _ = links[index].start()
                var actions: [SecureLink.Action] = []
                var offset = 0
                while offset < body.count {
                    let chunk = Int(random.next() % 17) + 1
                    actions += links[index].receive(body[offset..<min(body.count, offset + chunk)], now: testNow)
                    offset += chunk
                }
                #expect(
                    !actions.contains { $0.establishedPeer != nil || $0.linkMessage != nil || $0.upgradedPeer != nil },
                    "round \(round), link \(index)")
                #expect(actions.compactMap(\.closeError).count <= 1)
                if links[index].isClosed { #expect(links[index].receive(random.bytes(8), now: testNow).isEmpty) }
            }
        }
    }
}
