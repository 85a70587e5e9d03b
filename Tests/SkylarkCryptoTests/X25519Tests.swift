import SkylarkCrypto
import SkylarkTestSupport
import Testing

@Suite("X25519 (RFC 7748)")
struct X25519Tests {
    /// X25519(scalar, u) through the public API: the scalar as a raw private key, u as the peer's key.
    private func scalarMult(_ scalar: [UInt8], _ u: [UInt8]) throws -> [UInt8] {
        try X25519.PrivateKey(rawRepresentation: scalar).sharedSecret(with: u)
    }

    @Test(
        "RFC 7748 §5.2 scalar multiplication vectors",
        arguments: [
            (
                "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
                "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
                "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
            ),
            (
                // The u-coordinate has its top bit set; RFC 7748 says it must be masked off.
                "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
                "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
                "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"
            ),
        ])
    func scalarMultiplicationVectors(scalar: String, u: String, expected: String) throws {
        #expect(try scalarMult(hex(scalar), hex(u)) == hex(expected))
    }

    @Test("RFC 7748 §5.2 iterated vector: 1 and 1,000 iterations")
    func iteratedVector() throws {
        var k = hex("0900000000000000000000000000000000000000000000000000000000000000")
        var u = k
        var results: [Int: [UInt8]] = [:]
        for iteration in 1...1000 {
            let next = try scalarMult(k, u)
            u = k
            k = next
            if iteration == 1 || iteration == 1000 { results[iteration] = k }
        }
        #expect(results[1] == hex("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"))
        #expect(results[1000] == hex("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"))
    }

    @Test("RFC 7748 §6.1 Diffie-Hellman: public keys and shared secret")
    func diffieHellmanVector() throws {
        let alice = try X25519.PrivateKey(rawRepresentation: hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
        let bob = try X25519.PrivateKey(rawRepresentation: hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
        let alicePublic = try alice.publicKey()
        let bobPublic = try bob.publicKey()
        #expect(alicePublic == hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"))
        #expect(bobPublic == hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"))
        let expected = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        #expect(try alice.sharedSecret(with: bobPublic) == expected)
        #expect(try bob.sharedSecret(with: alicePublic) == expected)
        #expect(try alice.rawRepresentation() == hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
    }

    @Test("Freshly generated key pairs agree on a 32-byte secret, and differ from each other")
    func generatedKeysAgree() throws {
        let a = try X25519.PrivateKey()
        let b = try X25519.PrivateKey()
        let c = try X25519.PrivateKey()
        let ab = try a.sharedSecret(with: b.publicKey())
        #expect(ab.count == X25519.keyByteCount)
        #expect(ab == (try b.sharedSecret(with: a.publicKey())))
        #expect(ab != (try a.sharedSecret(with: c.publicKey())))
        #expect(try a.publicKey() != b.publicKey())
    }

    @Test(
        "Low-order peer keys (all-zero shared secret) are refused",
        arguments: [
            "0000000000000000000000000000000000000000000000000000000000000000",  // 0
            "0100000000000000000000000000000000000000000000000000000000000000",  // 1
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",  // order 8
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",  // order 8
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // p - 1
        ])
    func lowOrderPeerKeyIsRefused(peer: String) throws {
        let key = try X25519.PrivateKey()
        #expect(throws: CryptoError.self) { try key.sharedSecret(with: hex(peer)) }
    }

    @Test("Wrong-length private keys throw invalidLength", arguments: [0, 16, 31, 33, 64])
    func wrongLengthPrivateKey(length: Int) {
        let error = #expect(throws: CryptoError.self) { try X25519.PrivateKey(rawRepresentation: [UInt8](repeating: 7, count: length)) }
        #expect(error == .invalidLength(what: "X25519 private key", expected: 32, actual: length))
    }

    @Test("Wrong-length peer public keys throw invalidLength", arguments: [0, 31, 33])
    func wrongLengthPeerKey(length: Int) throws {
        let key = try X25519.PrivateKey()
        let error = #expect(throws: CryptoError.self) { try key.sharedSecret(with: [UInt8](repeating: 9, count: length)) }
        #expect(error == .invalidLength(what: "X25519 public key", expected: 32, actual: length))
    }
}
