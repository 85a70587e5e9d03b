import SkylarkCrypto
import SkylarkTestSupport
import Testing

@Suite("SHA-256 and hex")
struct SHA256Tests {
    @Test("FIPS 180 vectors: \"abc\", empty string, 448-bit message")
    func vectors() {
        #expect(SHA256.hash(Array("abc".utf8)) == hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
        #expect(SHA256.hash([UInt8]()) == hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
        #expect(
            SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == hex("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"))
        // Any Collection<UInt8> works, e.g. a slice or a String's UTF-8 view.
        #expect(SHA256.hash("xabcx".utf8.dropFirst().dropLast()) == SHA256.hash(Array("abc".utf8)))
    }

    @Test("Hasher fed in pieces equals the one-shot hash", arguments: [1, 3, 63, 64, 65, 1000])
    func incrementalEqualsOneShot(pieceSize: Int) {
        var rng = SeededGenerator(seed: 42)
        let data = [UInt8].random(count: 5000, using: &rng)
        let hasher = SHA256.Hasher()
        var offset = 0
        while offset < data.count {
            let end = min(offset + pieceSize, data.count)
            hasher.update(data[offset..<end])
            hasher.update([UInt8]())  // empty updates change nothing
            offset = end
        }
        #expect(hasher.finalize() == SHA256.hash(data))
    }

    @Test("Hasher with random piece sizes; a fresh Hasher with no input gives the empty-string hash")
    func incrementalRandomPieces() {
        var rng = SeededGenerator(seed: 7)
        let data = [UInt8].random(count: 3000, using: &rng)
        let hasher = SHA256.Hasher()
        var rest = data[...]
        while !rest.isEmpty {
            let n = Int.random(in: 0...200, using: &rng)
            hasher.update(rest.prefix(n))
            rest = rest.dropFirst(n)
        }
        #expect(hasher.finalize() == SHA256.hash(data))
        #expect(SHA256.Hasher().finalize() == hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
        let abc = SHA256.Hasher()
        abc.update(Array("ab".utf8))
        abc.update(Array("c".utf8))
        #expect(abc.finalize() == hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
    }

    @Test("hexString is lower-case, two digits per byte")
    func hexStringFormat() {
        #expect([UInt8]([0x00, 0x01, 0x0a, 0xab, 0xff]).hexString == "00010aabff")
        #expect([UInt8]().hexString == "")
        #expect(SHA256.hash(Array("abc".utf8)).hexString == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test("init(hexString:) parses both cases and round-trips with hexString")
    func hexParsing() {
        #expect([UInt8](hexString: "00010aABfF") == [0x00, 0x01, 0x0a, 0xab, 0xff])
        #expect([UInt8](hexString: "") == [])
        var rng = SeededGenerator(seed: 99)
        for size in [1, 2, 31, 32, 257] {
            let bytes = [UInt8].random(count: size, using: &rng)
            #expect([UInt8](hexString: bytes.hexString) == bytes)
            #expect([UInt8](hexString: bytes.hexString.uppercased()) == bytes)
        }
    }

    @Test(
        "init(hexString:) refuses odd length and non-hex characters",
        arguments: [
            "0", "abc", "0g", "zz", "0x00", "00 ", " 00", "-1", "éé", "１２",
        ])
    func hexRefusals(text: String) {
        #expect([UInt8](hexString: text) == nil)
    }
}
