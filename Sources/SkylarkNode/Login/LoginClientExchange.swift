import Foundation
import SkylarkCrypto
import SkylarkWire

/// One registration or login, client side, as a sans-I/O state machine: `requestBytes` out,
/// answer bytes in, a verified outcome or a typed failure back. Time comes in as `now`.
public struct LoginClientExchange: Sendable {
    public enum Request: Sendable {
        case register(name: String, password: String)
        case login(name: String, password: String, userPublicKey: [UInt8])
    }

    public enum Outcome: Sendable, Equatable {
        case registered(name: String)
        case loggedIn(Credential)
    }

    private enum State: Sendable {
        case awaitingAnswer
        case finished
    }

    public let requestBytes: [UInt8]
    private let request: Request
    private let serverKey: RSA.PublicKey
    private let sessionKey: [UInt8]
    private let requestID: [UInt8]
    private let now: Double
    private var decoder = MessageDecoder<LoginServerFrame>()
    private var state = State.awaitingAnswer

    public init(
        _ request: Request, serverKey: RSA.PublicKey, now: Double,
        sessionKey: [UInt8] = AESGCM.makeKey(), requestID: [UInt8] = SecureRandom.bytes(16)
    ) throws {
        self.request = request
        self.serverKey = serverKey
        self.sessionKey = sessionKey
        self.requestID = requestID
        self.now = now
        var payload = LoginRequestPayload()
        payload.requestID = Data(requestID)
        payload.timestampMs = Int64(now * 1000)
        switch request {
        case let .register(name, password):
            var register = LoginRegisterRequest()
            register.name = name
            register.password = password
            payload.register = register
        case let .login(name, password, key):
            var login = LoginLoginRequest()
            login.name = name
            login.password = password
            login.userPublicKey = Data(key)
            payload.login = login
        }
        var frame = LoginClientFrame()
        frame.sealed = try LoginEnvelope.sealRequest(payload, to: serverKey, sessionKey: sessionKey)
        requestBytes = try MessageEncoder.encode(frame)
    }

    /// Feed answer bytes; returns the outcome once the whole answer is in, nil while it is not.
    public mutating func receive<Bytes: Sequence<UInt8>>(_ bytes: Bytes) throws(LoginFailure) -> Outcome? {
        guard case .awaitingAnswer = state else { return nil }
        decoder.append(bytes: bytes)
        let frame: LoginServerFrame?
        do { frame = try decoder.next() } catch {
            state = .finished
            throw .protocolViolation(error.description)
        }
        guard let frame else { return nil }
        state = .finished
        switch frame.body {
        case let .error(error)?:
            throw failure(for: error)
        case let .sealed(sealed)?:
            guard let payload = LoginEnvelope.openResponse(sealed, sessionKey: sessionKey) else {
                // Only the holder of the pinned key could learn our session key.
                throw .keyMismatch("the answer was not sealed with this request's session key")
            }
            guard Array(payload.requestID) == requestID else { throw .protocolViolation("the answer is for another request") }
            return try outcome(of: payload)
        case nil:
            throw .protocolViolation("empty answer")
        }
    }

    /// The server closed the link before answering.
    public func endOfInput() throws(LoginFailure) {
        if case .awaitingAnswer = state { throw .protocolViolation("the server closed the connection without answering") }
    }

    private func outcome(of payload: LoginResponsePayload) throws(LoginFailure) -> Outcome {
        switch payload.result {
        case let .registered(registered)?:
            guard case .register = request else { throw .protocolViolation("registration answer to a login") }
            return .registered(name: registered.name)
        case let .credential(signed)?:
            guard case let .login(_, _, key) = request else { throw .protocolViolation("credential answer to a registration") }
            let credential: Credential
            do { credential = try Credential.verify(signed, issuer: serverKey, now: Int64(now)) } catch { throw .badCredential(error) }
            guard credential.userPublicKey == key else { throw .protocolViolation("the credential certifies another key") }
            return .loggedIn(credential)
        case let .error(error)?:
            throw failure(for: error)
        case nil:
            throw .protocolViolation("answer without a result")
        }
    }

    private var requestedName: String {
        switch request {
        case let .register(name, _), let .login(name, _, _): return (try? UserName.canonical(name)) ?? name
        }
    }

    private func failure(for error: LoginError) -> LoginFailure {
        switch error.code {
        case .wrongPassword: return .wrongPassword(name: requestedName)
        case .unknownName: return .unknownName(name: requestedName)
        case .nameTaken: return .nameTaken(name: requestedName)
        case .invalidName: return .invalidName(error.message)
        case .weakPassword: return .weakPassword(error.message)
        case .rateLimited: return .rateLimited(retryAfter: Int(error.retryAfterSeconds))
        case .keyMismatch: return .keyMismatch(error.message)
        case .stale, .replayed: return .clockOrReplay(error.message)
        case .malformed: return .protocolViolation("the server could not read the request: \(error.message)")
        case .internal, .errorUnspecified, .UNRECOGNIZED: return .serverError(error.message)
        }
    }
}
