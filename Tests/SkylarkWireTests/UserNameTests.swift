import SkylarkWire
import Testing

@Suite("UserName and PasswordPolicy")
struct UserNameTests {
    @Test(
        "Case and width variants of one name share one canonical form",
        arguments: [
            "ALICE", "Alice", "alice", "aLiCe", "ａｌｉｃｅ", "ＡＬＩＣＥ", "Ａlice",
        ])
    func variantsCanonicalise(raw: String) throws {
        #expect(try UserName.canonical(raw) == "alice")
    }

    @Test(
        "Names in other scripts are accepted and lower-cased",
        arguments: [
            ("Ωμέγα", "ωμέγα"),
            ("Дмитрий", "дмитрий"),
            ("ДМИТРИЙ", "дмитрий"),
            ("山田太郎", "山田太郎"),
            ("Zoë_2.0-x", "zoë_2.0-x"),
        ])
    func otherScripts(raw: String, expected: String) throws {
        #expect(try UserName.canonical(raw) == expected)
    }

    @Test("Decomposed and precomposed accents give the same name")
    func normalisationForms() throws {
        #expect(try UserName.canonical("Zoe\u{0308}y") == UserName.canonical("Zo\u{00EB}y"))
    }

    @Test("Exactly 3 and exactly 32 characters are accepted")
    func lengthBounds() throws {
        #expect(try UserName.canonical("abc") == "abc")
        let thirtyTwo = "a" + String(repeating: "b", count: 31)
        #expect(try UserName.canonical(thirtyTwo) == thirtyTwo)
        // Length counts characters, not bytes: 32 Cyrillic letters are fine.
        let cyrillic = String(repeating: "д", count: 32)
        #expect(try UserName.canonical(cyrillic) == cyrillic)
    }

    @Test(
        "Refusals carry the right reason",
        arguments: [
            ("", UserName.Invalid.tooShort(minimum: 3)),
            ("ab", .tooShort(minimum: 3)),
            ("ＡＢ", .tooShort(minimum: 3)),
            ("a" + String(repeating: "b", count: 32), .tooLong(maximum: 32)),
            ("1alice", .mustStartWithLetter),
            ("_alice", .mustStartWithLetter),
            (".alice", .mustStartWithLetter),
            ("-alice", .mustStartWithLetter),
            ("al ice", .forbiddenCharacter(" ")),
            ("alice@example", .forbiddenCharacter("@")),
            ("alice!", .forbiddenCharacter("!")),
            ("ali/ce", .forbiddenCharacter("/")),
            ("alice\n", .forbiddenCharacter("\n")),
            ("ali\u{200B}ce", .forbiddenCharacter("\u{200B}")),  // zero-width space
        ])
    func refusals(raw: String, expected: UserName.Invalid) {
        #expect(throws: expected) { try UserName.canonical(raw) }
    }

    @Test("Invisible joiners and combining marks must not make a look-alike of another name")
    func invisibleCharactersAreRefused() throws {
        // "ali\u{200D}ce" displays as "alice" but would be a different account name. Names are
        // checked per code point, so joiners and combining marks are refused.
        #expect(throws: UserName.Invalid.self) { try UserName.canonical("ali\u{200D}ce") }
        #expect(throws: UserName.Invalid.self) { try UserName.canonical("alice\u{034F}") }  // combining grapheme joiner
        let heavy = "a" + String(repeating: "\u{0301}", count: 40)
        #expect(throws: UserName.Invalid.self) { try UserName.canonical(heavy + "bc") }
        // Precomposed letters are letters: "é" after NFKC is one code point.
        #expect(try UserName.canonical("Re\u{0301}mi") == "rémi")
    }

    @Test("PasswordPolicy: empty, 7 chars refused; 8 chars accepted; over 1024 bytes refused")
    func passwordPolicy() {
        #expect(PasswordPolicy.problem(with: "")?.contains("empty") == true)
        #expect(PasswordPolicy.problem(with: "1234567")?.contains("too short") == true)
        #expect(PasswordPolicy.problem(with: "12345678") == nil)
        #expect(PasswordPolicy.problem(with: String(repeating: "x", count: 1024)) == nil)
        #expect(PasswordPolicy.problem(with: String(repeating: "x", count: 1025))?.contains("too long") == true)
        // The upper bound is in bytes: 513 two-byte characters are 1,026 bytes.
        #expect(PasswordPolicy.problem(with: String(repeating: "é", count: 513))?.contains("too long") == true)
        #expect(PasswordPolicy.problem(with: String(repeating: "é", count: 512)) == nil)
        // The lower bound is in characters: 8 multi-byte characters are enough, 7 are not.
        #expect(PasswordPolicy.problem(with: "пароль12") == nil)
        #expect(PasswordPolicy.problem(with: "ωωωωωωω")?.contains("too short") == true)
    }
}
