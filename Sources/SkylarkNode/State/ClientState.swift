import Foundation
import SkylarkCrypto
import SkylarkWire

/// The client's state folder (default ~/.skylark, mode 0700):
///   identity.pem     the user's Ed25519 private key (mode 0600), made at first login
///   credential.json  the last credential the login server issued (mode 0600)
public struct ClientState: Sendable {
    public let directory: String
    public var identityPath: String { directory + "/identity.pem" }
    public var credentialPath: String { directory + "/credential.json" }

    public init(directory: String) {
        self.directory = directory
    }

    public static func defaultDirectory() -> String {
        (ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()) + "/.skylark"
    }

    /// The identity key, made (and saved) on first use.
    public func loadOrCreateIdentity() throws -> Ed25519.PrivateKey {
        if let data = FileManager.default.contents(atPath: identityPath) {
            return try Ed25519.PrivateKey(pem: String(decoding: data, as: UTF8.self))
        }
        try StateFiles.makePrivateDirectory(directory)
        let key = try Ed25519.PrivateKey()
        try StateFiles.writePrivate(Array(try key.pem().utf8), to: identityPath)
        return key
    }

    /// The stored credential, as JSON people can read; the signed bytes are kept as received.
    public struct StoredCredential: Codable, Sendable, Equatable {
        public var name: String
        public var nodeID: String
        public var issuedAt: Int64
        public var expiresAt: Int64
        public var serial: UInt64
        public var body: String
        public var signature: String
    }

    public func save(_ credential: Credential) throws {
        let stored = StoredCredential(
            name: credential.name, nodeID: credential.nodeID.hexString, issuedAt: credential.issuedAt,
            expiresAt: credential.expiresAt, serial: credential.serial,
            body: credential.signed.body.base64EncodedString(), signature: credential.signed.signature.base64EncodedString())
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try StateFiles.makePrivateDirectory(directory)
        try StateFiles.writePrivate(Array(try encoder.encode(stored)) + [0x0a], to: credentialPath)
    }

    /// The stored credential, re-verified against `issuer` at `now`.
    public func loadCredential(issuer: RSA.PublicKey, now: Int64) throws -> Credential? {
        guard let data = FileManager.default.contents(atPath: credentialPath) else { return nil }
        let stored = try JSONDecoder().decode(StoredCredential.self, from: data)
        var signed = LoginSignedCredential()
        signed.body = Data(base64Encoded: stored.body) ?? Data()
        signed.signature = Data(base64Encoded: stored.signature) ?? Data()
        return try Credential.verify(signed, issuer: issuer, now: now)
    }
}
