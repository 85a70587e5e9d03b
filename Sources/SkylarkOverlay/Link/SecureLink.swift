import Foundation
import SkylarkCrypto
import SkylarkWire

/// One link between two nodes, either side, as a sans-I/O state machine: bytes in, actions out.
///
/// Handshake (three plaintext frames), then AES-256-GCM frames:
///   initiator -> Hello{ephemeral e_i, purpose}
///   responder -> HelloReply{e_r, credential_r, sig_r("responder" || H1)}
///   initiator -> Finish{credential_i, sig_i("initiator" || H2)}
/// with H1 = SHA-256(label || hello || e_r || credential_r) and H2 = SHA-256(H1 || credential_i).
/// Both credentials must be signed by the pinned login key and valid now; each signature proves
/// possession of the certified identity key and covers both fresh ephemeral keys, so a recorded
/// handshake cannot be replayed. Keys: HKDF-SHA256(X25519(e_i, e_r), salt H1) -> one AES-256 key
/// per direction; the GCM nonce is a per-direction frame counter, so a dropped, repeated or
/// reordered frame fails authentication and ends the link.
public struct SecureLink: Sendable {
    public static let version: UInt32 = 1
    public static let maximumFrameSize = 256 * 1024
    static let label = Array("skylark-link-v1".utf8)

    public enum Role: Sendable {
        /// `expectedPeer`: the node id we meant to reach, if known; anyone else is refused.
        case initiator(purpose: OvLinkPurpose, dialBackNonce: [UInt8] = [], expectedPeer: NodeID? = nil)
        /// Supernodes accept ANONYMOUS initiators (clients about to log in) and SUPERNODE links;
        /// other nodes accept neither.
        case responder(isSupernode: Bool)
    }

    public enum Action: Sendable {
        case send([UInt8])
        /// The handshake finished. `peer` is nil for an ANONYMOUS initiator; `purpose` is what the
        /// initiator declared (a supernode learns whether a client or a supernode called).
        case established(peer: PeerIdentity?, purpose: OvLinkPurpose)
        /// An anonymous peer proved a credential on this link (`Authenticate`).
        case upgraded(peer: PeerIdentity)
        case message(OvLinkMessage)
        /// A supernode dialled back to check our reachability; the link then closes.
        case dialBack(nonce: [UInt8])
        case close(LinkError)
    }

    /// Every link error ends the link: after a failed tag or a bad handshake nothing more on it
    /// can be trusted.
    public enum LinkError: Error, Equatable, Sendable, CustomStringConvertible {
        case handshake(String)
        case refusedByPeer(String)
        case wire(String)
        case decryption
        case protocolViolation(String)
        /// A dial-back probe, not an error; the link has done its job.
        case dialBackComplete

        public var description: String {
            switch self {
            case let .handshake(why): return "handshake failed: \(why)"
            case let .refusedByPeer(why): return "peer refused the link: \(why)"
            case let .wire(why): return "link framing: \(why)"
            case .decryption: return "a frame failed authentication"
            case let .protocolViolation(why): return "protocol violation: \(why)"
            case .dialBackComplete: return "dial-back probe complete"
            }
        }
    }

    private struct Keys: Sendable {
        var sendKey: [UInt8]
        var receiveKey: [UInt8]
        var sendCounter: UInt64 = 0
        var receiveCounter: UInt64 = 0
    }

    private enum State: Sendable {
        case idle
        /// Initiator: Hello sent, waiting for HelloReply.
        case awaitingReply(hello: [UInt8])
        /// Responder: waiting for Hello.
        case awaitingHello
        /// Responder: HelloReply sent, waiting for Finish.
        case awaitingFinish(hello: [UInt8], transcript: [UInt8], keys: Keys)
        case established(transcript: [UInt8], keys: Keys)
        case closed
    }

    public let role: Role
    private let identity: LocalIdentity
    private let verifier: Verifier
    private let ephemeral: X25519.PrivateKey
    private var decoder = FrameDecoder(maximumFrameSize: SecureLink.maximumFrameSize)
    private var state: State = .idle
    public private(set) var peer: PeerIdentity?

    public init(role: Role, identity: LocalIdentity, verifier: Verifier, ephemeral: X25519.PrivateKey? = nil) throws {
        self.role = role
        self.identity = identity
        self.verifier = verifier
        self.ephemeral = try ephemeral ?? X25519.PrivateKey()
    }

