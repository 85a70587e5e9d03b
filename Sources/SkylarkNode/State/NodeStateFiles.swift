import Foundation
import SkylarkCrypto
import SkylarkOverlay
import SkylarkWire

/// The node's files in its state folder, beside `identity.pem` and `credential.json`:
///   hostcache.json   supernodes known, health-scored (human-readable, like Skype's shared.xml)
///   session.json     buddies, inbox, outbox, presence sequence (mode 0600)
///   message-key      the X25519 key that end-to-end messages are sealed to (hex, mode 0600)
///   control.sock     the control socket of a running node (mode 0600)
public struct NodeStateFiles: Sendable {
    public let client: ClientState
    public var directory: String { client.directory }
    public var hostCachePath: String { directory + "/hostcache.json" }
    public var sessionPath: String { directory + "/session.json" }
    public var messageKeyPath: String { directory + "/message-key" }
    public var controlSocketPath: String { directory + "/control.sock" }

    public init(directory: String) {
        self.client = ClientState(directory: directory)
    }

    /// The host cache, or the profile's defaults when the file is missing or unreadable (a
    /// corrupt file is replaced at the next save, never trusted).
    public func loadHostCache(defaults: [HostPort]) -> (cache: HostCache, warning: String?) {
        guard let data = FileManager.default.contents(atPath: hostCachePath) else { return (HostCache(defaults: defaults), nil) }
        do {
            return (try HostCache(fileContents: Array(data), defaults: defaults), nil)
        } catch {
            return (HostCache(defaults: defaults), "host cache \(hostCachePath) unreadable (\(error)); starting from the profile's supernodes")
        }
    }

    public func save(_ cache: HostCache) throws {
        try StateFiles.write(cache.fileContents(), to: hostCachePath)
    }

    public func loadSession() throws -> SessionState {
        guard let data = FileManager.default.contents(atPath: sessionPath) else { return SessionState() }
        do { return try JSONDecoder().decode(SessionState.self, from: data) } catch {
            throw StateFiles.Failure(description: "session file \(sessionPath) is unreadable: \(error)")
        }
    }

    public func save(_ session: SessionState) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try StateFiles.writePrivate(Array(try encoder.encode(session)) + [0x0a], to: sessionPath)
    }

    /// The message key, made and saved on first use.
    public func loadOrCreateMessageKey() throws -> X25519.PrivateKey {
        if let data = FileManager.default.contents(atPath: messageKeyPath) {
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let raw = [UInt8](hexString: text) else { throw StateFiles.Failure(description: "\(messageKeyPath) is not a hex key") }
            return try X25519.PrivateKey(rawRepresentation: raw)
        }
        try StateFiles.makePrivateDirectory(directory)
        let key = try X25519.PrivateKey()
        try StateFiles.writePrivate(Array((try key.rawRepresentation().hexString + "\n").utf8), to: messageKeyPath)
        return key
    }
}
