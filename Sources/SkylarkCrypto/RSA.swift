import COpenSSL

/// RSA with OAEP-SHA256 encryption and PSS-SHA256 signatures. Keys below 2048 bits are refused.
public enum RSA {
    public static let minimumBits = 2048

    public struct PrivateKey: Sendable {
        let key: EVPKey

        /// Generates a new key pair (≈0.1–1 s for 2048–3072 bits).
        public init(bits: Int = 3072) throws {
            guard bits >= RSA.minimumBits else { throw CryptoError.keyTooSmall(bits: bits) }
            key = try EVPKey.generate("RSA") { context in
                try check(EVP_PKEY_CTX_set_rsa_keygen_bits(context, Int32(bits)), "EVP_PKEY_CTX_set_rsa_keygen_bits")
            }
        }

        public init(pem: String) throws {
            let key = try EVPKey.readPrivatePEM(pem)
            try RSA.validate(key)
            self.key = key
        }

        /// PKCS#8 PEM, unencrypted; callers store it with owner-only permissions.
        public func pem() throws -> String { try key.privatePEM() }

        public var publicKey: PublicKey { PublicKey(key: key) }
        public var bits: Int { key.bits }

        /// Undoes `PublicKey.encrypt`. Any failure is reported as `.authenticationFailed`, never in
        /// detail, so that a caller cannot learn why (Bleichenbacher/Manger-style oracles).
        public func decrypt(_ ciphertext: [UInt8]) throws -> [UInt8] {
            try key.withContext { context in
                try check(EVP_PKEY_decrypt_init(context), "EVP_PKEY_decrypt_init")
                try RSA.configureOAEP(context)
                var length = 0
                guard EVP_PKEY_decrypt(context, nil, &length, ciphertext, ciphertext.count) == 1 else {
                    ERR_clear_error()
                    throw CryptoError.authenticationFailed
                }
                var out = [UInt8](repeating: 0, count: length)
                guard EVP_PKEY_decrypt(context, &out, &length, ciphertext, ciphertext.count) == 1 else {
                    ERR_clear_error()
                    throw CryptoError.authenticationFailed
                }
                return Array(out.prefix(length))
            }
        }

        /// RSASSA-PSS over SHA-256 of `message`, salt length = digest length.
        public func sign(_ message: [UInt8]) throws -> [UInt8] {
            guard let context = EVP_MD_CTX_new() else { throw CryptoError.fromQueue("EVP_MD_CTX_new") }
            defer { EVP_MD_CTX_free(context) }
            var pkeyContext: OpaquePointer?
            try check(EVP_DigestSignInit(context, &pkeyContext, EVP_sha256(), nil, key.pointer), "EVP_DigestSignInit")
            try RSA.configurePSS(pkeyContext!)
            var length = 0
            try check(EVP_DigestSign(context, nil, &length, message, message.count), "EVP_DigestSign")
            var out = [UInt8](repeating: 0, count: length)
            try check(EVP_DigestSign(context, &out, &length, message, message.count), "EVP_DigestSign")
            return Array(out.prefix(length))
        }
    }

    public struct PublicKey: Sendable, Equatable {
        let key: EVPKey

        init(key: EVPKey) { self.key = key }

        public init(pem: String) throws {
            let key = try EVPKey.readPublicPEM(pem)
            try RSA.validate(key)
            self.key = key
        }

        public init(der: [UInt8]) throws {
            let key = try EVPKey.readPublicDER(der)
            try RSA.validate(key)
            self.key = key
        }

        public func pem() throws -> String { try key.publicPEM() }
        /// DER SubjectPublicKeyInfo.
        public func der() throws -> [UInt8] { try key.publicDER() }
        /// SHA-256 of the DER SubjectPublicKeyInfo: what profiles and error messages name.
        public func fingerprint() throws -> [UInt8] { SHA256.hash(try der()) }
        public var bits: Int { key.bits }

        public func encrypt(_ plaintext: [UInt8]) throws -> [UInt8] {
            try key.withContext { context in
                try check(EVP_PKEY_encrypt_init(context), "EVP_PKEY_encrypt_init")
                try RSA.configureOAEP(context)
                var length = 0
                try check(EVP_PKEY_encrypt(context, nil, &length, plaintext, plaintext.count), "EVP_PKEY_encrypt")
                var out = [UInt8](repeating: 0, count: length)
                try check(EVP_PKEY_encrypt(context, &out, &length, plaintext, plaintext.count), "EVP_PKEY_encrypt")
                return Array(out.prefix(length))
            }
        }

        /// True only for a valid PSS-SHA256 signature of exactly `message` by the matching private key.
        public func verify(signature: [UInt8], for message: [UInt8]) -> Bool {
            guard let context = EVP_MD_CTX_new() else { return false }
            defer { EVP_MD_CTX_free(context) }
            defer { ERR_clear_error() }
            var pkeyContext: OpaquePointer?
            guard EVP_DigestVerifyInit(context, &pkeyContext, EVP_sha256(), nil, key.pointer) == 1,
                (try? RSA.configurePSS(pkeyContext!)) != nil
            else { return false }
            return EVP_DigestVerify(context, signature, signature.count, message, message.count) == 1
        }

        public static func == (lhs: PublicKey, rhs: PublicKey) -> Bool {
            EVP_PKEY_eq(lhs.key.pointer, rhs.key.pointer) == 1
        }
    }

    static func validate(_ key: EVPKey) throws {
        guard key.isType("RSA") else { throw CryptoError.invalidKey("not an RSA key") }
        guard key.bits >= minimumBits else { throw CryptoError.keyTooSmall(bits: key.bits) }
    }

    static func configureOAEP(_ context: OpaquePointer) throws {
        try check(EVP_PKEY_CTX_set_rsa_padding(context, RSA_PKCS1_OAEP_PADDING), "EVP_PKEY_CTX_set_rsa_padding(OAEP)")
        try check(EVP_PKEY_CTX_set_rsa_oaep_md(context, EVP_sha256()), "EVP_PKEY_CTX_set_rsa_oaep_md")
        try check(EVP_PKEY_CTX_set_rsa_mgf1_md(context, EVP_sha256()), "EVP_PKEY_CTX_set_rsa_mgf1_md")
    }

    static func configurePSS(_ context: OpaquePointer) throws {
        try check(EVP_PKEY_CTX_set_rsa_padding(context, RSA_PKCS1_PSS_PADDING), "EVP_PKEY_CTX_set_rsa_padding(PSS)")
        try check(EVP_PKEY_CTX_set_rsa_pss_saltlen(context, RSA_PSS_SALTLEN_DIGEST), "EVP_PKEY_CTX_set_rsa_pss_saltlen")
        try check(EVP_PKEY_CTX_set_rsa_mgf1_md(context, EVP_sha256()), "EVP_PKEY_CTX_set_rsa_mgf1_md")
    }
}
