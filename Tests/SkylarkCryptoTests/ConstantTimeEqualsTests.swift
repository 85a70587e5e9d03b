import SkylarkCrypto
import SkylarkTestSupport
import Testing

@Suite("constantTimeEquals")
struct ConstantTimeEqualsTests {
    @Test("Equal byte strings compare equal")
    func equal() {
        #expect(constantTimeEquals([1, 2, 3], [1, 2, 3]))
        let big = [UInt8](repeating: 0xa5, count: 4096)
        #expect(constantTimeEquals(big, big))
    }

    @Test("A difference anywhere (first, middle, last byte, single bit) compares unequal")
    func different() {
        let base = [UInt8](repeating: 0x11, count: 32)
        for bit in [0, 7, 130, 255] {
            #expect(!constantTimeEquals(base, flipping(base, bit: bit)), "bit \(bit)")
        }
        #expect(!constantTimeEquals([0], [1]))
    }

    @Test("Different lengths compare unequal, even as a prefix")
    func differentLengths() {
        #expect(!constantTimeEquals([1, 2, 3], [1, 2]))
        #expect(!constantTimeEquals([1, 2], [1, 2, 3]))
        #expect(!constantTimeEquals([0], []))
    }

    @Test("Empty inputs")
    func empty() {
        #expect(constantTimeEquals([], []))
        #expect(!constantTimeEquals([], [0]))
    }
}
