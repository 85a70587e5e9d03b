import Foundation
import SkylarkCrypto
import SkylarkTestSupport
import SkylarkWire
import Testing

@Suite("LoginEnvelope")
struct LoginEnvelopeTests {
    static func request() -> LoginRequestPayload {
        var payload = LoginRequestPayload()
        payload.requestID = Data((0..<16).map { UInt8($0) })
        payload.timestampMs = 1_700_000_000_123
        var register = LoginRegisterRequest()
        register.name = "alice"
        register.password = "correct horse battery"
        payload.register = register
        return payload
    }

    static func response() -> LoginResponsePayload {
        var payload = LoginResponsePayload()
        payload.requestID = Data((0..<16).map { UInt8($0) })
        var registered = LoginRegistered()
        registered.name = "alice"
        payload.registered = registered
        return payload
    }

    @Test("sealRequest then openRequest returns the session key and payload")
    func requestRoundTrip() throws {
        let sessionKey = AESGCM.makeKey()
        let server = TestKeys.login
        let sealed = try LoginEnvelope.sealRequest(Self.request(), to: server.publicKey, sessionKey: sessionKey)
        #expect(Array(sealed.serverKeyFingerprint) == (try server.publicKey.fingerprint()))
        #expect(sealed.nonce.count == AESGCM.nonceByteCount)
        // The password does not travel in clear.
        #expect(sealed.ciphertext.range(of: Data("correct horse".utf8)) == nil)

        let opened = try LoginEnvelope.openRequest(sealed, with: server, fingerprint: try server.publicKey.fingerprint())
        #expect(opened.sessionKey == sessionKey)
        #expect(opened.payload == Self.request())
    }

    @Test("Opening with a different server key (different fingerprint) throws .keyMismatch")
    func keyMismatch() throws {
        let sealed = try LoginEnvelope.sealRequest(Self.request(), to: TestKeys.login.publicKey, sessionKey: AESGCM.makeKey())
        #expect(throws: LoginEnvelope.OpenError.keyMismatch) {
            try LoginEnvelope.openRequest(sealed, with: TestKeys.other, fingerprint: try TestKeys.other.publicKey.fingerprint())
        }
        var noFingerprint = sealed
        noFingerprint.serverKeyFingerprint = Data()
        #expect(throws: LoginEnvelope.OpenError.keyMismatch) {
            try LoginEnvelope.openRequest(noFingerprint, with: TestKeys.login, fingerprint: try TestKeys.login.publicKey.fingerprint())
        }
    }

    @Test("Same fingerprint but altered ciphertext, nonce or wrapped key throws .undecryptable")
    func undecryptable() throws {
        let server = TestKeys.login
        let fingerprint = try server.publicKey.fingerprint()
        let sealed = try LoginEnvelope.sealRequest(Self.request(), to: server.publicKey, sessionKey: AESGCM.makeKey())
        for bit in [0, 9, sealed.ciphertext.count * 8 - 1] {
            var copy = sealed
            copy.ciphertext = flipping(sealed.ciphertext, bit: bit)
            #expect(throws: LoginEnvelope.OpenError.undecryptable, "ciphertext bit \(bit)") {
                try LoginEnvelope.openRequest(copy, with: server, fingerprint: fingerprint)
            }
        }
        var badNonce = sealed
        badNonce.nonce = flipping(sealed.nonce, bit: 3)
        #expect(throws: LoginEnvelope.OpenError.undecryptable) { try LoginEnvelope.openRequest(badNonce, with: server, fingerprint: fingerprint) }
        var badWrap = sealed
        badWrap.wrappedSessionKey = flipping(sealed.wrappedSessionKey, bit: 40)
        #expect(throws: LoginEnvelope.OpenError.undecryptable) { try LoginEnvelope.openRequest(badWrap, with: server, fingerprint: fingerprint) }
        var shortNonce = sealed
        shortNonce.nonce = Data(sealed.nonce.prefix(8))
        #expect(throws: LoginEnvelope.OpenError.undecryptable) { try LoginEnvelope.openRequest(shortNonce, with: server, fingerprint: fingerprint) }
    }

    @Test("A request relabelled with another key's fingerprint cannot be opened by that key")
    func relabelled() throws {
        var sealed = try LoginEnvelope.sealRequest(Self.request(), to: TestKeys.login.publicKey, sessionKey: AESGCM.makeKey())
        let otherFingerprint = try TestKeys.other.publicKey.fingerprint()
        sealed.serverKeyFingerprint = Data(otherFingerprint)
        #expect(throws: LoginEnvelope.OpenError.undecryptable) {
            try LoginEnvelope.openRequest(sealed, with: TestKeys.other, fingerprint: otherFingerprint)
        }
    }

    @Test("A wrapped key that is not 32 bytes is refused as .undecryptable")
    func wrongSizeSessionKey() throws {
        let server = TestKeys.login
        var sealed = try LoginEnvelope.sealRequest(Self.request(), to: server.publicKey, sessionKey: AESGCM.makeKey())
        sealed.wrappedSessionKey = Data(try server.publicKey.encrypt([UInt8](repeating: 1, count: 16)))
        #expect(throws: LoginEnvelope.OpenError.undecryptable) {
            try LoginEnvelope.openRequest(sealed, with: server, fingerprint: try server.publicKey.fingerprint())
        }
    }

    @Test("sealResponse then openResponse round trip; another session key gives nil")
    func responseRoundTrip() throws {
        let sessionKey = AESGCM.makeKey()
        let sealed = try LoginEnvelope.sealResponse(Self.response(), sessionKey: sessionKey)
        #expect(LoginEnvelope.openResponse(sealed, sessionKey: sessionKey) == Self.response())
        #expect(LoginEnvelope.openResponse(sealed, sessionKey: AESGCM.makeKey()) == nil)
        var tampered = sealed
        tampered.ciphertext = flipping(sealed.ciphertext, bit: 0)
        #expect(LoginEnvelope.openResponse(tampered, sessionKey: sessionKey) == nil)
        // Two responses under one key use different nonces.
        let again = try LoginEnvelope.sealResponse(Self.response(), sessionKey: sessionKey)
        #expect(again.nonce != sealed.nonce)
    }

    @Test("A request ciphertext cannot be replayed as a response (contexts differ)")
    func requestIsNotAResponse() throws {
        let sessionKey = AESGCM.makeKey()
        let sealedRequest = try LoginEnvelope.sealRequest(Self.request(), to: TestKeys.login.publicKey, sessionKey: sessionKey)
        var crossed = LoginSealedResponse()
        crossed.nonce = sealedRequest.nonce
        crossed.ciphertext = sealedRequest.ciphertext
        #expect(LoginEnvelope.openResponse(crossed, sessionKey: sessionKey) == nil)
    }
}
