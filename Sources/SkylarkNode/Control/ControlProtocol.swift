import Foundation
import SkylarkOverlay
import SkylarkTraversal

/// The control socket's protocol: one JSON object per line each way. A request names a command;
/// the answer is `{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`.
public struct ControlRequest: Codable, Sendable {
    public enum Command: String, Codable, Sendable {
        case status
        case buddyAdd = "buddy.add"
        case buddyAccept = "buddy.accept"
        case buddyRemove = "buddy.remove"
        case buddyList = "buddy.list"
        case search
        case message = "msg"
        case inbox
        case presence
        case call
        case answer
        case hangup
        case calls
        case conferenceStart = "conf.start"
        case conferenceAdd = "conf.add"
        case conferenceLeave = "conf.leave"
        case conferenceStatus = "conf.status"
        case mute
        case unmute
        /// text: the speaker volume in percent, 0–200.
        case volume
    }

    public var command: Command
    public var name: String?
    public var text: String?
    /// Several users (conf.start).
    public var names: [String]?

    public init(command: Command, name: String? = nil, text: String? = nil, names: [String]? = nil) {
        self.command = command
        self.name = name
        self.text = text
        self.names = names
    }
}

public struct ControlAnswer<Result: Codable & Sendable>: Codable, Sendable {
    public var ok: Bool
    public var error: String?
    public var result: Result?
}

/// Answers to the control commands. Field names are the `--json` output's.
public enum ControlResults {
    public struct Status: Codable, Sendable {
        public var name: String
        public var nodeID: String
        public var role: String
        public var roleReason: String
        /// Dial-back checks that failed in a row (reachability for promotion).
        public var failedDialBacks: Int
        public var supernode: String?
        public var loginPath: String
        public var natType: NATType
        public var publicEndpoint: String?
        public var observedEndpoint: String?
        public var listen: [String]
        public var advertised: [String]
        public var presence: String
        public var attachedClients: Int?
        public var dhtContacts: Int?
        public var storedRecords: Int?
        public var hostCacheEntries: Int
        /// How the host cache was last refreshed: "udp", "tcp" (UDP got no answer) or "none".
        public var hostCacheRefresh: String
        public var uptimeSeconds: Double
        public var buddies: [BuddyEntry]
        /// What waits for the node and what was dropped (NodeInbox, link send queues).
        public var queues: Queues? = nil
        /// Mute, volume and the last frame's levels.
        public var audio: Audio? = nil
    }

    /// The node's inbound queues and what their limits dropped, since start.
    public struct Queues: Codable, Sendable, Equatable {
        public var datagramsWaiting = 0
        public var datagramsPeak = 0
        public var datagramLimit = 0
        public var datagramSources = 0
        /// Dropped because their source had its share waiting already.
        public var datagramsDroppedSourceFull = 0
        /// Dropped because the queue (or its table of sources) was full.
        public var datagramsDroppedQueueFull = 0
        /// Dropped from the source with the most waiting, to make room for another source's.
        public var datagramsDroppedLongestQueue = 0
        /// Of no kind the node speaks: dropped unread.
        public var datagramsUnknown = 0
        public var eventsWaiting = 0
        public var eventsPeak = 0
        /// Messages of links that had too many waiting (those links are closed).
        public var linkMessagesDropped = 0
        public var linksClosedForFlooding = 0
        /// Messages not sent because the link's send buffer was full (a peer not reading).
        public var linkSendsDropped = 0
        /// Control requests answered "busy" because too many were waiting.
        public var controlRefused = 0

        public init() {}
    }

    public struct BuddyEntry: Codable, Sendable {
        public var name: String
        public var state: String
        public var presence: String
        public var supernode: String?
        public var natType: NATType?
        public var requestText: String?
    }

    public struct Search: Codable, Sendable {
        public var name: String
        public var found: Bool
        public var status: String
        public var supernode: String?
        public var natType: NATType?
        public var publicEndpoint: String?
        public var privateEndpoints: [String]
        public var hops: Int
    }

    public struct Message: Codable, Sendable {
        public var id: String
        public var to: String
        /// queued, stored, delivered
        public var state: String
        public var replicas: Int?
        public var receipt: Bool?
    }

    public struct Inbox: Codable, Sendable {
        public var messages: [InboxMessage]
        public var outbox: [Message]
    }

    /// The node's audio settings and the last frame's levels (dBFS, -96 for silence).
    public struct Audio: Codable, Sendable, Equatable {
        public var muted: Bool
        public var volumePercent: Int
        public var microphoneDBFS: Double
        public var speakerDBFS: Double
    }

    public struct Done: Codable, Sendable {
        public var done: String
    }

