import Foundation
import SkylarkCrypto
import SkylarkWire

/// The update server's state folder:
///   update-key.pem       RSA signing key (mode 0600)
///   update-public.pem    its public key, for `skylark-login init --update-key`
///   manifest.json        the signed manifest of the latest release
///   releases/X.Y.Z/FILE  the released files
public struct UpdateServerState: Sendable {
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case alreadyInitialised(String)
        case notInitialised(String)
        case invalidVersion(String)
        case notNewer(version: String, published: String)
        case badFile(String)
        case noFiles

        public var description: String {
            switch self {
            case let .alreadyInitialised(dir): return "\(dir) already holds an update key; refusing to overwrite it"
            case let .notInitialised(dir): return "\(dir) holds no update key; run 'skylark-update init --state \(dir)' first"
            case let .invalidVersion(v): return "version '\(v)' is not X.Y.Z"
            case let .notNewer(version, published): return "version \(version) is not newer than the published \(published)"
            case let .badFile(why): return why
            case .noFiles: return "a release needs at least one --file"
            }
        }
    }

    public let directory: String
    public var keyPath: String { directory + "/update-key.pem" }
    public var publicKeyPath: String { directory + "/update-public.pem" }
    public var manifestPath: String { directory + "/manifest.json" }
    public var releasesPath: String { directory + "/releases" }

    public init(directory: String) {
        self.directory = directory
    }

    public func initialise(keyBits: Int = 3072) throws {
        if FileManager.default.fileExists(atPath: keyPath) { throw Failure.alreadyInitialised(directory) }
        try StateFiles.makePrivateDirectory(directory)
        let key = try RSA.PrivateKey(bits: keyBits)
        try StateFiles.writePrivate(Array(try key.pem().utf8), to: keyPath)
        try StateFiles.write(Array(try key.publicKey.pem().utf8), to: publicKeyPath)
    }

    public func loadKey() throws -> RSA.PrivateKey {
        guard let data = FileManager.default.contents(atPath: keyPath) else { throw Failure.notInitialised(directory) }
        return try RSA.PrivateKey(pem: String(decoding: data, as: UTF8.self))
    }

    /// The manifest now published, if any (its signature is ours; not re-checked here).
    public func currentManifest() -> ReleaseManifest? {
        guard let data = FileManager.default.contents(atPath: manifestPath) else { return nil }
        return try? SignedDocument<ReleaseManifest>.decode(data).body
    }

    /// Copies the files into releases/VERSION/, then replaces the manifest atomically, so a client
    /// never sees a manifest naming files that are not there yet.
    @discardableResult
    public func publish(version: String, files: [String], notes: String?, validFor: Int64, now: Int64) throws -> ReleaseManifest {
        let key = try loadKey()
        guard let parsed = SemanticVersion(version) else { throw Failure.invalidVersion(version) }
        guard !files.isEmpty else { throw Failure.noFiles }
        if let current = currentManifest(), let published = SemanticVersion(current.version), parsed <= published {
            throw Failure.notNewer(version: version, published: current.version)
        }
        let releaseDirectory = "\(releasesPath)/\(parsed)"
        try FileManager.default.createDirectory(atPath: releaseDirectory, withIntermediateDirectories: true)
        var entries: [ReleaseManifest.File] = []
        for path in files {
            guard let data = FileManager.default.contents(atPath: path) else { throw Failure.badFile("cannot read \(path)") }
            let name = (path as NSString).lastPathComponent
            guard UpdateRoutes.isSafeSegment(name) else { throw Failure.badFile("file name '\(name)' may hold only letters, digits, '.', '_' and '-'") }
            guard !entries.contains(where: { $0.name == name }) else { throw Failure.badFile("two files are named '\(name)'") }
            let bytes = Array(data)
            try StateFiles.write(bytes, to: "\(releaseDirectory)/\(name)")
            entries.append(.init(name: name, size: Int64(bytes.count), sha256: SHA256.hash(bytes).hexString, path: "releases/\(parsed)/\(name)"))
        }
        let manifest = ReleaseManifest(version: parsed.description, publishedAt: now, expiresAt: now + validFor, notes: notes, files: entries)
        try StateFiles.write(Array(try SignedDocument.sign(manifest, with: key).encoded()), to: manifestPath)
        return manifest
    }
}

/// Which request paths the update server answers, and where they live in the state folder.
public enum UpdateRoutes {
    public static let manifestPath = "/manifest.json"

    /// A path segment that cannot escape its folder.
    static func isSafeSegment<S: StringProtocol>(_ segment: S) -> Bool {
        !segment.isEmpty && segment != "." && segment != ".." && segment.count <= 255
            && segment.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-") }
    }

    /// The file in `directory` that serves `uri`, or nil (404). Only the manifest and
    /// releases/VERSION/NAME are served: never the key.
    static func file(for uri: String, in directory: String) -> String? {
        let path = uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? uri
        if path == manifestPath { return directory + "/manifest.json" }
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        guard segments.count == 4, segments[0].isEmpty, segments[1] == "releases",
            isSafeSegment(segments[2]), isSafeSegment(segments[3])
        else { return nil }
        return "\(directory)/releases/\(segments[2])/\(segments[3])"
    }
}
