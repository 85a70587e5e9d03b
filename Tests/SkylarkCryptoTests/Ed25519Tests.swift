import SkylarkCrypto
import SkylarkTestSupport
import Testing

@Suite("Ed25519 (RFC 8032)")
struct Ed25519Tests {
    static let rfcSecret = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    static let rfcPublic = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    static let rfcSignature = hex(
        """
        e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155
        5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b
        """)

    @Test("RFC 8032 §7.1 TEST 1: public key and signature of the empty message")
    func rfcTest1() throws {
        let key = try Ed25519.PrivateKey(rawRepresentation: Self.rfcSecret)
        #expect(try key.rawRepresentation() == Self.rfcSecret)
        #expect(try key.publicKey().rawRepresentation() == Self.rfcPublic)
        #expect(try key.sign([]) == Self.rfcSignature)

        let publicKey = try Ed25519.PublicKey(rawRepresentation: Self.rfcPublic)
        #expect(publicKey.verify(signature: Self.rfcSignature, for: []))
        #expect(!publicKey.verify(signature: Self.rfcSignature, for: [0]))
    }

    @Test("Sign and verify round trip with a fresh key")
    func roundTrip() throws {
        let key = try Ed25519.PrivateKey()
        let message = Array("a credential body".utf8)
        let signature = try key.sign(message)
        #expect(signature.count == Ed25519.signatureByteCount)
        #expect(try key.publicKey().verify(signature: signature, for: message))
        #expect(try key.publicKey().rawRepresentation().count == Ed25519.keyByteCount)
        // Signatures are deterministic.
        #expect(try key.sign(message) == signature)
    }

    @Test("A flipped bit in the message or the signature fails verification")
    func flippedBitsFail() throws {
        let key = try Ed25519.PrivateKey()
        let publicKey = try key.publicKey()
        let message = Array("pay alice 10".utf8)
        let signature = try key.sign(message)
        for bit in stride(from: 0, to: message.count * 8, by: 5) {
            #expect(!publicKey.verify(signature: signature, for: flipping(message, bit: bit)), "message bit \(bit)")
        }
        for bit in stride(from: 0, to: signature.count * 8, by: 3) {
            #expect(!publicKey.verify(signature: flipping(signature, bit: bit), for: message), "signature bit \(bit)")
        }
        #expect(publicKey.verify(signature: signature, for: message))
    }

    @Test("Another key's public key, truncated or extended signatures fail verification")
    func wrongKeyAndSizesFail() throws {
        let key = try Ed25519.PrivateKey()
        let message = Array("hello".utf8)
        let signature = try key.sign(message)
        #expect(!(try Ed25519.PrivateKey().publicKey().verify(signature: signature, for: message)))
        #expect(!(try key.publicKey().verify(signature: Array(signature.dropLast()), for: message)))
        #expect(!(try key.publicKey().verify(signature: signature + [0], for: message)))
        #expect(!(try key.publicKey().verify(signature: [], for: message)))
    }

    @Test("PEM round trip of the private key keeps the same key")
    func pemRoundTrip() throws {
        let key = try Ed25519.PrivateKey()
        let pem = try key.pem()
        #expect(pem.hasPrefix("-----BEGIN PRIVATE KEY-----"))
        let loaded = try Ed25519.PrivateKey(pem: pem)
        #expect(try loaded.rawRepresentation() == key.rawRepresentation())
        #expect(try loaded.publicKey().rawRepresentation() == key.publicKey().rawRepresentation())
        let message = Array("after reload".utf8)
        #expect(try key.publicKey().verify(signature: loaded.sign(message), for: message))
    }

    @Test("Garbage PEM and a non-Ed25519 PEM are refused with invalidKey")
    func badPEM() throws {
        let garbage = #expect(throws: CryptoError.self) { try Ed25519.PrivateKey(pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n") }
        guard case .invalidKey = garbage else { Issue.record("expected invalidKey, got \(String(describing: garbage))"); return }
        let x25519PEM = """
            -----BEGIN PRIVATE KEY-----
            MC4CAQAwBQYDK2VuBCIEIHcHbQpzGKV9PBbBclGyZkXfTC+H68CZKrF3+6UduSwq
            -----END PRIVATE KEY-----
            """
        #expect(throws: CryptoError.invalidKey("not an Ed25519 key")) { try Ed25519.PrivateKey(pem: x25519PEM) }
    }

    @Test("Wrong-length raw keys throw invalidLength", arguments: [0, 31, 33, 64])
    func wrongLengths(length: Int) {
        let bytes = [UInt8](repeating: 3, count: length)
        #expect(throws: CryptoError.invalidLength(what: "Ed25519 private key", expected: 32, actual: length)) {
            try Ed25519.PrivateKey(rawRepresentation: bytes)
        }
        #expect(throws: CryptoError.invalidLength(what: "Ed25519 public key", expected: 32, actual: length)) {
            try Ed25519.PublicKey(rawRepresentation: bytes)
        }
    }
}
