import SkylarkCrypto
import SkylarkTestSupport
import Testing

@Suite("scrypt (RFC 7914)")
struct ScryptTests {
    @Test("RFC 7914 §12 vector 1: empty password and salt, N=16, r=1, p=1")
    func vector1() throws {
        let out = try Scrypt.derive(password: [], salt: [], parameters: .init(n: 16, r: 1, p: 1), outputByteCount: 64)
        #expect(
            out
                == hex(
                    """
                    77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442
                    fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906
                    """))
    }

    @Test("RFC 7914 §12 vector 2: \"password\" / \"NaCl\", N=1024, r=8, p=16")
    func vector2() throws {
        let out = try Scrypt.derive(
            password: Array("password".utf8), salt: Array("NaCl".utf8),
            parameters: .init(n: 1024, r: 8, p: 16), outputByteCount: 64)
        #expect(
            out
                == hex(
                    """
                    fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162
                    2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640
                    """))
    }

    @Test("Salt and password change the hash; same inputs give the same hash")
    func inputsMatter() throws {
        let cheap = Scrypt.Parameters(n: 1024, r: 8, p: 1)
        let password = Array("correct horse".utf8)
        let a = try Scrypt.derive(password: password, salt: Array("salt-one".utf8), parameters: cheap)
        let again = try Scrypt.derive(password: password, salt: Array("salt-one".utf8), parameters: cheap)
        let otherSalt = try Scrypt.derive(password: password, salt: Array("salt-two".utf8), parameters: cheap)
        let otherPassword = try Scrypt.derive(password: Array("correct horsf".utf8), salt: Array("salt-one".utf8), parameters: cheap)
        #expect(a.count == 32)
        #expect(a == again)
        #expect(a != otherSalt)
        #expect(a != otherPassword)
    }

    @Test("The empty password is hashed, not just parameter-checked")
    func emptyPasswordIsReallyHashed() throws {
        // OpenSSL only checks the parameters when given a NULL password; the wrapper must not do that.
        let params = Scrypt.Parameters(n: 16, r: 1, p: 1)
        let empty = try Scrypt.derive(password: [], salt: Array("s".utf8), parameters: params)
        #expect(empty == hex("005c2d86e25982a150f79c1caa532df2038a5fcad83fbe610cc7b91d4520ab47"))
        #expect(empty != (try Scrypt.derive(password: Array("a".utf8), salt: Array("s".utf8), parameters: params)))
    }

    @Test("Interactive parameters work and are N=2^14, r=8, p=1")
    func interactiveParameters() throws {
        #expect(Scrypt.Parameters.interactive == Scrypt.Parameters(n: 16384, r: 8, p: 1))
        let out = try Scrypt.derive(password: Array("pw".utf8), salt: Array("salt".utf8))
        #expect(out.count == 32)
    }

    @Test(
        "Invalid cost parameters throw",
        arguments: [
            Scrypt.Parameters(n: 3, r: 1, p: 1),  // N not a power of two
            Scrypt.Parameters(n: 1, r: 1, p: 1),  // N < 2
            Scrypt.Parameters(n: 16, r: 0, p: 1),  // r = 0
        ])
    func invalidParameters(parameters: Scrypt.Parameters) {
        #expect(throws: CryptoError.self) { try Scrypt.derive(password: [1], salt: [2], parameters: parameters) }
    }

    @Test("Absurd cost parameters throw instead of trapping")
    func absurdParametersThrow() {
        // 128 * r * n * p with r = 8, n = 2^62 would overflow: refused before any arithmetic.
        #expect(throws: CryptoError.self) {
            try Scrypt.derive(password: [1], salt: [2], parameters: .init(n: 1 << 62, r: 8, p: 1))
        }
    }
}
