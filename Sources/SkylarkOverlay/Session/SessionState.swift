import Foundation
import SkylarkCrypto
import SkylarkTraversal

/// A user's presence as other users see it.
public enum PresenceStatus: String, Codable, Sendable {
    case online, away, offline, unknown
}

public enum BuddyState: String, Codable, Sendable {
    /// We asked; waiting for their consent.
    case requested
    /// They asked; waiting for ours.
    case incoming
    case confirmed
}

public struct Buddy: Codable, Sendable, Equatable {
    public var name: String
    public var state: BuddyState
    /// Their X25519 message key (hex), from their buddy card.
    public var messageKey: String?
    public var requestText: String?
    public var since: Double
    public var presence: PresenceStatus
    public var presenceSequence: UInt64
    public var supernode: String?
    public var natType: NATType?
    public var publicEndpoint: String?
    public var presenceChangedAt: Double?

    public init(name: String, state: BuddyState, since: Double) {
        self.name = name
        self.state = state
        self.since = since
        self.presence = .unknown
        self.presenceSequence = 0
    }
}

public struct InboxMessage: Codable, Sendable, Equatable {
    public var id: String
    public var from: String
    public var text: String
    public var sentAt: Double
    public var receivedAt: Double
}

public enum OutboxState: Codable, Sendable, Equatable {
    /// Not yet accepted by any supernode; retried while attached.
    case queued
    /// The recipient is offline; `replicas` supernodes hold it.
    case stored(replicas: Int)
    /// The recipient's node has it (and, with `receipt`, said so end to end).
    case delivered(at: Double, receipt: Bool)
}

public struct OutboxMessage: Codable, Sendable, Equatable {
    public var id: String
    public var to: String
    public var text: String
    public var sentAt: Double
    public var state: OutboxState
    /// The signed, sealed envelope, kept so a retry sends the very same message (same id).
    public var envelope: Data
}

/// What a session keeps across restarts (the node saves it in its state folder): buddies,
/// messages in and out, and the presence sequence so a restarted node never reuses one.
public struct SessionState: Codable, Sendable, Equatable {
    public var buddies: [String: Buddy] = [:]
    public var inbox: [InboxMessage] = []
    public var outbox: [OutboxMessage] = []
    public var presenceSequence: UInt64 = 0
    /// Ids of envelopes already handled, so a message fetched twice (mailbox and live) shows once.
    public var handledEnvelopes: [String] = []

    public init() {}
}
