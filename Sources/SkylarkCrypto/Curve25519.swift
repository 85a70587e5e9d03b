import COpenSSL

/// X25519 key agreement (RFC 7748) for forward-secret link keys.
public enum X25519 {
    public static let keyByteCount = 32

    public struct PrivateKey: Sendable {
        let key: EVPKey

        public init() throws { key = try EVPKey.generate("X25519") }
        public init(rawRepresentation raw: [UInt8]) throws {
            guard raw.count == keyByteCount else { throw CryptoError.invalidLength(what: "X25519 private key", expected: keyByteCount, actual: raw.count) }
            key = try EVPKey.fromRaw(privateKey: raw, type: EVP_PKEY_X25519, name: "X25519")
        }

        public func rawRepresentation() throws -> [UInt8] { try key.rawPrivate() }
        public func publicKey() throws -> [UInt8] { try key.rawPublic() }

        /// The shared secret with `peerPublicKey`. Refuses low-order points (an all-zero result).
        public func sharedSecret(with peerPublicKey: [UInt8]) throws -> [UInt8] {
            guard peerPublicKey.count == keyByteCount else {
                throw CryptoError.invalidLength(what: "X25519 public key", expected: keyByteCount, actual: peerPublicKey.count)
            }
            let peer = try EVPKey.fromRaw(publicKey: peerPublicKey, type: EVP_PKEY_X25519, name: "X25519")
            return try key.withContext { context in
                try check(EVP_PKEY_derive_init(context), "EVP_PKEY_derive_init")
                try check(EVP_PKEY_derive_set_peer(context, peer.pointer), "EVP_PKEY_derive_set_peer")
                var length = 0
                try check(EVP_PKEY_derive(context, nil, &length), "EVP_PKEY_derive")
                var out = [UInt8](repeating: 0, count: length)
                try check(EVP_PKEY_derive(context, &out, &length), "EVP_PKEY_derive")
                return out
            }
        }
    }
}

/// Ed25519 signatures: each user's identity key, certified by the login server.
public enum Ed25519 {
    public static let keyByteCount = 32
    public static let signatureByteCount = 64

    public struct PrivateKey: Sendable {
        let key: EVPKey

        public init() throws { key = try EVPKey.generate("ED25519") }
        public init(rawRepresentation raw: [UInt8]) throws {
            guard raw.count == keyByteCount else { throw CryptoError.invalidLength(what: "Ed25519 private key", expected: keyByteCount, actual: raw.count) }
            key = try EVPKey.fromRaw(privateKey: raw, type: EVP_PKEY_ED25519, name: "Ed25519")
        }
        public init(pem: String) throws {
            let key = try EVPKey.readPrivatePEM(pem)
            guard key.isType("ED25519") else { throw CryptoError.invalidKey("not an Ed25519 key") }
            self.key = key
        }

        public func pem() throws -> String { try key.privatePEM() }
        public func rawRepresentation() throws -> [UInt8] { try key.rawPrivate() }
        public func publicKey() throws -> PublicKey { PublicKey(key: EVPKey.fromRawUnchecked(public: try key.rawPublic())) }

        public func sign(_ message: [UInt8]) throws -> [UInt8] {
            guard let context = EVP_MD_CTX_new() else { throw CryptoError.fromQueue("EVP_MD_CTX_new") }
            defer { EVP_MD_CTX_free(context) }
            try check(EVP_DigestSignInit(context, nil, nil, nil, key.pointer), "EVP_DigestSignInit(Ed25519)")
            var length = Ed25519.signatureByteCount
            var out = [UInt8](repeating: 0, count: length)
            try check(EVP_DigestSign(context, &out, &length, message, message.count), "EVP_DigestSign(Ed25519)")
            return out
        }
    }

    public struct PublicKey: Sendable {
        let key: EVPKey

        init(key: EVPKey) { self.key = key }
        public init(rawRepresentation raw: [UInt8]) throws {
            guard raw.count == keyByteCount else { throw CryptoError.invalidLength(what: "Ed25519 public key", expected: keyByteCount, actual: raw.count) }
            key = try EVPKey.fromRaw(publicKey: raw, type: EVP_PKEY_ED25519, name: "Ed25519")
        }

        public func rawRepresentation() throws -> [UInt8] { try key.rawPublic() }

        public func verify(signature: [UInt8], for message: [UInt8]) -> Bool {
            guard signature.count == Ed25519.signatureByteCount, let context = EVP_MD_CTX_new() else { return false }
            defer { EVP_MD_CTX_free(context) }
            defer { ERR_clear_error() }
            guard EVP_DigestVerifyInit(context, nil, nil, nil, key.pointer) == 1 else { return false }
            return EVP_DigestVerify(context, signature, signature.count, message, message.count) == 1
        }
    }
}

extension EVPKey {
    /// For a raw public key that OpenSSL itself just produced.
    static func fromRawUnchecked(public raw: [UInt8]) -> EVPKey {
        EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, raw, raw.count).map { EVPKey(taking: $0) }!
    }
}
