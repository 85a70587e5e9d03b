import Foundation
import Logging
import SkylarkCrypto
import SkylarkWire
import Synchronization

/// Decides every registration and login. Stateless per request apart from the throttles and the
/// replay guard; the clock is passed in, so tests can drive it at any time they like.
///
/// `handle` does the expensive work (RSA-OAEP decryption, scrypt, RSA-PSS signing) and blocks:
/// the I/O adapter runs it on a thread pool, never on an event loop.
public final class LoginAuthority: Sendable {
    public struct Configuration: Sendable {
        /// How long a credential is valid.
        public var credentialLifetime: Int64 = 24 * 3600
        /// Largest accepted difference between the client's timestamp and ours, in seconds.
        public var replayWindow: Double = 120
        public var nameThrottle: FailureThrottle.Policy = .perName
        public var addressThrottle: FailureThrottle.Policy = .perAddress
        public var passwordHashing: Scrypt.Parameters = .interactive

        public init() {}
    }

    /// What to send back, and whether the link ends after it.
    public struct Outcome: Sendable {
        public var frame: LoginServerFrame
        public var closesConnection: Bool
    }

    private struct Guards {
        var names: FailureThrottle
        var addresses: FailureThrottle
        var replays: ReplayGuard
    }

    private let key: RSA.PrivateKey
    private let keyFingerprint: [UInt8]
    private let store: any AccountStore
    private let configuration: Configuration
    private let guards: Mutex<Guards>
    private let logger: Logger

    public init(key: RSA.PrivateKey, store: any AccountStore, configuration: Configuration = .init(), logger: Logger) throws {
        self.key = key
        self.keyFingerprint = try key.publicKey.fingerprint()
        self.store = store
        self.configuration = configuration
        self.guards = Mutex(
            Guards(
                names: FailureThrottle(policy: configuration.nameThrottle),
                addresses: FailureThrottle(policy: configuration.addressThrottle),
                replays: ReplayGuard(window: configuration.replayWindow)))
        self.logger = logger
    }

    public func handle(_ sealed: LoginSealedRequest, from address: String, now: Double) -> Outcome {
        var logger = self.logger
        logger[metadataKey: "peer.address"] = "\(address)"

        let opened: (sessionKey: [UInt8], payload: LoginRequestPayload)
        do {
            opened = try LoginEnvelope.openRequest(sealed, with: key, fingerprint: keyFingerprint)
        } catch .keyMismatch {
            logger.notice("login request encrypted to another key", metadata: ["login.result": "key-mismatch"])
            return plainError(
                .keyMismatch,
                "this login server holds key \(keyFingerprint.hexString.prefix(16)), not \(Array(sealed.serverKeyFingerprint).hexString.prefix(16))")
        } catch {
            logger.notice("undecryptable login request", metadata: ["login.result": "malformed"])
            return plainError(.malformed, "the request could not be decrypted")
        }
        let payload = opened.payload

        let verdict = guards.withLock { $0.replays.admit(requestID: Array(payload.requestID), timestamp: Double(payload.timestampMs) / 1000, now: now) }
        switch verdict {
        case .fresh: break
        case .stale:
            logger.notice("stale login request", metadata: ["login.result": "stale"])
            return sealedError(
                .stale, "the request's timestamp is more than \(Int(configuration.replayWindow)) s from the server's clock", payload: payload,
                sessionKey: opened.sessionKey, close: true)
        case .replayed:
            logger.warning("replayed login request", metadata: ["login.result": "replayed"])
            return sealedError(.replayed, "this request was already received", payload: payload, sessionKey: opened.sessionKey, close: true)
        }

        let result: LoginResponsePayload.OneOf_Result
        switch payload.request {
        case let .register(request)?:
            result = register(request, address: address, now: now, logger: logger)
        case let .login(request)?:
            result = login(request, address: address, now: now, logger: logger)
        case nil:
            return sealedError(.malformed, "the request is neither a registration nor a login", payload: payload, sessionKey: opened.sessionKey, close: true)
        }
        var response = LoginResponsePayload()
        response.requestID = payload.requestID
        response.result = result
        return seal(response, sessionKey: opened.sessionKey, close: false)
    }

    // MARK: - Registration and login

    private func register(_ request: LoginRegisterRequest, address: String, now: Double, logger: Logger) -> LoginResponsePayload.OneOf_Result {
        let name: String
        do { name = try UserName.canonical(request.name) } catch { return .error(.init(.invalidName, error.description)) }
        if let problem = PasswordPolicy.problem(with: request.password) { return .error(.init(.weakPassword, problem)) }
        if let wait = guards.withLock({ $0.addresses.retryAfter(address, now: now) }) { return rateLimited(wait) }

        let salt = SecureRandom.bytes(16)
        do {
            let hash = try Scrypt.derive(password: Array(request.password.utf8), salt: salt, parameters: configuration.passwordHashing)
            try store.createAccount(AccountRecord(name: name, salt: salt, passwordHash: hash, parameters: configuration.passwordHashing, createdAt: Int64(now)))
        } catch AccountStoreError.nameTaken {
            // Counts as a failure so that nobody probes the name space at full speed.
            guards.withLock { $0.addresses.recordFailure(address, now: now) }
            logger.info("registration refused", metadata: ["login.name": "\(name)", "login.result": "name-taken"])
            return .error(.init(.nameTaken, "the name '\(name)' is taken"))
        } catch {
            logger.error("registration failed", metadata: ["login.name": "\(name)", "login.error": "\(error)"])
            return .error(.init(.internal, "the account store is unavailable"))
        }
        logger.info("registered", metadata: ["login.name": "\(name)", "login.result": "registered"])
        var registered = LoginRegistered()
        registered.name = name
        return .registered(registered)
    }

