import Foundation

/// The update server's signed statement of the latest release.
public struct ReleaseManifest: Codable, Sendable, Equatable {
    public static let currentFormat = 1

    public struct File: Codable, Sendable, Equatable {
        public var name: String
        public var size: Int64
        /// Lower-case hex SHA-256 of the file's bytes.
        public var sha256: String
        /// Path on the update server, relative to its root.
        public var path: String

        public init(name: String, size: Int64, sha256: String, path: String) {
            self.name = name
            self.size = size
            self.sha256 = sha256
            self.path = path
        }
    }

    public var format: Int
    public var version: String
    public var publishedAt: Int64
    public var expiresAt: Int64
    public var notes: String?
    public var files: [File]

    public init(version: String, publishedAt: Int64, expiresAt: Int64, notes: String?, files: [File]) {
        self.format = Self.currentFormat
        self.version = version
        self.publishedAt = publishedAt
        self.expiresAt = expiresAt
        self.notes = notes
        self.files = files
    }
}

/// X.Y.Z with numeric components, compared numerically (1.10.0 > 1.9.3).
public struct SemanticVersion: Sendable, Comparable, Hashable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var patch: Int

    public init(major: Int, minor: Int, patch: Int) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
            parts.allSatisfy({ !$0.isEmpty && $0.count <= 9 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
            let major = Int(parts[0]), let minor = Int(parts[1]), let patch = Int(parts[2])
        else { return nil }
        self.init(major: major, minor: minor, patch: patch)
    }

    public var description: String { "\(major).\(minor).\(patch)" }

    public static func < (lhs: SemanticVersion, rhs: SemanticVersion) -> Bool {
        (lhs.major, lhs.minor, lhs.patch) < (rhs.major, rhs.minor, rhs.patch)
    }
}

/// The version of this build of Skylark.
public enum SkylarkVersion {
    public static let current = SemanticVersion(major: 0, minor: 1, patch: 0)
}