    public struct Call: Codable, Sendable {
        public var id: String
        public var peer: String
        /// outgoing or incoming
        public var direction: String
        /// calling, ringing, connecting, active, ended
        public var state: String
        /// direct, punched or relayed (nil until a path works)
        public var path: String?
        /// Supernodes a relayed call goes through, ours first.
        public var relays: [String]
        public var overTCP: Bool
        public var pathDetail: String?
        /// Every path the call has used, in order.
        public var pathHistory: [String]
        public var rttMilliseconds: Double?
        public var lossPercent: Double?
        public var jitterMilliseconds: Double?
        public var bitrateKbps: Double?
        public var packetsSent: Int?
        public var packetsReceived: Int?
        /// Longest silence between two packets received (a path switch shows here).
        public var longestGapMilliseconds: Double?
        /// How much faster (+) or slower (−) than the far end sends the speaker is being fed, ppm:
        /// the playout's drift compensation (within ±1000, a pitch change nobody hears).
        public var playoutDriftPPM: Double?
        /// From dialling (or ringing) to the first decoded audio frame.
        public var setupMilliseconds: Double?
        /// When the call was dialled (or rang) and when the first audio frame was decoded here,
        /// Unix milliseconds: dial-to-audio across two nodes is callee.firstAudioAtMs − caller.startedAtMs.
        public var startedAtMs: Double
        public var firstAudioAtMs: Double?
        public var ended: String?
        /// How the encoder adapts to the path now, and why (nil before audio, and for legs).
        public var encoding: Encoding?
    }

    /// A call's Opus setting from the far end's receiver reports.
    public struct Encoding: Codable, Sendable, Equatable {
        public enum Driver: String, Codable, Sendable {
            case start, clearPath, loss, throughput, queueing, reportsMissing
        }
        public var opusKbps: Double
        /// Audio per packet: 20, 40 or 60 ms.
        public var packetMilliseconds: Int
        /// The encoder's expected loss, which sizes in-band FEC.
        public var fecLossPercent: Int
        public var driver: Driver
        /// The driver in words, with its figure ("loss 12 %", "far end receives 21.5 kb/s").
        public var reason: String
        /// The round trip measured through the reports.
        public var rttMilliseconds: Double?

        public init(opusKbps: Double, packetMilliseconds: Int, fecLossPercent: Int, driver: Driver, reason: String, rttMilliseconds: Double? = nil) {
            self.opusKbps = opusKbps
            self.packetMilliseconds = packetMilliseconds
            self.fecLossPercent = fecLossPercent
            self.driver = driver
            self.reason = reason
            self.rttMilliseconds = rttMilliseconds
        }
    }

    public struct Conference: Codable, Sendable {
        public var id: String
        public var initiator: String
        /// gathering (electing a mixer), ringing, joining, active, ended
        public var state: String
        /// False on a node that only mixes for others.
        public var participating: Bool
        /// Who mixes now (a user name) and why it was chosen.
        public var mixer: String?
        public var mixerReason: String?
        public var weMix: Bool
        /// Index of the mixer in charge in `candidates` (the failover order).
        public var epoch: Int
        public var candidates: [MixerCandidate]
        public var members: [String]
        public var invited: [String]
        public var mixerHistory: [MixerTurn]
        /// Our leg to the mixer (when another node mixes).
        public var leg: Call?
        /// The legs we serve (when we mix).
        public var legs: [ConferenceLeg]
        public var mixing: MixingCounters?
        /// When audio from the current mixer started here (Unix ms): after a failover, the
        /// resumption time is this minus when the old mixer was lost.
        public var audioSinceMs: Double?
        public var startedAtMs: Double
        public var ended: String?
    }

    public struct MixerCandidate: Codable, Sendable {
        public var name: String
        public var reason: String
    }

    public struct MixerTurn: Codable, Sendable {
        public var name: String
        public var epoch: Int
        public var atMs: Double
    }

    public struct ConferenceLeg: Codable, Sendable {
        public var participant: String
        public var path: String?
        public var packetsSent: Int
        public var packetsReceived: Int
        public var lossPercent: Double?
        public var jitterMilliseconds: Double?
        /// How the mixer plays this participant into the mix: 20 ms ticks its own audio was
        /// in, packets that came after their slot, concealed slots, and the buffer's delay.
        public var framesMixed: Int?
        public var latePackets: Int?
        public var concealedFrames: Int?
        public var discardedPackets: Int?
        public var targetDelayMilliseconds: Double?
        public var delayMilliseconds: Double?
    }

    public struct MixingCounters: Codable, Sendable {
        public var ticks: Int
        public var decodes: Int
        public var encodes: Int
        public var sharedEncodes: Int
        public var packetsOut: Int
    }
}
