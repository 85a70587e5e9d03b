import Foundation
import SkylarkCrypto
import SkylarkWire

/// Why a presence record, envelope or mailbox request was refused.
public enum RecordError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case credential(Credential.Invalid)
    case badSignature
    case nameMismatch
    case stale
    case fromTheFuture
    case wrongKey

    public var description: String {
        switch self {
        case let .malformed(why): return "malformed: \(why)"
        case let .credential(why): return "credential: \(why)"
        case .badSignature: return "signature does not match the credential"
        case .nameMismatch: return "signed by another user than it names"
        case .stale: return "expired"
        case .fromTheFuture: return "dated in the future"
        case .wrongKey: return "stored under the wrong key"
        }
    }
}

/// Signing and checking of what users publish and send: presence records, envelopes and
/// mailbox deletions. Every signature is Ed25519 by the key the sender's login-server-signed
/// credential certifies, over a domain-separated encoding, so a signature made for one purpose
/// can never be replayed as another.
public enum SignedRecords {
    /// Longest a presence record may claim to live; owners republish well before.
    public static let maximumPresenceLifetime: Double = 3600
    /// How long a stored envelope is kept for an offline recipient.
    public static let mailboxLifetime: Double = 30 * 86400

    // MARK: Presence

    public static func signPresence(_ record: OvPresenceRecord, identity: LocalIdentity) throws -> OvSignedPresence {
        guard let credential = identity.credential else { throw RecordError.malformed("not logged in") }
        let bytes: [UInt8] = try record.serializedBytes()
        var signed = OvSignedPresence()
        signed.record = Data(bytes)
        signed.credential = credential.signed
        signed.signature = Data(try identity.key.sign(Array("skylark-presence-v1".utf8) + bytes))
        return signed
    }

    /// The record and its owner's credential, if the owner signed it, the login server vouches
    /// for the owner, and it is current at `now` (Unix seconds).
    public static func verifyPresence(_ signed: OvSignedPresence, verifier: Verifier, now: Double) throws(RecordError) -> (
        record: OvPresenceRecord, credential: Credential
    ) {
        let credential: Credential
        do { credential = try verifier.credential(signed.credential, now: now) } catch { throw .credential(error) }
        guard verifier.signature(Array(signed.signature), by: credential, over: Array("skylark-presence-v1".utf8) + Array(signed.record)) else {
            throw .badSignature
        }
        guard let record = try? OvPresenceRecord(serializedBytes: signed.record) else { throw .malformed("presence record") }
        guard record.name == credential.name else { throw .nameMismatch }
        // In Double, so hostile timestamps (Int64.max, negative) cannot overflow the arithmetic.
        let published = Double(record.publishedAtMs) / 1000
        let expires = Double(record.expiresAtMs) / 1000
        guard expires > now else { throw .stale }
        guard published <= now + Double(verifier.clockSkew) else { throw .fromTheFuture }
        guard published > 0, expires > published, expires - published <= maximumPresenceLifetime else { throw .malformed("lifetime out of range") }
        return (record, credential)
    }

    // MARK: Envelopes

    public static func makeEnvelope(
        kind: OvEnvelopeKind, to recipient: String, payload: [UInt8], id: [UInt8] = SecureRandom.bytes(16),
        identity: LocalIdentity, now: Double
    ) throws -> OvEnvelope {
        guard let credential = identity.credential else { throw RecordError.malformed("not logged in") }
        var envelope = OvEnvelope()
        envelope.id = Data(id)
        envelope.from = credential.name
        envelope.to = recipient
        envelope.sentAtMs = Int64(now * 1000)
        envelope.kind = kind
        envelope.payload = Data(payload)
        envelope.senderCredential = credential.signed
        envelope.signature = Data(try identity.key.sign(signingInput(envelope)))
        return envelope
    }

    /// The sender's credential if the envelope is intact. The credential must have been valid when
    /// the envelope was sent (a stored message outlives the sender's day-long credential) and the
    /// envelope may not be dated in the future.
    public static func verifyEnvelope(_ envelope: OvEnvelope, verifier: Verifier, now: Double) throws(RecordError) -> Credential {
        guard envelope.id.count == 16, !envelope.from.isEmpty, !envelope.to.isEmpty else { throw .malformed("envelope header") }
        let sentAt = Double(envelope.sentAtMs) / 1000
        guard sentAt <= now + Double(verifier.clockSkew) else { throw .fromTheFuture }
        let credential: Credential
        do { credential = try verifier.credential(envelope.senderCredential, now: sentAt) } catch { throw .credential(error) }
        guard credential.name == envelope.from else { throw .nameMismatch }
        guard verifier.signature(Array(envelope.signature), by: credential, over: signingInput(envelope)) else { throw .badSignature }
        return credential
    }

    static func signingInput(_ envelope: OvEnvelope) -> [UInt8] {
        var out = Array("skylark-envelope-v1".utf8)
        appendField(&out, Array(envelope.id))
        appendField(&out, Array(envelope.from.utf8))
        appendField(&out, Array(envelope.to.utf8))
        appendField(&out, bigEndian(UInt64(bitPattern: envelope.sentAtMs)))
        appendField(&out, bigEndian(UInt64(bitPattern: Int64(envelope.kind.rawValue))))
        appendField(&out, Array(envelope.payload))
        return out
    }