    private func login(_ request: LoginLoginRequest, address: String, now: Double, logger: Logger) -> LoginResponsePayload.OneOf_Result {
        let name: String
        do { name = try UserName.canonical(request.name) } catch { return .error(.init(.invalidName, error.description)) }
        guard request.userPublicKey.count == Ed25519.keyByteCount, (try? Ed25519.PublicKey(rawRepresentation: Array(request.userPublicKey))) != nil else {
            return .error(.init(.malformed, "the user public key is not a raw Ed25519 key"))
        }
        let wait = guards.withLock { max($0.names.retryAfter(name, now: now) ?? 0, $0.addresses.retryAfter(address, now: now) ?? 0) }
        if wait > 0 {
            logger.notice("login throttled", metadata: ["login.name": "\(name)", "login.result": "rate-limited"])
            return rateLimited(wait)
        }

        let account: AccountRecord?
        do { account = try store.account(named: name) } catch {
            logger.error("account lookup failed", metadata: ["login.name": "\(name)", "login.error": "\(error)"])
            return .error(.init(.internal, "the account store is unavailable"))
        }
        guard let account else {
            guards.withLock { $0.addresses.recordFailure(address, now: now) }
            logger.info("login refused", metadata: ["login.name": "\(name)", "login.result": "unknown-name"])
            return .error(.init(.unknownName, "no account is named '\(name)'"))
        }
        let matches: Bool
        do {
            let hash = try Scrypt.derive(
                password: Array(request.password.utf8), salt: account.salt, parameters: account.parameters, outputByteCount: account.passwordHash.count)
            matches = constantTimeEquals(hash, account.passwordHash)
        } catch {
            logger.error("password hashing failed", metadata: ["login.error": "\(error)"])
            return .error(.init(.internal, "password check failed"))
        }
        guard matches else {
            guards.withLock {
                $0.names.recordFailure(name, now: now)
                $0.addresses.recordFailure(address, now: now)
            }
            logger.info("login refused", metadata: ["login.name": "\(name)", "login.result": "wrong-password"])
            return .error(.init(.wrongPassword, "wrong password for '\(name)'"))
        }
        guards.withLock { $0.names.recordSuccess(name) }

        do {
            let serial = try store.nextCredentialSerial()
            let credential = try Credential.issue(
                name: name, userPublicKey: Array(request.userPublicKey), issuedAt: Int64(now),
                lifetime: configuration.credentialLifetime, serial: serial, signer: key)
            logger.info("logged in", metadata: ["login.name": "\(name)", "login.result": "ok", "login.serial": "\(serial)"])
            return .credential(credential)
        } catch {
            logger.error("credential issue failed", metadata: ["login.name": "\(name)", "login.error": "\(error)"])
            return .error(.init(.internal, "could not issue a credential"))
        }
    }

    // MARK: - Answers

    private func rateLimited(_ wait: Double) -> LoginResponsePayload.OneOf_Result {
        let seconds = UInt32(max(1, wait.rounded(.up)))
        var error = LoginError(.rateLimited, "too many failed attempts; try again in \(seconds) s")
        error.retryAfterSeconds = seconds
        return .error(error)
    }

    private func plainError(_ code: LoginErrorCode, _ message: String) -> Outcome {
        var frame = LoginServerFrame()
        frame.error = LoginError(code, message)
        return Outcome(frame: frame, closesConnection: true)
    }

    private func sealedError(_ code: LoginErrorCode, _ message: String, payload: LoginRequestPayload, sessionKey: [UInt8], close: Bool) -> Outcome {
        var response = LoginResponsePayload()
        response.requestID = payload.requestID
        response.error = LoginError(code, message)
        return seal(response, sessionKey: sessionKey, close: close)
    }

    private func seal(_ response: LoginResponsePayload, sessionKey: [UInt8], close: Bool) -> Outcome {
        do {
            var frame = LoginServerFrame()
            frame.sealed = try LoginEnvelope.sealResponse(response, sessionKey: sessionKey)
            return Outcome(frame: frame, closesConnection: close)
        } catch {
            return plainError(.internal, "could not seal the answer")
        }
    }
}

extension LoginError {
    init(_ code: LoginErrorCode, _ message: String) {
        self.init()
        self.code = code
        self.message = message
    }
}