    public var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    public var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    /// Initiator: the Hello. Responder: nothing (it waits for the Hello).
    public mutating func start() -> [Action] {
        guard case .idle = state else { return [] }
        switch role {
        case .responder:
            state = .awaitingHello
            return []
        case let .initiator(purpose, nonce, _):
            if purpose != .anonymous && identity.credential == nil { return fail(.handshake("a \(purpose) link needs a credential")) }
            var hello = OvHello()
            hello.version = Self.version
            hello.purpose = purpose
            hello.dialBackNonce = Data(nonce)
            do {
                hello.ephemeralKey = Data(try ephemeral.publicKey())
                let helloBytes: [UInt8] = try hello.serializedBytes()
                var frame = OvHandshakeFrame()
                frame.hello = hello
                let bytes = try MessageEncoder.encode(frame, maximumFrameSize: Self.maximumFrameSize)
                state = .awaitingReply(hello: helloBytes)
                return [.send(bytes)]
            } catch {
                return fail(.handshake("cannot build the hello: \(error)"))
            }
        }
    }

    public mutating func receive<Bytes: Sequence<UInt8>>(_ bytes: Bytes, now: Double) -> [Action] {
        if case .closed = state { return [] }
        decoder.append(bytes: bytes)
        var actions: [Action] = []
        while true {
            let frame: [UInt8]?
            do { frame = try decoder.next() } catch { return actions + fail(.wire("\(error)")) }
            guard let frame else { return actions }
            actions += handle(frame: frame, now: now)
            if case .closed = state { return actions }
        }
    }

    /// The peer closed its side.
    public mutating func endOfInput() -> [Action] {
        if case .closed = state { return [] }
        if case .established = state { state = .closed; return [.close(.wire("closed by peer"))] }
        return fail(.handshake("connection closed during the handshake"))
    }

    /// Encrypts one message for the established link.
    public mutating func seal(_ message: OvLinkMessage) throws -> [UInt8] {
        guard case .established(let transcript, var keys) = state else { throw LinkError.protocolViolation("link not established") }
        let plaintext: [UInt8] = try message.serializedBytes()
        // Checked before the counter moves: a message that cannot be sent must not cost a nonce,
        // or every later frame would fail at the peer.
        guard plaintext.count + AESGCM.tagByteCount <= Self.maximumFrameSize else {
            throw LinkError.protocolViolation("message of \(plaintext.count) bytes exceeds the link's frame limit")
        }
        let sealed = try AESGCM.seal(plaintext, key: keys.sendKey, nonce: Self.nonce(keys.sendCounter))
        let frame = try Framing.encode(sealed, maximumFrameSize: Self.maximumFrameSize)
        keys.sendCounter += 1
        state = .established(transcript: transcript, keys: keys)
        return frame
    }

    /// Initiator of an ANONYMOUS link, after logging in through it: the message that proves the
    /// new credential on this very link (bound to its transcript).
    public func authenticateMessage(requestID: UInt64, identity: LocalIdentity) throws -> OvLinkMessage {
        guard case let .established(transcript, _) = state, let credential = identity.credential else {
            throw LinkError.protocolViolation("no credential or link not established")
        }
        var authenticate = OvAuthenticate()
        authenticate.credential = credential.signed
        authenticate.signature = Data(try identity.key.sign(Self.signingInput("upgrade", transcript)))
        var message = OvLinkMessage()
        message.id = requestID
        message.authenticate = authenticate
        return message
    }

    // MARK: - Frames

    private mutating func handle(frame: [UInt8], now: Double) -> [Action] {
        switch state {
        case .idle, .closed:
            return fail(.protocolViolation("frame before start"))
        case let .awaitingReply(hello):
            guard let handshake = try? OvHandshakeFrame(serializedBytes: frame) else { return fail(.handshake("malformed handshake frame")) }
            return initiatorReceived(handshake, hello: hello, now: now)
        case .awaitingHello:
            guard let handshake = try? OvHandshakeFrame(serializedBytes: frame) else { return fail(.handshake("malformed handshake frame")) }
            return responderReceivedHello(handshake, now: now)
        case let .awaitingFinish(_, transcript, keys):
            guard let handshake = try? OvHandshakeFrame(serializedBytes: frame) else { return fail(.handshake("malformed handshake frame")) }
            return responderReceivedFinish(handshake, transcript: transcript, keys: keys, now: now)
        case .established(let transcript, var keys):
            guard let plaintext = try? AESGCM.open(frame, key: keys.receiveKey, nonce: Self.nonce(keys.receiveCounter)) else {
                return fail(.decryption)
            }
            keys.receiveCounter += 1
            state = .established(transcript: transcript, keys: keys)
            guard let message = try? OvLinkMessage(serializedBytes: plaintext) else { return fail(.protocolViolation("undecodable message")) }
            if case let .authenticate(authenticate)? = message.body, case .responder = role {
                return responderReceivedAuthenticate(authenticate, requestID: message.id, transcript: transcript, now: now)
            }
            return [.message(message)]
        }
    }

