import SkylarkWire
import Testing

@Suite("SemanticVersion and SkylarkVersion")
struct SemanticVersionTests {
    @Test("Parses X.Y.Z into numbers")
    func parses() throws {
        let version = try #require(SemanticVersion("1.10.3"))
        #expect(version.major == 1)
        #expect(version.minor == 10)
        #expect(version.patch == 3)
        #expect(version.description == "1.10.3")
        #expect(SemanticVersion("0.0.0") == SemanticVersion(major: 0, minor: 0, patch: 0))
    }

    @Test("Compares numerically, not as text")
    func compares() throws {
        let v = { (text: String) throws -> SemanticVersion in try #require(SemanticVersion(text)) }
        #expect(try v("1.10.0") > v("1.9.3"))
        #expect(try v("2.0.0") > v("1.99.99"))
        #expect(try v("1.2.10") > v("1.2.9"))
        #expect(try v("0.2.0") > v("0.1.0"))
        #expect(try v("1.2.3") == v("1.2.3"))
        #expect(try !(v("1.2.3") < v("1.2.3")))
        #expect(try [v("1.10.0"), v("1.2.0"), v("1.9.3")].sorted().map(\.description) == ["1.2.0", "1.9.3", "1.10.0"])
    }

    @Test(
        "Refuses anything but three non-negative decimal components",
        arguments: [
            "1.2", "1.2.3.4", "a.b.c", "1..2", "-1.0.0", "", "1.2.3 ", " 1.2.3", "v1.2.3", "1.2.x",
            "1.2.-3", "+1.2.3", "1.2.3-beta", "١.٢.٣", "1234567890.0.0",
        ])
    func refuses(text: String) {
        #expect(SemanticVersion(text) == nil)
    }

    @Test("The current build version exists and round-trips through its text")
    func currentVersion() throws {
        let current = SkylarkVersion.current
        let reparsed = try #require(SemanticVersion(current.description))
        #expect(reparsed == current)
        #expect(current > SemanticVersion(major: 0, minor: 0, patch: 0))
    }
}
