import COpenSSL

/// AES-256-GCM with a 96-bit nonce and a 128-bit tag appended to the ciphertext.
public enum AESGCM {
    public static let keyByteCount = 32
    public static let nonceByteCount = 12
    public static let tagByteCount = 16

    /// A fresh random key.
    public static func makeKey() -> [UInt8] { SecureRandom.bytes(keyByteCount) }
    /// A fresh random nonce. Callers that send many packets under one key use a counter instead.
    public static func makeNonce() -> [UInt8] { SecureRandom.bytes(nonceByteCount) }

    /// Encrypts `plaintext`; the result is ciphertext followed by the tag.
    public static func seal(_ plaintext: [UInt8], key: [UInt8], nonce: [UInt8], authenticating aad: [UInt8] = []) throws -> [UInt8] {
        try validate(key: key, nonce: nonce)
        guard let context = EVP_CIPHER_CTX_new() else { throw CryptoError.fromQueue("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(context) }
        try check(EVP_EncryptInit_ex(context, EVP_aes_256_gcm(), nil, key, nonce), "EVP_EncryptInit_ex")
        return try seal(plaintext, initialized: context, authenticating: aad)
    }

    /// Decrypts ciphertext-with-tag; throws `.authenticationFailed` if a single bit was changed.
    public static func open(_ sealed: [UInt8], key: [UInt8], nonce: [UInt8], authenticating aad: [UInt8] = []) throws -> [UInt8] {
        try validate(key: key, nonce: nonce)
        guard sealed.count >= tagByteCount else { throw CryptoError.authenticationFailed }
        guard let context = EVP_CIPHER_CTX_new() else { throw CryptoError.fromQueue("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(context) }
        try check(EVP_DecryptInit_ex(context, EVP_aes_256_gcm(), nil, key, nonce), "EVP_DecryptInit_ex")
        return try open(sealed, initialized: context, authenticating: aad)
    }

    /// The rest of a seal on a context that has its key and nonce.
    static func seal(_ plaintext: [UInt8], initialized context: OpaquePointer, authenticating aad: [UInt8]) throws -> [UInt8] {
        var length: Int32 = 0
        if !aad.isEmpty {
            try check(EVP_EncryptUpdate(context, nil, &length, aad, Int32(aad.count)), "EVP_EncryptUpdate(aad)")
        }
        var out = [UInt8](repeating: 0, count: plaintext.count + tagByteCount)
        var written = 0
        if !plaintext.isEmpty {
            try out.withUnsafeMutableBufferPointer { buffer in
                try check(EVP_EncryptUpdate(context, buffer.baseAddress, &length, plaintext, Int32(plaintext.count)), "EVP_EncryptUpdate")
            }
            written = Int(length)
        }
        try out.withUnsafeMutableBufferPointer { buffer in
            try check(EVP_EncryptFinal_ex(context, buffer.baseAddress! + written, &length), "EVP_EncryptFinal_ex")
        }
        written += Int(length)
        try out.withUnsafeMutableBufferPointer { buffer in
            try check(EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, Int32(tagByteCount), buffer.baseAddress! + written), "EVP_CTRL_GCM_GET_TAG")
        }
        return out
    }

    /// The rest of an open on a context that has its key and nonce.
    static func open(_ sealed: [UInt8], initialized context: OpaquePointer, authenticating aad: [UInt8]) throws -> [UInt8] {
        guard sealed.count >= tagByteCount else { throw CryptoError.authenticationFailed }
        let bodyCount = sealed.count - tagByteCount
        var length: Int32 = 0
        if !aad.isEmpty {
            try check(EVP_DecryptUpdate(context, nil, &length, aad, Int32(aad.count)), "EVP_DecryptUpdate(aad)")
        }
        var out = [UInt8](repeating: 0, count: bodyCount)
        var written = 0
        if bodyCount > 0 {
            try out.withUnsafeMutableBufferPointer { buffer in
                try sealed.withUnsafeBufferPointer { input in
                    try check(EVP_DecryptUpdate(context, buffer.baseAddress, &length, input.baseAddress, Int32(bodyCount)), "EVP_DecryptUpdate")
                }
            }
            written = Int(length)
        }
        var tag = Array(sealed[bodyCount...])
        try check(EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, Int32(tagByteCount), &tag), "EVP_CTRL_GCM_SET_TAG")
        var scratch = [UInt8](repeating: 0, count: 16)
        guard EVP_DecryptFinal_ex(context, &scratch, &length) == 1 else {
            ERR_clear_error()
            throw CryptoError.authenticationFailed
        }
        precondition(written + Int(length) == bodyCount)
        return out
    }

    static func validate(key: [UInt8], nonce: [UInt8]) throws {
        try validate(key: key)
        try validate(nonce: nonce)
    }

    static func validate(key: [UInt8]) throws {
        guard key.count == keyByteCount else { throw CryptoError.invalidLength(what: "AES-256 key", expected: keyByteCount, actual: key.count) }
    }

    static func validate(nonce: [UInt8]) throws {
        guard nonce.count == nonceByteCount else { throw CryptoError.invalidLength(what: "GCM nonce", expected: nonceByteCount, actual: nonce.count) }
    }
}

/// One AES-256-GCM key kept expanded in OpenSSL contexts, for many packets under one key (call
/// media): each seal or open only sets the nonce, instead of allocating a context and expanding
/// the key again. Owns its two contexts and frees them once, in deinit. Not for concurrent use:
/// one thread at a time (a call's or a mixer's media run on the reactor).
public final class AESGCMKey: @unchecked Sendable {
    private let encryptor: OpaquePointer
    private let decryptor: OpaquePointer

    public init(_ key: [UInt8]) throws {
        try AESGCM.validate(key: key)
        guard let encryptor = EVP_CIPHER_CTX_new() else { throw CryptoError.fromQueue("EVP_CIPHER_CTX_new") }
        guard let decryptor = EVP_CIPHER_CTX_new() else {
            EVP_CIPHER_CTX_free(encryptor)
            throw CryptoError.fromQueue("EVP_CIPHER_CTX_new")
        }
        self.encryptor = encryptor
        self.decryptor = decryptor
        // GCM's default IV length is the 12 bytes used here; the nonce comes with each packet.
        try check(EVP_EncryptInit_ex(encryptor, EVP_aes_256_gcm(), nil, key, nil), "EVP_EncryptInit_ex")
        try check(EVP_DecryptInit_ex(decryptor, EVP_aes_256_gcm(), nil, key, nil), "EVP_DecryptInit_ex")
    }

    deinit {
        EVP_CIPHER_CTX_free(encryptor)
        EVP_CIPHER_CTX_free(decryptor)
    }

    public func seal(_ plaintext: [UInt8], nonce: [UInt8], authenticating aad: [UInt8] = []) throws -> [UInt8] {
        try AESGCM.validate(nonce: nonce)
        try check(EVP_EncryptInit_ex(encryptor, nil, nil, nil, nonce), "EVP_EncryptInit_ex(nonce)")
        return try AESGCM.seal(plaintext, initialized: encryptor, authenticating: aad)
    }

    public func open(_ sealed: [UInt8], nonce: [UInt8], authenticating aad: [UInt8] = []) throws -> [UInt8] {
        try AESGCM.validate(nonce: nonce)
        guard sealed.count >= AESGCM.tagByteCount else { throw CryptoError.authenticationFailed }
        try check(EVP_DecryptInit_ex(decryptor, nil, nil, nil, nonce), "EVP_DecryptInit_ex(nonce)")
        return try AESGCM.open(sealed, initialized: decryptor, authenticating: aad)
    }
}