    private mutating func initiatorReceived(_ frame: OvHandshakeFrame, hello: [UInt8], now: Double) -> [Action] {
        guard case let .initiator(purpose, _, expectedPeer) = role else { return fail(.protocolViolation("not an initiator")) }
        switch frame.body {
        case let .refusal(refusal)?:
            state = .closed
            return [.close(.refusedByPeer(refusal.reason))]
        case let .reply(reply)?:
            let credential: Credential
            do { credential = try verifier.credential(reply.credential, now: now) } catch { return fail(.handshake("responder credential: \(error)")) }
            if let expectedPeer, NodeID(bytes: credential.nodeID) != expectedPeer {
                return fail(.handshake("reached \(credential.name), not the expected node \(expectedPeer)"))
            }
            let responderEphemeral = Array(reply.ephemeralKey)
            let transcript = Self.transcript(hello: hello, responderEphemeral: responderEphemeral, responderCredential: reply.credential)
            guard verifier.signature(Array(reply.signature), by: credential, over: Self.signingInput("responder", transcript)) else {
                return fail(.handshake("responder signature does not match its credential"))
            }
            guard purpose != .dialBack else {
                // The probe has done its job once the peer answered; nothing more to say.
                state = .closed
                return [.close(.dialBackComplete)]
            }
            do {
                let (initiatorKey, responderKey) = try deriveKeys(peerEphemeral: responderEphemeral, transcript: transcript)
                var finish = OvFinish()
                let ownCredential = purpose == .anonymous ? nil : identity.credential
                let finalTranscript = SHA256.hash(transcript + (ownCredential?.signed.transcriptBytes ?? []))
                if let ownCredential {
                    finish.credential = ownCredential.signed
                    finish.signature = Data(try identity.key.sign(Self.signingInput("initiator", finalTranscript)))
                }
                var out = OvHandshakeFrame()
                out.finish = finish
                let bytes = try MessageEncoder.encode(out, maximumFrameSize: Self.maximumFrameSize)
                state = .established(transcript: transcript, keys: Keys(sendKey: initiatorKey, receiveKey: responderKey))
                peer = PeerIdentity(credential: credential)
                return [.send(bytes), .established(peer: peer, purpose: purpose)]
            } catch {
                return fail(.handshake("key agreement: \(error)"))
            }
        default:
            return fail(.handshake("expected a hello reply"))
        }
    }

    private mutating func responderReceivedHello(_ frame: OvHandshakeFrame, now: Double) -> [Action] {
        guard case let .responder(isSupernode) = role else { return fail(.protocolViolation("not a responder")) }
        guard case let .hello(hello)? = frame.body else { return fail(.handshake("expected a hello")) }
        guard hello.version == Self.version else { return refuse("unsupported link version \(hello.version)") }
        if hello.purpose == .anonymous && !isSupernode { return refuse("this node is not a supernode: it does not accept anonymous links") }
        if hello.purpose == .supernode && !isSupernode { return refuse("this node is not a supernode") }
        if case .UNRECOGNIZED = hello.purpose { return refuse("unknown link purpose") }
        guard let ownCredential = identity.credential else { return refuse("this node is not logged in") }
        guard hello.dialBackNonce.count <= 64 else { return fail(.handshake("oversized dial-back nonce")) }
        do {
            let helloBytes: [UInt8] = try hello.serializedBytes()
            let ownEphemeral = try ephemeral.publicKey()
            let transcript = Self.transcript(hello: helloBytes, responderEphemeral: ownEphemeral, responderCredential: ownCredential.signed)
            let (initiatorKey, responderKey) = try deriveKeys(peerEphemeral: Array(hello.ephemeralKey), transcript: transcript)
            var reply = OvHelloReply()
            reply.ephemeralKey = Data(ownEphemeral)
            reply.credential = ownCredential.signed
            reply.signature = Data(try identity.key.sign(Self.signingInput("responder", transcript)))
            var out = OvHandshakeFrame()
            out.reply = reply
            let bytes = try MessageEncoder.encode(out, maximumFrameSize: Self.maximumFrameSize)
            if hello.purpose == .dialBack {
                // Answer so the prober sees a live Skylark node, then report the nonce.
                state = .closed
                return [.send(bytes), .dialBack(nonce: Array(hello.dialBackNonce)), .close(.dialBackComplete)]
            }
            state = .awaitingFinish(hello: helloBytes, transcript: transcript, keys: Keys(sendKey: responderKey, receiveKey: initiatorKey))
            return [.send(bytes)]
        } catch {
            return fail(.handshake("key agreement: \(error)"))
        }
    }

