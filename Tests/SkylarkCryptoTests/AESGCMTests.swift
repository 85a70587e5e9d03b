import SkylarkCrypto
import SkylarkTestSupport
import Testing

@Suite("AES-256-GCM")
struct AESGCMTests {
    // McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13-16 (256-bit keys).
    static let specKey = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
    static let specIV = hex("cafebabefacedbaddecaf888")
    static let specPlaintext = hex(
        """
        d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
        1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255
        """)

    @Test("Spec test case 13: empty plaintext, zero key and IV")
    func testCase13() throws {
        let sealed = try AESGCM.seal([], key: [UInt8](repeating: 0, count: 32), nonce: [UInt8](repeating: 0, count: 12))
        #expect(sealed == hex("530f8afbc74536b9a963b4f1c4cb738b"))
        #expect(try AESGCM.open(sealed, key: [UInt8](repeating: 0, count: 32), nonce: [UInt8](repeating: 0, count: 12)) == [])
    }

    @Test("Spec test case 14: one zero block")
    func testCase14() throws {
        let key = [UInt8](repeating: 0, count: 32)
        let nonce = [UInt8](repeating: 0, count: 12)
        let sealed = try AESGCM.seal([UInt8](repeating: 0, count: 16), key: key, nonce: nonce)
        #expect(sealed == hex("cea7403d4d606b6e074ec5d3baf39d18" + "d0d1c8a799996bf0265b98b5d48ab919"))
        #expect(try AESGCM.open(sealed, key: key, nonce: nonce) == [UInt8](repeating: 0, count: 16))
    }