    // MARK: Mailbox deletion

    public static func makeMailboxClear(ids: [[UInt8]], identity: LocalIdentity, now: Double) throws -> OvClearMailbox {
        guard let credential = identity.credential else { throw RecordError.malformed("not logged in") }
        var clear = OvClearMailbox()
        clear.name = credential.name
        clear.ids = ids.map { Data($0) }
        clear.atMs = Int64(now * 1000)
        clear.credential = credential.signed
        clear.signature = Data(try identity.key.sign(signingInput(clear)))
        return clear
    }

    public static func verifyMailboxClear(_ clear: OvClearMailbox, verifier: Verifier, now: Double) throws(RecordError) -> NodeID {
        let at = Double(clear.atMs) / 1000
        guard abs(at - now) <= Double(verifier.clockSkew) else { throw .stale }
        let credential: Credential
        do { credential = try verifier.credential(clear.credential, now: at) } catch { throw .credential(error) }
        guard credential.name == clear.name else { throw .nameMismatch }
        guard clear.ids.count <= 1000, clear.ids.allSatisfy({ $0.count == 16 }) else { throw .malformed("mailbox ids") }
        guard verifier.signature(Array(clear.signature), by: credential, over: signingInput(clear)) else { throw .badSignature }
        return NodeID.mailboxKey(for: clear.name)
    }

    static func signingInput(_ clear: OvClearMailbox) -> [UInt8] {
        var out = Array("skylark-mailbox-clear-v1".utf8)
        appendField(&out, Array(clear.name.utf8))
        appendField(&out, bigEndian(UInt64(clear.ids.count)))
        for id in clear.ids { appendField(&out, Array(id)) }
        appendField(&out, bigEndian(UInt64(bitPattern: clear.atMs)))
        return out
    }

    // MARK: Encoding helpers

    static func appendField(_ out: inout [UInt8], _ field: [UInt8]) {
        out += bigEndian(UInt64(field.count))
        out += field
    }

    static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> UInt64(56 - 8 * $0)) }
    }
}

/// The overlay's record validator: real signatures, right keys, current records.
public struct OverlayRecordValidator: RecordValidator {
    public let verifier: Verifier

    public init(verifier: Verifier) {
        self.verifier = verifier
    }

    public func validate(_ record: OvDHTRecord, now: Double) -> RecordInfo? {
        let key = NodeID(bytes: record.key)
        switch record.kind {
        case .presence:
            guard let signed = try? OvSignedPresence(serializedBytes: record.value),
                let (presence, _) = try? SignedRecords.verifyPresence(signed, verifier: verifier, now: now),
                key == NodeID.presenceKey(for: presence.name)
            else { return nil }
            let supernode = presence.supernode.nodeID.count == NodeID.byteCount ? NodeID(bytes: presence.supernode.nodeID) : nil
            return RecordInfo(
                key: key, kind: .presence, sequence: presence.sequence, itemID: [],
                expiresAt: Double(presence.expiresAtMs) / 1000, owner: presence.name, supernode: supernode)
        case .mailboxItem:
            guard let envelope = try? OvEnvelope(serializedBytes: record.value), Self.storableKinds.contains(envelope.kind),
                (try? SignedRecords.verifyEnvelope(envelope, verifier: verifier, now: now)) != nil,
                key == NodeID.mailboxKey(for: envelope.to)
            else { return nil }
            return RecordInfo(
                key: key, kind: .mailboxItem, sequence: 0, itemID: Array(envelope.id),
                expiresAt: Double(envelope.sentAtMs) / 1000 + SignedRecords.mailboxLifetime, owner: envelope.to, supernode: nil)
        default:
            return nil
        }
    }

    public func validate(_ clear: OvClearMailbox, now: Double) -> (key: NodeID, ids: [[UInt8]])? {
        guard let key = try? SignedRecords.verifyMailboxClear(clear, verifier: verifier, now: now) else { return nil }
        return (key, clear.ids.map { Array($0) })
    }

    /// What may wait in a mailbox: presence and departure notices are only useful live.
    static let storableKinds: Set<OvEnvelopeKind> = [.message, .receipt, .buddyRequest, .buddyAccept, .buddyRemove]
}

extension OvDHTRecord {
    public static func presence(_ signed: OvSignedPresence, name: String) throws -> OvDHTRecord {
        var record = OvDHTRecord()
        record.key = Data(NodeID.presenceKey(for: name).bytes)
        record.kind = .presence
        record.value = Data(try signed.serializedBytes() as [UInt8])
        return record
    }

    public static func mailboxItem(_ envelope: OvEnvelope) throws -> OvDHTRecord {
        var record = OvDHTRecord()
        record.key = Data(NodeID.mailboxKey(for: envelope.to).bytes)
        record.kind = .mailboxItem
        record.value = Data(try envelope.serializedBytes() as [UInt8])
        return record
    }
}