    private mutating func responderReceivedFinish(_ frame: OvHandshakeFrame, transcript: [UInt8], keys: Keys, now: Double) -> [Action] {
        guard case let .finish(finish)? = frame.body else { return fail(.handshake("expected a finish")) }
        guard case let .awaitingFinish(hello, _, _) = state, let helloMessage = try? OvHello(serializedBytes: hello) else {
            return fail(.protocolViolation("finish out of order"))
        }
        if helloMessage.purpose == .anonymous {
            guard !finish.hasCredential else { return fail(.handshake("an anonymous finish carries a credential")) }
            state = .established(transcript: transcript, keys: keys)
            peer = nil
            return [.established(peer: nil, purpose: .anonymous)]
        }
        guard finish.hasCredential else { return fail(.handshake("the initiator presented no credential")) }
        let credential: Credential
        do { credential = try verifier.credential(finish.credential, now: now) } catch { return fail(.handshake("initiator credential: \(error)")) }
        let finalTranscript = SHA256.hash(transcript + finish.credential.transcriptBytes)
        guard verifier.signature(Array(finish.signature), by: credential, over: Self.signingInput("initiator", finalTranscript)) else {
            return fail(.handshake("initiator signature does not match its credential"))
        }
        state = .established(transcript: transcript, keys: keys)
        peer = PeerIdentity(credential: credential)
        return [.established(peer: peer, purpose: helloMessage.purpose)]
    }

    private mutating func responderReceivedAuthenticate(_ authenticate: OvAuthenticate, requestID: UInt64, transcript: [UInt8], now: Double) -> [Action] {
        var answer = OvLinkMessage()
        answer.id = requestID
        let outcome: PeerIdentity?
        if peer != nil {
            answer.refused = .init(code: .notAllowed, reason: "the link is already authenticated")
            outcome = nil
        } else if let credential = try? verifier.credential(authenticate.credential, now: now),
            verifier.signature(Array(authenticate.signature), by: credential, over: Self.signingInput("upgrade", transcript))
        {
            answer.ack = OvAck()
            outcome = PeerIdentity(credential: credential)
            peer = outcome
        } else {
            answer.refused = .init(code: .invalid, reason: "credential or signature rejected")
            outcome = nil
        }
        guard let bytes = try? seal(answer) else { return fail(.protocolViolation("cannot answer")) }
        if let outcome { return [.send(bytes), .upgraded(peer: outcome)] }
        return [.send(bytes)]
    }

    // MARK: - Helpers

    private mutating func fail(_ error: LinkError) -> [Action] {
        state = .closed
        return [.close(error)]
    }

    private mutating func refuse(_ reason: String) -> [Action] {
        var frame = OvHandshakeFrame()
        frame.refusal = OvHandshakeRefusal()
        frame.refusal.reason = reason
        state = .closed
        let bytes = (try? MessageEncoder.encode(frame)) ?? []
        return (bytes.isEmpty ? [] : [.send(bytes)]) + [.close(.handshake(reason))]
    }

    private func deriveKeys(peerEphemeral: [UInt8], transcript: [UInt8]) throws -> (initiator: [UInt8], responder: [UInt8]) {
        let shared = try ephemeral.sharedSecret(with: peerEphemeral)
        let material = try HKDF.sha256(inputKeyMaterial: shared, salt: transcript, info: Self.label + Array(" keys".utf8), outputByteCount: 64)
        return (Array(material[0..<32]), Array(material[32..<64]))
    }

    static func transcript(hello: [UInt8], responderEphemeral: [UInt8], responderCredential: LoginSignedCredential) -> [UInt8] {
        var bytes = label
        let count = UInt32(hello.count)
        bytes += [UInt8(count >> 24), UInt8(count >> 16 & 0xff), UInt8(count >> 8 & 0xff), UInt8(count & 0xff)]
        bytes += hello + responderEphemeral + responderCredential.transcriptBytes
        return SHA256.hash(bytes)
    }

    static func signingInput(_ role: String, _ transcript: [UInt8]) -> [UInt8] {
        label + Array(" \(role)".utf8) + transcript
    }

    static func nonce(_ counter: UInt64) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: AESGCM.nonceByteCount)
        for index in 0..<8 { nonce[4 + index] = UInt8(truncatingIfNeeded: counter >> UInt64(56 - 8 * index)) }
        return nonce
    }
}

extension OvRefused {
    public init(code: OvRefusalCode, reason: String) {
        self.init()
        self.code = code
        self.reason = reason
    }
}
