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

    public static func canonical(_ raw: String) throws(Invalid) -> String {
        let name = raw.precomposedStringWithCompatibilityMapping.lowercased().precomposedStringWithCompatibilityMapping
        let characters = Array(name)
        guard characters.count >= minimumLength else { throw .tooShort(minimum: minimumLength) }
        guard characters.count <= maximumLength else { throw .tooLong(maximum: maximumLength) }
        guard characters[0].isLetter else { throw .mustStartWithLetter }
        for c in characters where !(c.isLetter || c.isNumber || c == "." || c == "_" || c == "-") {
            throw .forbiddenCharacter(c)
        }
        return name
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
