import Foundation
import SkylarkCrypto
import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkOverlay

@Suite("SignedRecords")
struct SignedRecordsTests {
    let alice = Users.alice
    let bob = Users.bob
    let verifier = makeVerifier()
    var validator: OverlayRecordValidator { OverlayRecordValidator(verifier: verifier) }

    // MARK: - Presence

    @Test("Presence: a signed record verifies and comes back intact")
    func presenceRoundTrip() throws {
        let supernode = NodeID(bytes: [UInt8](repeating: 0x42, count: 20))
        let record = presenceRecord(name: "alice", sequence: 7, supernode: supernode)
        let signed = try SignedRecords.signPresence(record, identity: alice.identity)
        let (verified, credential) = try SignedRecords.verifyPresence(signed, verifier: verifier, now: testNow + 10)
        #expect(verified == record)
        #expect(credential.name == "alice")
        #expect(credential.nodeID == alice.credential.nodeID)
        // It survives serialisation as it travels.
        let decoded = try OvSignedPresence(serializedBytes: try signed.serializedBytes() as [UInt8])
        #expect(try SignedRecords.verifyPresence(decoded, verifier: verifier, now: testNow).record.sequence == 7)
    }

    @Test("Presence: signing needs a credential")
    func presenceNeedsCredential() throws {
        #expect(throws: RecordError.self) {
            try SignedRecords.signPresence(presenceRecord(name: "alice"), identity: try alice.anonymous())
        }
    }

    @Test("Presence: a record naming another user than the credential is refused")
    func presenceNameMismatch() throws {
        let signed = try SignedRecords.signPresence(presenceRecord(name: "bob"), identity: alice.identity)
        #expect(recordError { try SignedRecords.verifyPresence(signed, verifier: verifier, now: testNow) } == .nameMismatch)
    }

    @Test("Presence: any tampered byte of the record breaks the signature")
    func presenceTampered() throws {
        var signed = try SignedRecords.signPresence(presenceRecord(name: "alice", sequence: 3), identity: alice.identity)
        let original = signed.record
        for bit in stride(from: 0, to: original.count * 8, by: 5) {
            signed.record = flipping(original, bit: bit)
            #expect(recordError { try SignedRecords.verifyPresence(signed, verifier: verifier, now: testNow) } == .badSignature, "bit \(bit)")
        }
        // Re-serialising a changed record (a higher sequence) without re-signing: refused too.
        var changed = presenceRecord(name: "alice", sequence: 4)
        changed.status = .away
        signed.record = Data(try changed.serializedBytes() as [UInt8])
        #expect(recordError { try SignedRecords.verifyPresence(signed, verifier: verifier, now: testNow) } == .badSignature)
        // A flipped signature bit as well.
        var badSignature = try SignedRecords.signPresence(presenceRecord(name: "alice"), identity: alice.identity)
        badSignature.signature = flipping(badSignature.signature, bit: 100)
        #expect(recordError { try SignedRecords.verifyPresence(badSignature, verifier: verifier, now: testNow) } == .badSignature)
    }

    @Test("Presence: Bob's credential on Alice's signed record is refused")
    func presenceSwappedCredential() throws {
        var signed = try SignedRecords.signPresence(presenceRecord(name: "alice"), identity: alice.identity)
        signed.credential = bob.signed
        #expect(recordError { try SignedRecords.verifyPresence(signed, verifier: verifier, now: testNow) } == .badSignature)
    }

    @Test("Presence: a credential signed by another login key is refused")
    func presenceForgedCredential() throws {
        let mallory = try TestUser("alice", signer: TestKeys.other)
        let signed = try SignedRecords.signPresence(presenceRecord(name: "alice"), identity: mallory.identity)
        #expect(recordError { try SignedRecords.verifyPresence(signed, verifier: verifier, now: testNow) } == .credential(.badSignature))
    }

    @Test("Presence: expired records are stale, the boundary is exclusive")
    func presenceStale() throws {
        let signed = try SignedRecords.signPresence(presenceRecord(name: "alice", publishedAt: testNow, lifetime: 600), identity: alice.identity)
        #expect(recordError { try SignedRecords.verifyPresence(signed, verifier: verifier, now: testNow + 599.9) } == nil)
        #expect(recordError { try SignedRecords.verifyPresence(signed, verifier: verifier, now: testNow + 600) } == .stale)
        #expect(recordError { try SignedRecords.verifyPresence(signed, verifier: verifier, now: testNow + 3000) } == .stale)
    }

    @Test("Presence: published beyond the clock skew in the future is refused")
    func presenceFromTheFuture() throws {
        let far = try SignedRecords.signPresence(presenceRecord(name: "alice", publishedAt: testNow + 301), identity: alice.identity)
        #expect(recordError { try SignedRecords.verifyPresence(far, verifier: verifier, now: testNow) } == .fromTheFuture)
        let withinSkew = try SignedRecords.signPresence(presenceRecord(name: "alice", publishedAt: testNow + 299), identity: alice.identity)
        #expect(recordError { try SignedRecords.verifyPresence(withinSkew, verifier: verifier, now: testNow) } == nil)
    }

    @Test("Presence: a lifetime above one hour is malformed")
    func presenceLifetime() throws {
        let tooLong = try SignedRecords.signPresence(presenceRecord(name: "alice", lifetime: 3601), identity: alice.identity)
        #expect(recordError { try SignedRecords.verifyPresence(tooLong, verifier: verifier, now: testNow) }?.isMalformed == true)
        let oneHour = try SignedRecords.signPresence(presenceRecord(name: "alice", lifetime: 3600), identity: alice.identity)
        #expect(recordError { try SignedRecords.verifyPresence(oneHour, verifier: verifier, now: testNow) } == nil)
    }

    @Test("Presence: undecodable record bytes that are correctly signed are malformed")
    func presenceUndecodable() throws {
        var signed = OvSignedPresence()
        signed.record = Data([0xFF, 0xFF, 0xFF])
        signed.credential = alice.signed
        signed.signature = Data(try alice.key.sign(Array("skylark-presence-v1".utf8) + [0xFF, 0xFF, 0xFF]))
        #expect(recordError { try SignedRecords.verifyPresence(signed, verifier: verifier, now: testNow) }?.isMalformed == true)
    }

    @Test("Presence: extreme timestamps are refused without crashing", .timeLimit(.minutes(1)))
    func presenceExtremeTimestamps() async throws {
        // A logged-in user controls every field of its own presence record. Publishing one with
        // expires_at_ms = Int64.max and published_at_ms < 0 must be refused, not crash the
        // supernode (`expiresAtMs - publishedAtMs` overflows in SignedRecords.swift).
        // Control, in process: the same record with published_at_ms = 0 reaches the lifetime check
        // and is refused there (no overflow: Int64.max - 0).
        var control = presenceRecord(name: "alice")
        control.publishedAtMs = 0
        control.expiresAtMs = .max
        let signedControl = try SignedRecords.signPresence(control, identity: alice.identity)
        #expect(recordError { try SignedRecords.verifyPresence(signedControl, verifier: verifier, now: testNow) }?.isMalformed == true)
        // In a child process, so that a regression would show as a crash, not kill the run.
        await #expect(processExitsWith: .success) {
            let alice = try TestUser("alice")
            var record = presenceRecord(name: "alice")
            record.publishedAtMs = -1_000
            record.expiresAtMs = .max
            let signed = try SignedRecords.signPresence(record, identity: alice.identity)
            let error = recordError { try SignedRecords.verifyPresence(signed, verifier: makeVerifier(), now: testNow) }
            guard error != nil else { exit(2) }
        }
    }

    @Test("Validator: a presence record is accepted only under presenceKey(name)")
    func validatorPresenceKey() throws {
        let supernode = NodeID(bytes: [UInt8](repeating: 0x21, count: 20))
        let signed = try SignedRecords.signPresence(presenceRecord(name: "alice", sequence: 9, supernode: supernode), identity: alice.identity)
        let record = try OvDHTRecord.presence(signed, name: "alice")
        #expect(NodeID(bytes: record.key) == NodeID.presenceKey(for: "alice"))
        let info = try #require(validator.validate(record, now: testNow))
        #expect(info.key == NodeID.presenceKey(for: "alice"))
        #expect(info.kind == .presence)
        #expect(info.sequence == 9)
        #expect(info.owner == "alice")
        #expect(info.supernode == supernode)
        #expect(info.itemID.isEmpty)
        #expect(info.expiresAt == testNow + 600)

        for wrongKey in [NodeID.presenceKey(for: "bob"), NodeID.mailboxKey(for: "alice"), NodeID.presenceKey(for: "Alice")] {
            var moved = record
            moved.key = Data(wrongKey.bytes)
            #expect(validator.validate(moved, now: testNow) == nil)
        }
        // The same bytes declared as a mailbox item, or as an unknown kind: refused.
        var asMailbox = record
        asMailbox.kind = .mailboxItem
        #expect(validator.validate(asMailbox, now: testNow) == nil)
        var unspecified = record
        unspecified.kind = .unspecified
        #expect(validator.validate(unspecified, now: testNow) == nil)
        // Stale: refused.
        #expect(validator.validate(record, now: testNow + 601) == nil)
    }

    // MARK: - Envelopes

    func envelope(
        kind: OvEnvelopeKind = .message, from identity: LocalIdentity? = nil, to: String = "bob",
        payload: [UInt8] = Array("sealed text".utf8), at time: Double = testNow
    ) throws -> OvEnvelope {
        try SignedRecords.makeEnvelope(kind: kind, to: to, payload: payload, identity: identity ?? alice.identity, now: time)
    }

    @Test("Envelope: made and verified")
    func envelopeRoundTrip() throws {
        let made = try envelope()
        #expect(made.id.count == 16)
        #expect(made.from == "alice")
        #expect(made.to == "bob")
        #expect(made.sentAtMs == Int64(testNow * 1000))
        let credential = try SignedRecords.verifyEnvelope(made, verifier: verifier, now: testNow + 1)
        #expect(credential.name == "alice")
        let decoded = try OvEnvelope(serializedBytes: try made.serializedBytes() as [UInt8])
        #expect(recordError { try SignedRecords.verifyEnvelope(decoded, verifier: verifier, now: testNow) } == nil)
        // Ids are random.
        #expect(try envelope().id != made.id)
    }

    @Test("Envelope: `from` other than the credential's name is refused, even when signed")
    func envelopeFromMismatch() throws {
        var forged = try envelope()
        forged.from = "carol"
        #expect(recordError { try SignedRecords.verifyEnvelope(forged, verifier: verifier, now: testNow) } == .nameMismatch)
        // Re-signed by Alice's own key over the forged header: still not Carol.
        forged.signature = Data(try alice.key.sign(SignedRecords.signingInput(forged)))
        #expect(recordError { try SignedRecords.verifyEnvelope(forged, verifier: verifier, now: testNow) } == .nameMismatch)
    }

    @Test("Envelope: tampered payload, recipient, kind, time or id break the signature")
    func envelopeTampered() throws {
        let original = try envelope()
        var payload = original
        payload.payload = flipping(original.payload, bit: 3)
        var recipient = original
        recipient.to = "carol"
        var kind = original
        kind.kind = .buddyRequest
        var time = original
        time.sentAtMs -= 1
        var id = original
        id.id = flipping(original.id, bit: 0)
        var signature = original
        signature.signature = flipping(original.signature, bit: 7)
        var credential = original
        credential.senderCredential = Users.carol.signed
        credential.from = "carol"
        for tampered in [payload, recipient, kind, time, id, signature, credential] {
            #expect(recordError { try SignedRecords.verifyEnvelope(tampered, verifier: verifier, now: testNow) } == .badSignature)
        }
    }

    @Test("Envelope: stored mail outlives the sender's credential, but not mail dated after its expiry")
    func envelopeAfterCredentialExpiry() throws {
        // Valid from an hour ago until an hour from now.
        let sender = try TestUser("ivan", issuedAt: Int64(testNow) - 3600, lifetime: 7200)
        let sentInTime = try envelope(from: sender.identity, at: testNow)
        let tenDaysLater = testNow + 10 * 86_400
        #expect(recordError { try SignedRecords.verifyEnvelope(sentInTime, verifier: verifier, now: tenDaysLater) } == nil)

        let sentAfterExpiry = try envelope(from: sender.identity, at: testNow + 3700)
        #expect(
            recordError { try SignedRecords.verifyEnvelope(sentAfterExpiry, verifier: verifier, now: testNow + 3800) }
                == .credential(.expired(at: Int64(testNow) + 3600)))
        #expect(recordError { try SignedRecords.verifyEnvelope(sentAfterExpiry, verifier: verifier, now: tenDaysLater) } != nil)
        // Backdating needs the sender's key: moving sent_at into the valid window breaks the signature.
        var backdated = sentAfterExpiry
        backdated.sentAtMs = Int64(testNow * 1000)
        #expect(recordError { try SignedRecords.verifyEnvelope(backdated, verifier: verifier, now: testNow + 3800) } == .badSignature)
    }

    @Test("Envelope: dated beyond the clock skew in the future is refused")
    func envelopeFromTheFuture() throws {
        let far = try envelope(at: testNow + 301)
        #expect(recordError { try SignedRecords.verifyEnvelope(far, verifier: verifier, now: testNow) } == .fromTheFuture)
        let near = try envelope(at: testNow + 299)
        #expect(recordError { try SignedRecords.verifyEnvelope(near, verifier: verifier, now: testNow) } == nil)
    }

    @Test("Envelope: a malformed header is refused")
    func envelopeMalformed() throws {
        var shortID = try SignedRecords.makeEnvelope(kind: .message, to: "bob", payload: [1], id: [1, 2, 3], identity: alice.identity, now: testNow)
        #expect(recordError { try SignedRecords.verifyEnvelope(shortID, verifier: verifier, now: testNow) }?.isMalformed == true)
        shortID.id = Data(count: 16)
        shortID.to = ""
        #expect(recordError { try SignedRecords.verifyEnvelope(shortID, verifier: verifier, now: testNow) }?.isMalformed == true)
    }

    @Test("Envelope: an unknown (negative) kind is refused without crashing", .timeLimit(.minutes(1)))
    func envelopeNegativeKind() async throws {
        // Protobuf decodes an unknown enum value as UNRECOGNIZED(n), and n may be negative.
        // SignedRecords.signingInput converts kind.rawValue with UInt64(_:), which traps on a
        // negative value: any client can crash its supernode with one Deliver.
        // Control, in process: such an envelope really decodes with a negative raw value.
        let made = try envelope()
        let decoded = try OvEnvelope(serializedBytes: try made.serializedBytes() + [0x28] + [UInt8](repeating: 0xFF, count: 9) + [0x01])
        #expect(decoded.kind == .UNRECOGNIZED(-1))
        #expect(decoded.from == "alice")
        await #expect(processExitsWith: .success) {
            let alice = try TestUser("alice")
            var envelope = try SignedRecords.makeEnvelope(kind: .message, to: "bob", payload: [1], identity: alice.identity, now: testNow)
            // Field 5 (kind) as the varint of -1, appended: the last value of a field wins.
            let bytes: [UInt8] = try envelope.serializedBytes() + [0x28] + [UInt8](repeating: 0xFF, count: 9) + [0x01]
            envelope = try OvEnvelope(serializedBytes: bytes)
            guard case .UNRECOGNIZED(let raw) = envelope.kind, raw < 0 else { exit(3) }
            let error = recordError { try SignedRecords.verifyEnvelope(envelope, verifier: makeVerifier(), now: testNow) }
            guard error != nil else { exit(2) }
        }
    }

    @Test(
        "Validator: mailbox items of storable kinds under mailboxKey(to) only",
        arguments: [
            OvEnvelopeKind.message, .receipt, .buddyRequest, .buddyAccept, .buddyRemove,
        ])
    func validatorStorableKinds(kind: OvEnvelopeKind) throws {
        let made = try envelope(kind: kind)
        let record = try OvDHTRecord.mailboxItem(made)
        #expect(NodeID(bytes: record.key) == NodeID.mailboxKey(for: "bob"))
        let info = try #require(validator.validate(record, now: testNow))
        #expect(info.kind == .mailboxItem)
        #expect(info.key == NodeID.mailboxKey(for: "bob"))
        #expect(info.itemID == Array(made.id))
        #expect(info.owner == "bob")
        #expect(info.sequence == 0)
        #expect(info.expiresAt == testNow + SignedRecords.mailboxLifetime)
        for wrongKey in [NodeID.presenceKey(for: "bob"), NodeID.mailboxKey(for: "alice")] {
            var moved = record
            moved.key = Data(wrongKey.bytes)
            #expect(validator.validate(moved, now: testNow) == nil)
        }
        // Tampered: refused.
        var tampered = made
        tampered.payload = Data([9, 9, 9])
        #expect(validator.validate(try OvDHTRecord.mailboxItem(tampered), now: testNow) == nil)
    }

    @Test(
        "Validator: presence and departure envelopes are never stored",
        arguments: [
            OvEnvelopeKind.presence, .departure, .unspecified,
        ])
    func validatorLiveOnlyKinds(kind: OvEnvelopeKind) throws {
        let made = try envelope(kind: kind)
        #expect(recordError { try SignedRecords.verifyEnvelope(made, verifier: verifier, now: testNow) } == nil, "the envelope itself is valid")
        #expect(validator.validate(try OvDHTRecord.mailboxItem(made), now: testNow) == nil)
    }

    // MARK: - Mailbox clear

    func ids(_ count: Int, seed: UInt64 = 1) -> [[UInt8]] {
        var random = SplitMix64(seed: seed)
        return (0..<count).map { _ in random.bytes(16) }
    }

    @Test("Mailbox clear: valid, and the validator returns the owner's mailbox key and ids")
    func mailboxClearValid() throws {
        let list = ids(3)
        let clear = try SignedRecords.makeMailboxClear(ids: list, identity: bob.identity, now: testNow)
        #expect(try SignedRecords.verifyMailboxClear(clear, verifier: verifier, now: testNow + 5) == NodeID.mailboxKey(for: "bob"))
        let valid = try #require(validator.validate(clear, now: testNow))
        #expect(valid.key == NodeID.mailboxKey(for: "bob"))
        #expect(valid.ids == list)
        let empty = try SignedRecords.makeMailboxClear(ids: [], identity: bob.identity, now: testNow)
        #expect(validator.validate(empty, now: testNow)?.ids == [])
    }

    @Test("Mailbox clear: another user cannot clear Bob's mailbox")
    func mailboxClearByAnotherUser() throws {
        var clear = try SignedRecords.makeMailboxClear(ids: ids(2), identity: alice.identity, now: testNow)
        clear.name = "bob"
        // Even re-signed with Alice's own key over Bob's name.
        clear.signature = Data(try alice.key.sign(SignedRecords.signingInput(clear)))
        #expect(recordError { try SignedRecords.verifyMailboxClear(clear, verifier: verifier, now: testNow) } == .nameMismatch)
        #expect(validator.validate(clear, now: testNow) == nil)
        // Alice's credential swapped for Bob's (public) one: the signature no longer matches.
        clear.credential = bob.signed
        #expect(recordError { try SignedRecords.verifyMailboxClear(clear, verifier: verifier, now: testNow) } == .badSignature)
    }

    @Test("Mailbox clear: dated far from now (either way) is refused")
    func mailboxClearTime() throws {
        let old = try SignedRecords.makeMailboxClear(ids: ids(1), identity: bob.identity, now: testNow - 301)
        #expect(recordError { try SignedRecords.verifyMailboxClear(old, verifier: verifier, now: testNow) } == .stale)
        let future = try SignedRecords.makeMailboxClear(ids: ids(1), identity: bob.identity, now: testNow + 301)
        #expect(recordError { try SignedRecords.verifyMailboxClear(future, verifier: verifier, now: testNow) } == .stale)
        let recent = try SignedRecords.makeMailboxClear(ids: ids(1), identity: bob.identity, now: testNow - 299)
        #expect(recordError { try SignedRecords.verifyMailboxClear(recent, verifier: verifier, now: testNow) } == nil)
        // A recorded clear replayed a day later: refused.
        #expect(validator.validate(recent, now: testNow + 86_400) == nil)
    }

    @Test("Mailbox clear: tampered ids or time are refused")
    func mailboxClearTampered() throws {
        let clear = try SignedRecords.makeMailboxClear(ids: ids(3), identity: bob.identity, now: testNow)
        var changed = clear
        changed.ids[1] = flipping(clear.ids[1], bit: 9)
        var added = clear
        added.ids.append(Data(ids(1, seed: 99)[0]))
        var removed = clear
        removed.ids.removeLast()
        var time = clear
        time.atMs += 1
        for tampered in [changed, added, removed, time] {
            #expect(recordError { try SignedRecords.verifyMailboxClear(tampered, verifier: verifier, now: testNow) } == .badSignature)
        }
        var wrongLength = clear
        wrongLength.ids[0] = Data([1, 2, 3])
        #expect(recordError { try SignedRecords.verifyMailboxClear(wrongLength, verifier: verifier, now: testNow) }?.isMalformed == true)
    }
}
