import Foundation

/// User names: unique case-insensitively after Unicode normalisation.
///
/// Canonical form: NFKC, lower-cased, NFKC again (so "Ａlice", "ALICE" and "alice" are one name).
/// After that a name must be 3 to 32 characters of letters, digits, '.', '_' or '-', starting
/// with a letter. Letters and digits may come from any script.
public enum UserName {
    public static let minimumLength = 3
    public static let maximumLength = 32

    public enum Invalid: Error, Equatable, Sendable, CustomStringConvertible {
        case tooShort(minimum: Int)
        case tooLong(maximum: Int)
        case mustStartWithLetter
        case forbiddenCharacter(Character)

        public var description: String {
            switch self {
            case let .tooShort(minimum): return "a name needs at least \(minimum) characters"
            case let .tooLong(maximum): return "a name has at most \(maximum) characters"
            case .mustStartWithLetter: return "a name must start with a letter"
            case let .forbiddenCharacter(c): return "a name may hold only letters, digits, '.', '_' and '-', not '\(c)'"
            }
        }
    }

    /// Longest name in UTF-8 bytes, whatever the script.
    public static let maximumByteCount = 128

    public static func canonical(_ raw: String) throws(Invalid) -> String {
        let name = raw.precomposedStringWithCompatibilityMapping.lowercased().precomposedStringWithCompatibilityMapping
        // Checked per code point, not per Character: a Character is a whole grapheme cluster, so a
        // zero-width joiner or a combining mark riding on a letter would pass a per-Character
        // test and make a name that looks like another user's.
        let scalars = Array(name.unicodeScalars)
        guard scalars.count >= minimumLength else { throw .tooShort(minimum: minimumLength) }
        guard scalars.count <= maximumLength, name.utf8.count <= maximumByteCount else { throw .tooLong(maximum: maximumLength) }
        guard isLetter(scalars[0]) else { throw .mustStartWithLetter }
        for scalar in scalars where !(isLetter(scalar) || isDigit(scalar) || scalar == "." || scalar == "_" || scalar == "-") {
            throw .forbiddenCharacter(Character(scalar))
        }
        return name
    }

    private static func isLetter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    private static func isDigit(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.generalCategory == .decimalNumber
    }
}

/// Password rules; the server enforces them, the client checks first to fail fast.
public enum PasswordPolicy {
    public static let minimumLength = 8
    public static let maximumByteCount = 1024

    /// A reason the password is refused, or nil.
    public static func problem(with password: String) -> String? {
        if password.isEmpty { return "the password is empty" }
        if password.count < minimumLength { return "the password is too short (at least \(minimumLength) characters)" }
        if password.utf8.count > maximumByteCount { return "the password is too long (at most \(maximumByteCount) bytes)" }
        return nil
    }
}
