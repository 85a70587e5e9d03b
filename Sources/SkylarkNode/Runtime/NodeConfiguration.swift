import Foundation
import SkylarkAudio
import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire

/// Everything `skylark run` decides before the node starts.
public struct NodeConfiguration: Sendable {
    public var name: String
    public var password: String
    public var profile: VerifiedProfile
    public var stateDirectory: String
    /// TCP listening addresses; UDP is bound on the first one's address and port. A supernode may
    /// add 443 or 80 for clients behind firewalls that allow only those ports.
    public var listen: [HostPort]
    /// Addresses other nodes should dial, when they differ from `listen` (0.0.0.0, port forwards).
    /// When empty, a node listening on 0.0.0.0 advertises the address its supernode observed.
    public var advertise: [HostPort] = []
    public var supernodeMode: PromotionPolicy.Mode
    public var promotion: PromotionPolicy.Configuration
    /// How often an `auto` node asks for a dial-back while it is a client.
    public var reachabilityCheckInterval: Double = 30
    public var supernode = SupernodeCore.Configuration()
    /// Admission limits for the relay circuits a supernode carries.
    public var relayLimits = RelayCircuits.Limits()
    public var call = CallSession.Configuration()
    /// What the microphone plays: `pulse[:SOURCE]`, a WAV file, `tone:HZ` or `silence`.
    public var microphone = "silence"
    /// Where heard audio goes: `pulse[:SINK]`, a WAV file path (written as audio arrives), or nil for none.
    public var speaker: String?
    /// Echo cancellation, noise suppression and gain control for device audio.
    public var voiceProcessing = VoiceProcessing()
    /// DTX: a live microphone's silence is not sent (files and tones are always sent whole).
    public var discontinuousTransmission = true
    /// Answer incoming calls and conference invitations at once.
    public var autoAnswer = false
    public var conference = ConferenceSession.Configuration()
    /// The uplink this node offers as a conference mixer; nil: the default route's link speed.
    public var upstreamKbps: Int?
    public var session = ClientSession.Configuration()
    /// Total time allowed to find a supernode at start-up.
    public var bootstrapTimeout: Double = 10
    /// Seconds to wait for a direct connection to the login server before relaying via a supernode.
    public var loginDirectTimeout: Double = 3
    /// Client keepalive on its supernode link; a supernode closes client links silent for
    /// `linkIdleTimeout`.
    public var keepaliveInterval: Double = 10
    public var linkIdleTimeout: Double = 45
    /// Re-running NAT type detection; it also refreshes the public UDP mapping.
    public var natRecheckInterval: Double = 300

    public init(
        name: String, password: String, profile: VerifiedProfile, stateDirectory: String, listen: [HostPort],
        supernodeMode: PromotionPolicy.Mode
    ) {
        self.name = name
        self.password = password
        self.profile = profile
        self.stateDirectory = stateDirectory
        self.listen = listen
        self.supernodeMode = supernodeMode
        self.promotion = PromotionPolicy.Configuration(mode: supernodeMode)
    }

    public static let defaultPort = 7100
}
