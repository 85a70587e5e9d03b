import Foundation
import SkylarkCrypto
import SkylarkNode
import SkylarkTestSupport
import SkylarkWire
import Testing

/// The client core against answers the test writes by hand, playing a login server that holds
/// `TestKeys.login`.
@Suite struct LoginClientExchangeTests {
    let now: Double = Double(epoch) + 0.25

    /// What the server learns from the request: session key and payload.
    func open(_ client: LoginClientExchange) throws -> (sessionKey: [UInt8], payload: LoginRequestPayload) {
        var decoder = MessageDecoder<LoginClientFrame>(maximumFrameSize: 16 * 1024)
        decoder.append(bytes: client.requestBytes)
        let frame = try #require(try decoder.next())
        #expect(decoder.bufferedByteCount == 0, "the request is exactly one frame")
        guard case let .sealed(sealed)? = frame.body else { throw CocoaError(.coderReadCorrupt) }
        return try LoginEnvelope.openRequest(sealed, with: TestKeys.login, fingerprint: try TestKeys.login.publicKey.fingerprint())
    }

    func sealed(_ response: LoginResponsePayload, sessionKey: [UInt8]) throws -> [UInt8] {
        var frame = LoginServerFrame()
        frame.sealed = try LoginEnvelope.sealResponse(response, sessionKey: sessionKey)
        return try MessageEncoder.encode(frame)
    }

    func response(to payload: LoginRequestPayload, _ result: LoginResponsePayload.OneOf_Result?) -> LoginResponsePayload {
        var response = LoginResponsePayload()
        response.requestID = payload.requestID
        response.result = result
        return response
    }

    func loginError(_ code: LoginErrorCode, _ message: String = "because", retryAfter: UInt32 = 0) -> LoginError {
        var error = LoginError()
        error.code = code
        error.message = message
        error.retryAfterSeconds = retryAfter
        return error
    }

    func plain(_ error: LoginError) throws -> [UInt8] {
        var frame = LoginServerFrame()
        frame.error = error
        return try MessageEncoder.encode(frame)
    }

    func failure(of client: inout LoginClientExchange, answering bytes: [UInt8]) -> LoginFailure? {
        do throws(LoginFailure) {
            let outcome = try client.receive(bytes)
            Issue.record("expected a failure, got \(String(describing: outcome))")
            return nil
        } catch {
            return error
        }
    }

    func registration(_ name: String = "Alice") throws -> LoginClientExchange {
        try LoginClientExchange(.register(name: name, password: "alice-password"), serverKey: TestKeys.login.publicKey, now: now)
    }

    // MARK: - The request

