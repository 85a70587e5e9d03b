import SkylarkCrypto
import SkylarkTestSupport
import Testing

@Suite("HKDF-SHA256 (RFC 5869)")
struct HKDFTests {
    @Test("RFC 5869 test case 1")
    func testCase1() throws {
        let okm = try HKDF.sha256(
            inputKeyMaterial: hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
            salt: hex("000102030405060708090a0b0c"),
            info: hex("f0f1f2f3f4f5f6f7f8f9"), outputByteCount: 42)
        #expect(okm == hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"))
    }

    @Test("RFC 5869 test case 2 (long inputs)")
    func testCase2() throws {
        let okm = try HKDF.sha256(
            inputKeyMaterial: Array(0x00...0x4f), salt: Array(0x60...0xaf),
            info: Array(0xb0...0xff), outputByteCount: 82)
        #expect(
            okm
                == hex(
                    """
                    b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c
                    59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71
                    cc30c58179ec3e87c14c01d5c1f3434f1d87
                    """))
    }

    @Test("RFC 5869 test case 3 (empty salt and info)")
    func testCase3() throws {
        let okm = try HKDF.sha256(
            inputKeyMaterial: hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
            salt: [], info: [], outputByteCount: 42)
        #expect(okm == hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"))
    }

    @Test("Different info gives independent keys; the maximum length 255*32 works")
    func infoSeparatesKeys() throws {
        let ikm = Array(repeating: UInt8(0x42), count: 32)
        let a = try HKDF.sha256(inputKeyMaterial: ikm, info: Array("a".utf8), outputByteCount: 32)
        let b = try HKDF.sha256(inputKeyMaterial: ikm, info: Array("b".utf8), outputByteCount: 32)
        #expect(a != b)
        let longest = try HKDF.sha256(inputKeyMaterial: ikm, info: [], outputByteCount: 255 * 32)
        #expect(longest.count == 255 * 32)
        // HKDF output is a prefix-stable stream.
        #expect(Array(longest.prefix(32)) == (try HKDF.sha256(inputKeyMaterial: ikm, info: [], outputByteCount: 32)))
    }

    @Test("Output length 0, negative or above 255*32 throws invalidLength", arguments: [0, -1, 255 * 32 + 1, 100_000])
    func badOutputLength(length: Int) {
        let error = #expect(throws: CryptoError.self) {
            try HKDF.sha256(inputKeyMaterial: [1, 2, 3], info: [], outputByteCount: length)
        }
        guard case let .invalidLength(_, _, actual) = error else {
            Issue.record("expected invalidLength, got \(String(describing: error))")
            return
        }
        #expect(actual == length)
    }
}
