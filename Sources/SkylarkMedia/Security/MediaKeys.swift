import SkylarkCrypto

/// The media keys of one call: one AES-256-GCM key and one 4-byte nonce salt per direction.
///
/// Two directions, two keys: the caller and the callee both start their packet indices near
/// zero and may pick the same SSRC, so under one shared key their nonces would collide — the
/// one thing GCM cannot survive. Separate keys make each key's nonces unique by construction.
public struct MediaKeys: Sendable, Equatable {
    public static let sharedSecretByteCount = 32
    public static let saltByteCount = 4

    /// The key and salt that protect one direction of the call.
    public struct Direction: Sendable, Equatable, CustomStringConvertible {
        /// 32 bytes, AES-256-GCM.
        public let key: [UInt8]
        /// 4 bytes, mixed into every nonce (see `MediaCipher.nonce`).
        public let salt: [UInt8]

        public init(key: [UInt8], salt: [UInt8]) throws(MediaCipherError) {
            guard key.count == AESGCM.keyByteCount else { throw .invalidKeyMaterial("media key must be \(AESGCM.keyByteCount) bytes, got \(key.count)") }
            guard salt.count == MediaKeys.saltByteCount else {
                throw .invalidKeyMaterial("media salt must be \(MediaKeys.saltByteCount) bytes, got \(salt.count)")
            }
            self.key = key
            self.salt = salt
        }

        /// Keys never reach logs by accident.
        public var description: String { "MediaKeys.Direction(<redacted>)" }
    }

    /// Protects what the caller sends.
    public let callerToCallee: Direction
    /// Protects what the callee sends.
    public let calleeToCaller: Direction

    public init(callerToCallee: Direction, calleeToCaller: Direction) {
        self.callerToCallee = callerToCallee
        self.calleeToCaller = calleeToCaller
    }

    /// HKDF labels, one per direction. The version lets a future layout change keys too.
    static let callerToCalleeLabel = Array("skylark-media-v1 caller->callee".utf8)
    static let calleeToCallerLabel = Array("skylark-media-v1 callee->caller".utf8)

    /// Derives both directions from the call's 32-byte shared secret (from the call's ephemeral
    /// X25519 agreement) with HKDF-SHA256: salt = the call ID, info = the direction's label,
    /// 36 bytes out = key (32) ‖ salt (4).
    ///
    /// The call ID as HKDF salt means a secret reused by mistake across two calls still gives
    /// unrelated keys, so packet indices restarting at zero in the second call never reuse a
    /// (key, nonce) pair. The call ID must therefore be unique per call (CallSession draws 16
    /// random bytes).
    public static func derive(sharedSecret: [UInt8], callID: [UInt8]) throws(MediaCipherError) -> MediaKeys {
        guard sharedSecret.count == sharedSecretByteCount else {
            throw .invalidKeyMaterial("shared secret must be \(sharedSecretByteCount) bytes, got \(sharedSecret.count)")
        }
        guard !callID.isEmpty else { throw .invalidKeyMaterial("call ID must not be empty") }
        func direction(_ label: [UInt8]) throws(MediaCipherError) -> Direction {
            let material: [UInt8]
            do {
                material = try HKDF.sha256(
                    inputKeyMaterial: sharedSecret, salt: callID, info: label,
                    outputByteCount: AESGCM.keyByteCount + saltByteCount)
            } catch {
                throw .crypto(String(describing: error))
            }
            return try Direction(key: Array(material[0..<AESGCM.keyByteCount]), salt: Array(material[AESGCM.keyByteCount...]))
        }
        return MediaKeys(callerToCallee: try direction(callerToCalleeLabel), calleeToCaller: try direction(calleeToCallerLabel))
    }
}
