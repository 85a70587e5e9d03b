import COpenSSL
import CShims

/// Owns one `EVP_PKEY*`, freed exactly once in `deinit`.
///
/// OpenSSL 3 keys are immutable after creation and safe to use from several threads at once,
/// which is why the wrappers are `Sendable`.
final class EVPKey: @unchecked Sendable {
    let pointer: OpaquePointer

    init(taking pointer: OpaquePointer) { self.pointer = pointer }

    deinit { EVP_PKEY_free(pointer) }

    var bits: Int { Int(EVP_PKEY_get_bits(pointer)) }

    func isType(_ name: String) -> Bool { EVP_PKEY_is_a(pointer, name) == 1 }

    /// Generates a key with `configure` applied to the keygen context.
    static func generate(_ algorithm: String, configure: (OpaquePointer) throws -> Void = { _ in }) throws -> EVPKey {
        guard let context = EVP_PKEY_CTX_new_from_name(nil, algorithm, nil) else { throw CryptoError.fromQueue("EVP_PKEY_CTX_new_from_name(\(algorithm))") }
        defer { EVP_PKEY_CTX_free(context) }
        try check(EVP_PKEY_keygen_init(context), "EVP_PKEY_keygen_init")
        try configure(context)
        var key: OpaquePointer?
        try check(EVP_PKEY_generate(context, &key), "EVP_PKEY_generate(\(algorithm))")
        return EVPKey(taking: key!)
    }

    static func readPrivatePEM(_ pem: String) throws -> EVPKey {
        try withMemoryBIO(pem) { bio in
            guard let key = PEM_read_bio_PrivateKey(bio, nil, nil, nil) else { throw CryptoError.invalidKey("not a PEM private key") }
            return EVPKey(taking: key)
        }
    }

    static func readPublicPEM(_ pem: String) throws -> EVPKey {
        try withMemoryBIO(pem) { bio in
            guard let key = PEM_read_bio_PUBKEY(bio, nil, nil, nil) else { throw CryptoError.invalidKey("not a PEM public key") }
            return EVPKey(taking: key)
        }
    }

    static func readPublicDER(_ der: [UInt8]) throws -> EVPKey {
        try der.withUnsafeBufferPointer { buffer in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            guard let key = d2i_PUBKEY(nil, &cursor, buffer.count) else {
                ERR_clear_error()
                throw CryptoError.invalidKey("not a DER SubjectPublicKeyInfo")
            }
            return EVPKey(taking: key)
        }
    }

    func privatePEM() throws -> String {
        try writeToBIO("PEM_write_bio_PrivateKey") { PEM_write_bio_PrivateKey($0, pointer, nil, nil, 0, nil, nil) }
    }

    func publicPEM() throws -> String {
        try writeToBIO("PEM_write_bio_PUBKEY") { PEM_write_bio_PUBKEY($0, pointer) }
    }

    /// DER SubjectPublicKeyInfo.
    func publicDER() throws -> [UInt8] {
        var out: UnsafeMutablePointer<UInt8>?
        let length = i2d_PUBKEY(pointer, &out)
        guard length > 0, let out else { throw CryptoError.fromQueue("i2d_PUBKEY") }
        defer { skylark_openssl_free(out) }
        return Array(UnsafeBufferPointer(start: out, count: Int(length)))
    }

    func rawPublic() throws -> [UInt8] {
        var length = 0
        try check(EVP_PKEY_get_raw_public_key(pointer, nil, &length), "EVP_PKEY_get_raw_public_key")
        var out = [UInt8](repeating: 0, count: length)
        try check(EVP_PKEY_get_raw_public_key(pointer, &out, &length), "EVP_PKEY_get_raw_public_key")
        return out
    }

    func rawPrivate() throws -> [UInt8] {
        var length = 0
        try check(EVP_PKEY_get_raw_private_key(pointer, nil, &length), "EVP_PKEY_get_raw_private_key")
        var out = [UInt8](repeating: 0, count: length)
        try check(EVP_PKEY_get_raw_private_key(pointer, &out, &length), "EVP_PKEY_get_raw_private_key")
        return out
    }

    static func fromRaw(privateKey raw: [UInt8], type: Int32, name: String) throws -> EVPKey {
        guard let key = EVP_PKEY_new_raw_private_key(type, nil, raw, raw.count) else {
            ERR_clear_error()
            throw CryptoError.invalidKey("not a raw \(name) private key")
        }
        return EVPKey(taking: key)
    }

    static func fromRaw(publicKey raw: [UInt8], type: Int32, name: String) throws -> EVPKey {
        guard let key = EVP_PKEY_new_raw_public_key(type, nil, raw, raw.count) else {
            ERR_clear_error()
            throw CryptoError.invalidKey("not a raw \(name) public key")
        }
        return EVPKey(taking: key)
    }

    /// Runs `body` with a fresh `EVP_PKEY_CTX` for this key.
    func withContext<T>(_ body: (OpaquePointer) throws -> T) throws -> T {
        guard let context = EVP_PKEY_CTX_new_from_pkey(nil, pointer, nil) else { throw CryptoError.fromQueue("EVP_PKEY_CTX_new_from_pkey") }
        defer { EVP_PKEY_CTX_free(context) }
        return try body(context)
    }

    private static func withMemoryBIO<T>(_ text: String, _ body: (OpaquePointer) throws -> T) throws -> T {
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { throw CryptoError.fromQueue("BIO_new_mem_buf") }
            defer { BIO_free(bio) }
            defer { ERR_clear_error() }
            return try body(bio)
        }
    }

    private func writeToBIO(_ operation: String, _ write: (OpaquePointer) -> Int32) throws -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { throw CryptoError.fromQueue("BIO_new") }
        defer { BIO_free(bio) }
        try check(write(bio), operation)
        var data: UnsafeMutablePointer<CChar>?
        let length = skylark_bio_mem_data(bio, &data)
        guard length > 0, let data else { throw CryptoError.fromQueue(operation) }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
    }
}
