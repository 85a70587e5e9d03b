import Foundation
import SkylarkCrypto
import SkylarkWire

/// The login server's state folder:
///   login-key.pem      RSA private key (mode 0600)
///   login-public.pem   its public key
///   accounts.sqlite    account store (+ -wal, -shm)
///   network.json       the signed network profile clients use
public struct LoginServerState: Sendable {
    public enum Failure: Error, CustomStringConvertible {
        case alreadyInitialised(String)
        case notInitialised(String)
        case io(String)

        public var description: String {
            switch self {
            case let .alreadyInitialised(dir): return "\(dir) already holds a login key; refusing to overwrite it"
            case let .notInitialised(dir): return "\(dir) holds no login key; run 'skylark-login init --state \(dir)' first"
            case let .io(why): return why
            }
        }
    }

    public let directory: String
    public var keyPath: String { directory + "/login-key.pem" }
    public var publicKeyPath: String { directory + "/login-public.pem" }
    public var databasePath: String { directory + "/accounts.sqlite" }
    public var profilePath: String { directory + "/network.json" }

    public init(directory: String) {
        self.directory = directory
    }

    public struct InitOptions: Sendable {
        public var publicAddress: String
        public var updateURL: String?
        public var updatePublicKeyPEM: String?
        public var supernodes: [String] = []
        public var keyBits = 3072

        public init(publicAddress: String) { self.publicAddress = publicAddress }
    }

    /// Makes the key pair, an empty account store and the signed profile.
    @discardableResult
    public func initialise(_ options: InitOptions, now: Int64) throws -> NetworkProfile {
        let fm = FileManager.default
        if fm.fileExists(atPath: keyPath) { throw Failure.alreadyInitialised(directory) }
        guard HostPort(options.publicAddress) != nil else { throw Failure.io("public address '\(options.publicAddress)' is not HOST:PORT") }
        if let pem = options.updatePublicKeyPEM { _ = try RSA.PublicKey(pem: pem) }
        for supernode in options.supernodes where HostPort(supernode) == nil {
            throw Failure.io("supernode '\(supernode)' is not HOST:PORT")
        }
        try StateFiles.makePrivateDirectory(directory)
        let key = try RSA.PrivateKey(bits: options.keyBits)
        try StateFiles.writePrivate(Array(try key.pem().utf8), to: keyPath)
        try StateFiles.write(Array(try key.publicKey.pem().utf8), to: publicKeyPath)
        _ = try SQLiteAccountStore(path: databasePath)
        let profile = NetworkProfile(
            loginAddress: options.publicAddress, loginPublicKey: try key.publicKey.pem(),
            updateURL: options.updateURL, updatePublicKey: options.updatePublicKeyPEM,
            supernodes: options.supernodes, issuedAt: now)
        try StateFiles.write(Array(try SignedDocument.sign(profile, with: key).encoded()), to: profilePath)
        return profile
    }

    public func loadKey() throws -> RSA.PrivateKey {
        guard let data = FileManager.default.contents(atPath: keyPath) else { throw Failure.notInitialised(directory) }
        return try RSA.PrivateKey(pem: String(decoding: data, as: UTF8.self))
    }

    public func openStore() throws -> SQLiteAccountStore {
        try SQLiteAccountStore(path: databasePath)
    }
}