    @Test func requestCarriesWhatTheServerNeeds() throws {
        let userKey = try Ed25519.PrivateKey().publicKey().rawRepresentation()
        let requestID = SecureRandom.bytes(16)
        let client = try LoginClientExchange(
            .login(name: "alice", password: "pw-123456", userPublicKey: userKey),
            serverKey: TestKeys.login.publicKey, now: now, requestID: requestID)
        let (sessionKey, payload) = try open(client)
        #expect(sessionKey.count == 32)
        #expect(Array(payload.requestID) == requestID)
        #expect(payload.timestampMs == Int64(now * 1000))
        guard case let .login(login)? = payload.request else {
            Issue.record("expected a login payload")
            return
        }
        #expect(login.name == "alice")
        #expect(login.password == "pw-123456")
        #expect(Array(login.userPublicKey) == userKey)
        // The password is not visible on the wire.
        #expect(!String(decoding: client.requestBytes, as: UTF8.self).contains("pw-123456"))
        // Another key cannot open it.
        let sealedRequest = try #require(try MessageDecoder<LoginClientFrame>.decodeOne(client.requestBytes))
        let otherFingerprint = try TestKeys.other.publicKey.fingerprint()
        #expect(throws: LoginEnvelope.OpenError.keyMismatch) {
            _ = try LoginEnvelope.openRequest(sealedRequest, with: TestKeys.other, fingerprint: otherFingerprint)
        }
        #expect(sealedRequest.serverKeyFingerprint == Data(try TestKeys.login.publicKey.fingerprint()))
    }

    @Test func registeredAnswerOneByteAtATime() throws {
        var client = try registration()
        let (sessionKey, payload) = try open(client)
        var registered = LoginRegistered()
        registered.name = "alice"
        let answer = try sealed(response(to: payload, .registered(registered)), sessionKey: sessionKey)
        for byte in answer.dropLast() {
            #expect(try client.receive([byte]) == nil)
        }
        #expect(try client.receive([answer.last!]) == .registered(name: "alice"))
        // Finished: nothing more comes out, and the end of the stream is no longer an error.
        #expect(try client.receive(answer) == nil)
        try client.endOfInput()
    }

    // MARK: - Answers that must be refused

    @Test func answerSealedWithAnotherSessionKeyIsKeyMismatch() throws {
        var client = try registration()
        let (_, payload) = try open(client)
        var registered = LoginRegistered()
        registered.name = "alice"
        let answer = try sealed(response(to: payload, .registered(registered)), sessionKey: AESGCM.makeKey())
        let failure = failure(of: &client, answering: answer)
        guard case .keyMismatch? = failure else {
            Issue.record("expected keyMismatch, got \(String(describing: failure))")
            return
        }
        #expect(failure?.exitCode == 7)
    }

    @Test func tamperedAnswerIsKeyMismatch() throws {
        var client = try registration()
        let (sessionKey, payload) = try open(client)
        var registered = LoginRegistered()
        registered.name = "alice"
        var answer = try sealed(response(to: payload, .registered(registered)), sessionKey: sessionKey)
        answer[answer.count - 3] ^= 0x40
        guard case .keyMismatch? = failure(of: &client, answering: answer) else {
            Issue.record("a flipped bit must not pass the GCM tag")
            return
        }
    }

    @Test func answerForAnotherRequestIsAProtocolViolation() throws {
        var client = try registration()
        let (sessionKey, payload) = try open(client)
        var registered = LoginRegistered()
        registered.name = "alice"
        var other = response(to: payload, .registered(registered))
        other.requestID = Data(SecureRandom.bytes(16))
        let failure = failure(of: &client, answering: try sealed(other, sessionKey: sessionKey))
        guard case .protocolViolation? = failure else {
            Issue.record("expected protocolViolation, got \(String(describing: failure))")
            return
        }
    }

    @Test func truncatedAnswerThenEndOfInputIsAProtocolViolation() throws {
        var client = try registration()
        let (sessionKey, payload) = try open(client)
        var registered = LoginRegistered()
        registered.name = "alice"
        let answer = try sealed(response(to: payload, .registered(registered)), sessionKey: sessionKey)
        #expect(try client.receive(answer.prefix(answer.count / 2)) == nil)
        let truncated = #expect(throws: LoginFailure.self) { try client.endOfInput() }
        guard case .protocolViolation? = truncated else {
            Issue.record("expected protocolViolation, got \(String(describing: truncated))")
            return
        }
        // Nothing at all, then the end: the same.
        let silent = try registration()
        let nothing = #expect(throws: LoginFailure.self) { try silent.endOfInput() }
        guard case .protocolViolation? = nothing else {
            Issue.record("expected protocolViolation, got \(String(describing: nothing))")
            return
        }
    }

    @Test func wrongAnswerKindsAreProtocolViolations() throws {
        let userKey = try Ed25519.PrivateKey().publicKey().rawRepresentation()
        // A registration answered with a credential.
        var register = try registration()
        let (registerKey, registerPayload) = try open(register)
        let credential = try Credential.issue(name: "alice", userPublicKey: userKey, issuedAt: epoch, lifetime: 3600, serial: 1, signer: TestKeys.login)
        let registerFailure = failure(of: &register, answering: try sealed(response(to: registerPayload, .credential(credential)), sessionKey: registerKey))
        guard case .protocolViolation? = registerFailure else {
            Issue.record("credential to a registration: \(String(describing: registerFailure))")
            return
        }
        // A login answered with "registered", with no result, or with an empty frame; an oversized frame.
        for answerKind in 0..<4 {
            var login = try LoginClientExchange(
                .login(name: "alice", password: "alice-password", userPublicKey: userKey),
                serverKey: TestKeys.login.publicKey, now: now)
            let (key, payload) = try open(login)
            let bytes: [UInt8]
            switch answerKind {
            case 0:
                var registered = LoginRegistered()
                registered.name = "alice"
                bytes = try sealed(response(to: payload, .registered(registered)), sessionKey: key)
            case 1:
                bytes = try sealed(response(to: payload, nil), sessionKey: key)
            case 2:
                bytes = try MessageEncoder.encode(LoginServerFrame())
            default:
                bytes = [0x7f, 0xff, 0xff, 0xff]
            }
            let failure = failure(of: &login, answering: bytes)
            guard case .protocolViolation? = failure else {
                Issue.record("answer kind \(answerKind): \(String(describing: failure))")
                continue
            }
            #expect(failure?.exitCode == 1)
        }
    }

    // MARK: - Credentials

    @Test func credentialIsVerifiedAgainstThePinnedKey() throws {
        let userKey = try Ed25519.PrivateKey().publicKey().rawRepresentation()
        let otherUserKey = try Ed25519.PrivateKey().publicKey().rawRepresentation()
        let cases: [(String, LoginSignedCredential, (LoginFailure?) -> Bool)] = [
            (
                "valid", try Credential.issue(name: "alice", userPublicKey: userKey, issuedAt: epoch, lifetime: 3600, serial: 7, signer: TestKeys.login),
                { $0 == nil }
            ),
            (
                "signed by another key",
                try Credential.issue(name: "alice", userPublicKey: userKey, issuedAt: epoch, lifetime: 3600, serial: 7, signer: TestKeys.other),
                { $0 == .badCredential(.badSignature) }
            ),
            (
                "expired",
                try Credential.issue(name: "alice", userPublicKey: userKey, issuedAt: epoch - 7200, lifetime: 3600, serial: 7, signer: TestKeys.login),
                { $0 == .badCredential(.expired(at: epoch - 3600)) }
            ),
            (
                "certifies another key",
                try Credential.issue(name: "alice", userPublicKey: otherUserKey, issuedAt: epoch, lifetime: 3600, serial: 7, signer: TestKeys.login),
                { if case .protocolViolation? = $0 { return true } else { return false } }
            ),
        ]
        for (what, signed, check) in cases {
            var client = try LoginClientExchange(
                .login(name: "alice", password: "alice-password", userPublicKey: userKey),
                serverKey: TestKeys.login.publicKey, now: now)
            let (key, payload) = try open(client)
            let answer = try sealed(response(to: payload, .credential(signed)), sessionKey: key)
            var failure: LoginFailure?
            var outcome: LoginClientExchange.Outcome?
            do throws(LoginFailure) { outcome = try client.receive(answer) } catch { failure = error }
            #expect(check(failure), "\(what): \(String(describing: failure))")
            if failure == nil {
                guard case let .loggedIn(credential)? = outcome else {
                    Issue.record("\(what): no credential")
                    continue
                }
                #expect(credential.userPublicKey == userKey)
                #expect(credential.nodeID == Credential.nodeID(for: userKey))
                #expect(credential.serial == 7)
                #expect(credential.expiresAt == epoch + 3600)
            }
        }
    }

    // MARK: - Server errors and exit codes

    struct Mapping: Sendable, CustomTestStringConvertible {
        var code: LoginErrorCode
        var expected: LoginFailure
        var exitCode: Int32
        var testDescription: String { "\(code) -> \(expected) (exit \(exitCode))" }
    }

    static let mappings: [Mapping] = [
        Mapping(code: .wrongPassword, expected: .wrongPassword(name: "alice"), exitCode: 3),
        Mapping(code: .unknownName, expected: .unknownName(name: "alice"), exitCode: 4),
        Mapping(code: .nameTaken, expected: .nameTaken(name: "alice"), exitCode: 5),
        Mapping(code: .keyMismatch, expected: .keyMismatch("because"), exitCode: 7),
        Mapping(code: .rateLimited, expected: .rateLimited(retryAfter: 42), exitCode: 9),
        Mapping(code: .invalidName, expected: .invalidName("because"), exitCode: 10),
        Mapping(code: .weakPassword, expected: .weakPassword("because"), exitCode: 10),
        Mapping(code: .stale, expected: .clockOrReplay("because"), exitCode: 1),
        Mapping(code: .replayed, expected: .clockOrReplay("because"), exitCode: 1),
        Mapping(code: .malformed, expected: .protocolViolation("the server could not read the request: because"), exitCode: 1),
        Mapping(code: .internal, expected: .serverError("because"), exitCode: 1),
        Mapping(code: .errorUnspecified, expected: .serverError("because"), exitCode: 1),
    ]

    @Test(arguments: mappings)
    func serverErrorsMapToDocumentedFailures(mapping: Mapping) throws {
        // As a sealed answer...
        var client = try registration("ALICE")
        let (key, payload) = try open(client)
        let error = loginError(mapping.code, retryAfter: mapping.code == .rateLimited ? 42 : 0)
        let sealedFailure = failure(of: &client, answering: try sealed(response(to: payload, .error(error)), sessionKey: key))
        #expect(sealedFailure == mapping.expected)
        #expect(sealedFailure?.exitCode == mapping.exitCode)
        // ...and as a plain error frame.
        var plainClient = try registration("ALICE")
        let plainFailure = failure(of: &plainClient, answering: try plain(error))
        #expect(plainFailure == mapping.expected)
        #expect(plainFailure?.exitCode == mapping.exitCode)
    }

    @Test func exitCodesOfTheOtherFailures() {
        #expect(LoginFailure.serverUnreachable(address: "a:1", reason: "r").exitCode == 6)
        #expect(LoginFailure.timedOut(address: "a:1").exitCode == 6)
        #expect(LoginFailure.badCredential(.badSignature).exitCode == 1)
        #expect(LoginFailure.protocolViolation("x").exitCode == 1)
        let all: [LoginFailure] = [
            .wrongPassword(name: "a"), .unknownName(name: "a"), .nameTaken(name: "a"), .invalidName("x"),
            .weakPassword("x"), .rateLimited(retryAfter: 1), .keyMismatch("x"),
            .serverUnreachable(address: "a:1", reason: "r"), .timedOut(address: "a:1"), .clockOrReplay("x"),
            .protocolViolation("x"), .badCredential(.malformed), .serverError("x"),
        ]
        #expect(all.allSatisfy { !$0.description.isEmpty })
        #expect(Set(all.map(\.exitCode)) == [1, 3, 4, 5, 6, 7, 9, 10])
    }
}

extension MessageDecoder {
    /// The single message in `bytes`, with its `sealed` body where it has one.
    static func decodeOne(_ bytes: [UInt8]) throws -> LoginSealedRequest? where M == LoginClientFrame {
        var decoder = MessageDecoder<LoginClientFrame>()
        decoder.append(bytes: bytes)
        guard case let .sealed(sealed)? = try decoder.next()?.body else { return nil }
        return sealed
    }
}
