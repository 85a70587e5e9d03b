import Foundation
import SkylarkCrypto

/// What a client needs to join a network: where the login server is and which key it holds,
/// where updates come from and which key signs them, and the default supernodes.
/// Written by `skylark-login init` as network.json, signed by the login key.
public struct NetworkProfile: Codable, Sendable, Equatable {
    public static let currentFormat = 1

    public var format: Int
    public var loginAddress: String
    /// PEM SubjectPublicKeyInfo of the login server's RSA key.
    public var loginPublicKey: String
    public var updateURL: String?
    /// PEM SubjectPublicKeyInfo of the update server's RSA signing key.
    public var updatePublicKey: String?
    public var supernodes: [String]
    public var issuedAt: Int64

    public init(loginAddress: String, loginPublicKey: String, updateURL: String?, updatePublicKey: String?, supernodes: [String], issuedAt: Int64) {
        self.format = Self.currentFormat
        self.loginAddress = loginAddress
        self.loginPublicKey = loginPublicKey
        self.updateURL = updateURL
        self.updatePublicKey = updatePublicKey
        self.supernodes = supernodes
        self.issuedAt = issuedAt
    }
}

public enum ProfileError: Error, Equatable, Sendable, CustomStringConvertible {
    case unreadable(path: String)
    case invalid(String)

    public var description: String {
        switch self {
        case let .unreadable(path): return "cannot read network profile \(path)"
        case let .invalid(why): return "invalid network profile: \(why)"
        }
    }
}

/// A profile whose signature has been checked, with its keys parsed.
public struct VerifiedProfile: Sendable {
    public let profile: NetworkProfile
    public let loginKey: RSA.PublicKey
    public let loginEndpoint: HostPort
    public let updateKey: RSA.PublicKey?

    public init(document: SignedDocument<NetworkProfile>) throws(ProfileError) {
        let body = document.body
        guard body.format == NetworkProfile.currentFormat else { throw .invalid("format \(body.format) is not supported") }
        let loginKey: RSA.PublicKey
        do { loginKey = try RSA.PublicKey(pem: body.loginPublicKey) } catch { throw .invalid("login public key: \(error)") }
        do { _ = try document.verifiedBody(with: loginKey) } catch { throw .invalid("signature does not match the login key") }
        guard let endpoint = HostPort(body.loginAddress) else { throw .invalid("login address '\(body.loginAddress)' is not HOST:PORT") }
        var updateKey: RSA.PublicKey?
        if let pem = body.updatePublicKey {
            do { updateKey = try RSA.PublicKey(pem: pem) } catch { throw .invalid("update public key: \(error)") }
        }
        for supernode in body.supernodes where HostPort(supernode) == nil {
            throw .invalid("supernode '\(supernode)' is not HOST:PORT")
        }
        self.profile = body
        self.loginKey = loginKey
        self.loginEndpoint = endpoint
        self.updateKey = updateKey
    }

    public static func load(path: String) throws(ProfileError) -> VerifiedProfile {
        guard let data = FileManager.default.contents(atPath: path) else { throw .unreadable(path: path) }
        let document: SignedDocument<NetworkProfile>
        do { document = try SignedDocument<NetworkProfile>.decode(data) } catch { throw .invalid(error.description) }
        return try VerifiedProfile(document: document)
    }
}

/// HOST:PORT, with IPv6 hosts in brackets ([::1]:7000).
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init?(_ text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return nil }
        }
        guard !host.isEmpty, !host.contains(where: { $0.isWhitespace }), !portText.isEmpty, portText.count <= 5,
            portText.allSatisfy({ $0.isASCII && $0.isNumber }), let port = Int(portText), (0...65535).contains(port)
        else { return nil }
        self.host = String(host)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