    @Test("Spec test case 15: 64-byte plaintext, no AAD")
    func testCase15() throws {
        let sealed = try AESGCM.seal(Self.specPlaintext, key: Self.specKey, nonce: Self.specIV)
        #expect(
            sealed
                == hex(
                    """
                    522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
                    8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad
                    b094dac5d93471bdec1a502270e3cc6c
                    """))
        #expect(try AESGCM.open(sealed, key: Self.specKey, nonce: Self.specIV) == Self.specPlaintext)
    }

    @Test("Spec test case 16: 60-byte plaintext with AAD")
    func testCase16() throws {
        let plaintext = Array(Self.specPlaintext.prefix(60))
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
        let sealed = try AESGCM.seal(plaintext, key: Self.specKey, nonce: Self.specIV, authenticating: aad)
        #expect(
            sealed
                == hex(
                    """
                    522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
                    8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662
                    76fc6ece0f4e1768cddf8853bb2d551b
                    """))
        #expect(try AESGCM.open(sealed, key: Self.specKey, nonce: Self.specIV, authenticating: aad) == plaintext)
        // The same ciphertext without its AAD does not open.
        #expect(throws: CryptoError.authenticationFailed) { try AESGCM.open(sealed, key: Self.specKey, nonce: Self.specIV) }
    }

    @Test("Round trip with random keys and nonces, for sizes around the block size", arguments: [0, 1, 15, 16, 17, 1000, 70_000])
    func roundTrip(size: Int) throws {
        var rng = SeededGenerator(seed: UInt64(size))
        let plaintext = [UInt8].random(count: size, using: &rng)
        let key = AESGCM.makeKey()
        let nonce = AESGCM.makeNonce()
        #expect(key.count == 32 && nonce.count == 12)
        let sealed = try AESGCM.seal(plaintext, key: key, nonce: nonce, authenticating: [1, 2, 3])
        #expect(sealed.count == size + AESGCM.tagByteCount)
        if size >= 16 { #expect(Array(sealed.prefix(size)) != plaintext) }
        #expect(try AESGCM.open(sealed, key: key, nonce: nonce, authenticating: [1, 2, 3]) == plaintext)
    }

    @Test("Fresh keys and nonces are random")
    func freshKeysDiffer() {
        #expect(AESGCM.makeKey() != AESGCM.makeKey())
        #expect(AESGCM.makeNonce() != AESGCM.makeNonce())
    }

    @Test("Flipping any bit of ciphertext, tag, nonce or AAD fails authentication")
    func everySingleBitFlipFails() throws {
        let key = Self.specKey
        let nonce = Self.specIV
        let aad = Array("header: skylark".utf8)
        let plaintext = Array("twenty bytes of text".utf8)
        let sealed = try AESGCM.seal(plaintext, key: key, nonce: nonce, authenticating: aad)
        #expect(try AESGCM.open(sealed, key: key, nonce: nonce, authenticating: aad) == plaintext)

        var failures = 0
        for bit in 0..<(sealed.count * 8) {  // ciphertext bits, then the tag's
            #expect(throws: CryptoError.authenticationFailed, "sealed bit \(bit)") {
                try AESGCM.open(flipping(sealed, bit: bit), key: key, nonce: nonce, authenticating: aad)
            }
            failures += 1
        }
        for bit in 0..<(nonce.count * 8) {
            #expect(throws: CryptoError.authenticationFailed, "nonce bit \(bit)") {
                try AESGCM.open(sealed, key: key, nonce: flipping(nonce, bit: bit), authenticating: aad)
            }
            failures += 1
        }
        for bit in 0..<(aad.count * 8) {
            #expect(throws: CryptoError.authenticationFailed, "aad bit \(bit)") {
                try AESGCM.open(sealed, key: key, nonce: nonce, authenticating: flipping(aad, bit: bit))
            }
            failures += 1
        }
        #expect(failures == (sealed.count + nonce.count + aad.count) * 8)
    }

    @Test("Wrong key (random, or one bit off) fails authentication")
    func wrongKeyFails() throws {
        let key = AESGCM.makeKey()
        let nonce = AESGCM.makeNonce()
        let sealed = try AESGCM.seal(Array("secret".utf8), key: key, nonce: nonce)
        #expect(throws: CryptoError.authenticationFailed) { try AESGCM.open(sealed, key: AESGCM.makeKey(), nonce: nonce) }
        for bit in [0, 7, 128, 255] {
            #expect(throws: CryptoError.authenticationFailed) { try AESGCM.open(sealed, key: flipping(key, bit: bit), nonce: nonce) }
        }
    }

    @Test("Inputs shorter than the tag, or cut short, fail authentication")
    func truncatedInputFails() throws {
        let key = AESGCM.makeKey()
        let nonce = AESGCM.makeNonce()
        let sealed = try AESGCM.seal(Array("some plaintext".utf8), key: key, nonce: nonce)
        for length in 0..<AESGCM.tagByteCount {
            #expect(throws: CryptoError.authenticationFailed, "length \(length)") {
                try AESGCM.open(Array(sealed.prefix(length)), key: key, nonce: nonce)
            }
        }
        #expect(throws: CryptoError.authenticationFailed) { try AESGCM.open(Array(sealed.dropLast()), key: key, nonce: nonce) }
        #expect(throws: CryptoError.authenticationFailed) { try AESGCM.open(Array(sealed.dropFirst()), key: key, nonce: nonce) }
        #expect(throws: CryptoError.authenticationFailed) { try AESGCM.open(sealed + [0], key: key, nonce: nonce) }
    }

    @Test("Wrong key sizes throw invalidLength in seal and open", arguments: [0, 16, 24, 31, 33])
    func wrongKeySize(size: Int) {
        let key = [UInt8](repeating: 1, count: size)
        let expected = CryptoError.invalidLength(what: "AES-256 key", expected: 32, actual: size)
        #expect(throws: expected) { try AESGCM.seal([1], key: key, nonce: AESGCM.makeNonce()) }
        #expect(throws: expected) { try AESGCM.open([UInt8](repeating: 0, count: 32), key: key, nonce: AESGCM.makeNonce()) }
    }

    @Test("Wrong nonce sizes throw invalidLength in seal and open", arguments: [0, 8, 11, 13, 16])
    func wrongNonceSize(size: Int) {
        let nonce = [UInt8](repeating: 1, count: size)
        let expected = CryptoError.invalidLength(what: "GCM nonce", expected: 12, actual: size)
        #expect(throws: expected) { try AESGCM.seal([1], key: AESGCM.makeKey(), nonce: nonce) }
        #expect(throws: expected) { try AESGCM.open([UInt8](repeating: 0, count: 32), key: AESGCM.makeKey(), nonce: nonce) }
    }

    @Test("A kept key (AESGCMKey) gives the spec vectors and the one-shot results, packet after packet")
    func keptKey() throws {
        let kept = try AESGCMKey(Self.specKey)
        let plaintext = Array(Self.specPlaintext.prefix(60))
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
        let expected = try AESGCM.seal(plaintext, key: Self.specKey, nonce: Self.specIV, authenticating: aad)
        // The same context many times, with other nonces in between: state never leaks across.
        for round in 0..<3 {
            #expect(try kept.seal(plaintext, nonce: Self.specIV, authenticating: aad) == expected, "round \(round)")
            let nonce = AESGCM.makeNonce()
            let other = try kept.seal([UInt8](repeating: UInt8(round), count: 100 + round), nonce: nonce)
            #expect(try AESGCM.open(other, key: Self.specKey, nonce: nonce) == [UInt8](repeating: UInt8(round), count: 100 + round))
            #expect(try kept.open(expected, nonce: Self.specIV, authenticating: aad) == plaintext)
        }
    }

    @Test("A kept key refuses a flipped bit, and still opens the next good packet")
    func keptKeyTamper() throws {
        let key = AESGCM.makeKey()
        let kept = try AESGCMKey(key)
        let nonce = AESGCM.makeNonce()
        let sealed = try kept.seal(Array("voice".utf8), nonce: nonce, authenticating: [1, 2, 3])
        var flipped = sealed
        flipped[2] ^= 0x10
        #expect(throws: CryptoError.authenticationFailed) { try kept.open(flipped, nonce: nonce, authenticating: [1, 2, 3]) }
        #expect(throws: CryptoError.authenticationFailed) { try kept.open(sealed, nonce: nonce, authenticating: [1, 2, 4]) }
        #expect(throws: CryptoError.authenticationFailed) { try kept.open(Array(sealed.prefix(10)), nonce: nonce) }
        #expect(try kept.open(sealed, nonce: nonce, authenticating: [1, 2, 3]) == Array("voice".utf8))
        #expect(throws: CryptoError.invalidLength(what: "AES-256 key", expected: 32, actual: 16)) { try AESGCMKey([UInt8](repeating: 0, count: 16)) }
        #expect(throws: CryptoError.invalidLength(what: "GCM nonce", expected: 12, actual: 8)) { try kept.seal([1], nonce: [UInt8](repeating: 0, count: 8)) }
    }
}
