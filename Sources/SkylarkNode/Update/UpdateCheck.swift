import Foundation
import SkylarkCrypto
import SkylarkWire

public enum UpdateFailure: Error, Equatable, Sendable, CustomStringConvertible {
    case notConfigured
    case invalidURL(String)
    case unreachable(url: String, reason: String)
    case httpStatus(Int, url: String)
    case unsigned
    case badSignature
    case expired(at: Int64)
    case malformed(String)
    case fileSizeMismatch(name: String)
    case fileHashMismatch(name: String)

    public var description: String {
        switch self {
        case .notConfigured: return "the network profile names no update server"
        case let .invalidURL(url): return "update URL '\(url)' is not http://HOST:PORT[/PATH]"
        case let .unreachable(url, reason): return "update server unreachable at \(url): \(reason)"
        case let .httpStatus(code, url): return "update server answered HTTP \(code) for \(url)"
        case .unsigned: return "bad update signature: the manifest is unsigned"
        case .badSignature: return "bad update signature: the manifest is not signed by the pinned update key"
        case let .expired(at): return "update manifest rejected: expired at \(Date(timeIntervalSince1970: TimeInterval(at)))"
        case let .malformed(why): return "update manifest rejected: \(why)"
        case let .fileSizeMismatch(name): return "update file '\(name)' rejected: size differs from the signed manifest"
        case let .fileHashMismatch(name): return "update file '\(name)' rejected: SHA-256 differs from the signed manifest"
        }
    }

    /// A problem with the server's reachability, as opposed to what it served.
    public var isUnreachable: Bool {
        switch self {
        case .unreachable, .httpStatus: return true
        default: return false
        }
    }
}

/// Verification of what the update server serves. Pure: bytes and time in, verdicts out.
public enum UpdateCheck {
    public enum Status: Equatable, Sendable {
        case upToDate(latest: SemanticVersion)
        case available(SemanticVersion)
    }

    /// Trusts the manifest only if the pinned key signed exactly it and it has not expired.
    public static func verifyManifest(_ bytes: [UInt8], key: RSA.PublicKey, now: Int64) throws(UpdateFailure) -> ReleaseManifest {
        guard let envelope = try? JSONDecoder().decode(SignatureField.self, from: Data(bytes)) else { throw .malformed("not a JSON object") }
        guard let signature = envelope.signature, !signature.isEmpty else { throw .unsigned }
        let document: SignedDocument<ReleaseManifest>
        do { document = try SignedDocument<ReleaseManifest>.decode(Data(bytes)) } catch { throw .malformed(error.description) }
        let manifest: ReleaseManifest
        do { manifest = try document.verifiedBody(with: key) } catch { throw .badSignature }
        guard manifest.format == ReleaseManifest.currentFormat else { throw .malformed("format \(manifest.format) is not supported") }
        guard now < manifest.expiresAt else { throw .expired(at: manifest.expiresAt) }
        guard SemanticVersion(manifest.version) != nil else { throw .malformed("version '\(manifest.version)' is not X.Y.Z") }
        return manifest
    }

    /// Only the signature, read before the full decode so that an unsigned manifest is told as such
    /// (a signature that is not a string counts as none).
    private struct SignatureField: Decodable {
        var signature: String?

        init(from decoder: any Decoder) throws {
            let object = try decoder.container(keyedBy: CodingKeys.self)  // throws unless a JSON object
            signature = try? object.decode(String.self, forKey: .signature)
        }

        private enum CodingKeys: String, CodingKey { case signature }
    }

    public static func status(of manifest: ReleaseManifest, running: SemanticVersion) -> Status {
        let latest = SemanticVersion(manifest.version) ?? running
        return latest > running ? .available(latest) : .upToDate(latest: latest)
    }

    public static func verifyFile(_ bytes: [UInt8], against entry: ReleaseManifest.File) throws(UpdateFailure) {
        guard Int64(bytes.count) == entry.size else { throw .fileSizeMismatch(name: entry.name) }
        guard SHA256.hash(bytes).hexString == entry.sha256.lowercased() else { throw .fileHashMismatch(name: entry.name) }
    }
}
