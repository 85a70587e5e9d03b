import Foundation
import SkylarkCrypto
import SkylarkWire

/// End-to-end encryption of message text: only the recipient's X25519 message key opens it;
/// supernodes relaying or storing the envelope see ciphertext.
///
/// key = HKDF-SHA256(X25519(ephemeral, recipient), salt = ephemeral || recipient,
///                   info = "skylark-message-v1" || from || to || id)
/// ciphertext = AES-256-GCM(text, key, random nonce, aad = id)
/// Binding sender, recipient and id into the key means a sealed text cannot be moved into
/// another envelope; the envelope's signature says who sent it.
public enum MessageSealing {
    public enum Failure: Error, Equatable, Sendable {
        case malformed
        case cannotOpen
    }

    public static func seal(_ text: String, to recipientKey: [UInt8], from: String, to: String, id: [UInt8]) throws -> OvSealedText {
        let ephemeral = try X25519.PrivateKey()
        let ephemeralPublic = try ephemeral.publicKey()
        let key = try deriveKey(
            shared: try ephemeral.sharedSecret(with: recipientKey), ephemeral: ephemeralPublic,
            recipient: recipientKey, from: from, to: to, id: id)
        let nonce = AESGCM.makeNonce()
        var sealed = OvSealedText()
        sealed.ephemeralKey = Data(ephemeralPublic)
        sealed.nonce = Data(nonce)
        sealed.ciphertext = Data(try AESGCM.seal(Array(text.utf8), key: key, nonce: nonce, authenticating: id))
        return sealed
    }

    public static func open(_ sealed: OvSealedText, with key: X25519.PrivateKey, from: String, to: String, id: [UInt8]) throws(Failure) -> String {
        guard sealed.ephemeralKey.count == X25519.keyByteCount, sealed.nonce.count == AESGCM.nonceByteCount else { throw .malformed }
        do {
            let ownPublic = try key.publicKey()
            let shared = try key.sharedSecret(with: Array(sealed.ephemeralKey))
            let messageKey = try deriveKey(shared: shared, ephemeral: Array(sealed.ephemeralKey), recipient: ownPublic, from: from, to: to, id: id)
            let plaintext = try AESGCM.open(Array(sealed.ciphertext), key: messageKey, nonce: Array(sealed.nonce), authenticating: id)
            return String(decoding: plaintext, as: UTF8.self)
        } catch {
            throw .cannotOpen
        }
    }

    private static func deriveKey(shared: [UInt8], ephemeral: [UInt8], recipient: [UInt8], from: String, to: String, id: [UInt8]) throws -> [UInt8] {
        var info = Array("skylark-message-v1".utf8)
        SignedRecords.appendField(&info, Array(from.utf8))
        SignedRecords.appendField(&info, Array(to.utf8))
        SignedRecords.appendField(&info, id)
        return try HKDF.sha256(inputKeyMaterial: shared, salt: ephemeral + recipient, info: info, outputByteCount: AESGCM.keyByteCount)
    }
}
