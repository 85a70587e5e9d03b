import Foundation
import SkylarkCrypto

/// Sealing and opening of login requests and responses (BRIEF section 3, credential exchange).
///
/// Request: fresh AES-256 session key, RSA-OAEP-SHA256 wrapped to the pinned login key; the
/// payload under AES-256-GCM, with the key fingerprint as additional authenticated data.
/// Response: under the same session key, fresh nonce, request id echoed inside.
public enum LoginEnvelope {
    static let requestContext = Array("skylark-login-request-v1".utf8)
    static let responseContext = Array("skylark-login-response-v1".utf8)

    public static func sealRequest(_ payload: LoginRequestPayload, to serverKey: RSA.PublicKey, sessionKey: [UInt8]) throws -> LoginSealedRequest {
        let fingerprint = try serverKey.fingerprint()
        let nonce = AESGCM.makeNonce()
        var sealed = LoginSealedRequest()
        sealed.serverKeyFingerprint = Data(fingerprint)
        sealed.wrappedSessionKey = Data(try serverKey.encrypt(sessionKey))
        sealed.nonce = Data(nonce)
        sealed.ciphertext = Data(try AESGCM.seal(try payload.serializedBytes(), key: sessionKey, nonce: nonce, authenticating: requestContext + fingerprint))
        return sealed
    }

    public enum OpenError: Error, Equatable, Sendable {
        /// Encrypted to another key than the server's own.
        case keyMismatch
        /// Could not be unwrapped or authenticated, or the payload is not a request.
        case undecryptable
    }

    /// Server side: the session key and payload of a sealed request.
    public static func openRequest(_ sealed: LoginSealedRequest, with serverKey: RSA.PrivateKey, fingerprint: [UInt8]) throws(OpenError) -> (
        sessionKey: [UInt8], payload: LoginRequestPayload
    ) {
        guard constantTimeEquals(Array(sealed.serverKeyFingerprint), fingerprint) else { throw .keyMismatch }
        guard let sessionKey = try? serverKey.decrypt(Array(sealed.wrappedSessionKey)), sessionKey.count == AESGCM.keyByteCount,
            let plaintext = try? AESGCM.open(
                Array(sealed.ciphertext), key: sessionKey, nonce: Array(sealed.nonce), authenticating: requestContext + fingerprint),
            let payload = try? LoginRequestPayload(serializedBytes: plaintext)
        else { throw .undecryptable }
        return (sessionKey, payload)
    }

    public static func sealResponse(_ payload: LoginResponsePayload, sessionKey: [UInt8]) throws -> LoginSealedResponse {
        let nonce = AESGCM.makeNonce()
        var sealed = LoginSealedResponse()
        sealed.nonce = Data(nonce)
        sealed.ciphertext = Data(try AESGCM.seal(try payload.serializedBytes(), key: sessionKey, nonce: nonce, authenticating: responseContext))
        return sealed
    }

    /// Client side: nil when the answer was not made with our session key, or is not a response.
    public static func openResponse(_ sealed: LoginSealedResponse, sessionKey: [UInt8]) -> LoginResponsePayload? {
        guard let plaintext = try? AESGCM.open(Array(sealed.ciphertext), key: sessionKey, nonce: Array(sealed.nonce), authenticating: responseContext) else {
            return nil
        }
        return try? LoginResponsePayload(serializedBytes: plaintext)
    }
}
