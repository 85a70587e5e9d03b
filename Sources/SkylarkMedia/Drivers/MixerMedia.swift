import Foundation

/// A conference's audio at the node that mixes it: one encrypted RTP stream each way per leg
/// (keys from that leg's own handshake, so each participant's audio is end-to-end encrypted
/// between it and the mixer), the `ConferenceMixer` in between, and — when the mixing node takes
/// part — its own microphone in and its speaker out without any codec.
///
/// The node calls `tick(now:)` every 20 ms; it mixes every slot due by `now` (catching up
/// after a late tick, like `CallMedia`) and returns the sealed packets per leg, named by the
/// node's own leg ids.
public final class MixerMedia<LegID: Hashable & Comparable> {
    struct Leg {
        var participant: String
        var cipher: MediaCipher
        var ssrc: UInt32
        var peerSSRC: UInt32
        var sequence: UInt16
        var timestamp: UInt32
        var packetsSent = 0
        var packetsReceived = 0
    }

    private let mixer: ConferenceMixer
    private var legs: [LegID: Leg] = [:]
    private var source: (any AudioSource)?
    private var voiceActivity = VoiceActivityDetector()
    private var sink: (any AudioSink)?
    private let start: Double
    private var slots = 0
    /// When the local participant first heard the others through this mixer.
    public private(set) var firstLocalAudioAt: Double?

    /// `localName`: the mixing node's user when it takes part, with its microphone (`source`)
    /// and speaker (`sink`); both are ignored when it does not.
    public init(localName: String?, source: (any AudioSource)?, sink: (any AudioSink)?, now: Double) throws {
        mixer = try ConferenceMixer()
        mixer.setLocal(localName)
        self.source = localName == nil ? nil : source
        self.sink = localName == nil ? nil : sink
        start = now
    }

    public var counters: ConferenceMixer.Counters { mixer.counters }

    /// `sequence` and `timestamp`: where the leg's RTP toward the participant starts.
    public func addLeg(
        _ id: LegID, participant: String, sharedSecret: [UInt8], callID: [UInt8], ssrc: UInt32, peerSSRC: UInt32,
        sequence: UInt16 = .random(in: 0...UInt16.max), timestamp: UInt32 = .random(in: 0...UInt32.max)
    ) throws {
        let keys = try MediaKeys.derive(sharedSecret: sharedSecret, callID: callID)
        // The participant opened the leg: it is the leg's caller, the mixer its callee.
        legs[id] = Leg(
            participant: participant, cipher: MediaCipher(keys: keys, role: .callee), ssrc: ssrc, peerSSRC: peerSSRC, sequence: sequence, timestamp: timestamp)
        try mixer.addRemote(participant)
    }

    public func removeLeg(_ id: LegID) {
        guard let leg = legs.removeValue(forKey: id) else { return }
        if !legs.values.contains(where: { $0.participant == leg.participant }) { mixer.removeRemote(leg.participant) }
    }

    public func hasLeg(_ id: LegID) -> Bool { legs[id] != nil }

    /// An incoming packet on leg `id`; false when it is not that leg's or fails authentication.
    public func receive(_ packet: [UInt8], leg id: LegID, now: Double) -> Bool {
        guard var leg = legs[id], let (header, _) = try? RTPHeader.decode(packet), header.ssrc == leg.peerSSRC,
            let (opened, payload) = try? leg.cipher.open(packet)
        else { return false }
        leg.packetsReceived += 1
        legs[id] = leg
        mixer.receive(from: leg.participant, sequence: opened.sequenceNumber, timestamp: opened.timestamp, payload: payload, now: now)
        return true
    }

    /// Whether `packet` is RTP from one of our legs (by SSRC), and which.
    public func leg(for packet: [UInt8]) -> LegID? {
        guard let (header, _) = try? RTPHeader.decode(packet) else { return nil }
        return legs.first { $0.value.peerSSRC == header.ssrc }?.key
    }

    /// Mixes the slots due by `now`; the sealed packets to send, per leg id.
    public func tick(now: Double) -> [(leg: LegID, packet: [UInt8])] {
        let due = Int((now - start) / CallMedia.frame) + 1
        if due - slots > CallMedia.maximumCatchUp { slots = due - 1 }
        var out: [(LegID, [UInt8])] = []
        while slots < due {
            // Each slot is mixed at the time it was due: after a late tick the jitter buffers
            // must not see several slots at one instant (they would take the later ones as
            // early and conceal them).
            let slotTime = min(now, start + Double(slots) * CallMedia.frame)
            slots += 1
            var frame: [Int16]?
            if source != nil {
                let pcm = source!.nextFrame() ?? [Int16](repeating: 0, count: Opus.frameSampleCount)
                if voiceActivity.isVoice(pcm) { frame = pcm }
            }
            let mixed = mixer.tick(now: slotTime, localFrame: frame)
            if source != nil {
                if mixed.local != nil, firstLocalAudioAt == nil { firstLocalAudioAt = now }
                try? sink?.write(mixed.local ?? [Int16](repeating: 0, count: Opus.frameSampleCount))
            }
            let outputs = Dictionary(mixed.outputs.map { ($0.participant, $0) }, uniquingKeysWith: { first, _ in first })
            for id in legs.keys.sorted() {
                guard var leg = legs[id] else { continue }
                defer {
                    leg.timestamp &+= UInt32(Opus.frameSampleCount)
                    legs[id] = leg
                }
                guard let output = outputs[leg.participant] else { continue }
                let header = RTPHeader(sequenceNumber: leg.sequence, timestamp: leg.timestamp, ssrc: leg.ssrc, marker: output.startsTalkspurt)
                guard let packet = try? leg.cipher.seal(header: header, payload: output.payload) else { continue }
                leg.sequence &+= 1
                leg.packetsSent += 1
                out.append((id, packet))
            }
        }
        return out
    }

    /// What the mixer sent and received on a leg, and how its jitter buffer played the
    /// participant's audio into the mix.
    public struct LegStatistics: Sendable {
        public var sent: Int
        public var received: Int
        public var lossPercent: Double?
        public var playout: JitterBuffer.Statistics?
        /// Ticks the participant's own audio was in the mix.
        public var framesMixed: Int?
    }

    public func legStatistics(_ id: LegID) -> LegStatistics? {
        guard let leg = legs[id] else { return nil }
        let stats = mixer.statistics(of: leg.participant)
        let expected = (stats?.received ?? 0) + (stats?.lost ?? 0) - (stats?.late ?? 0)
        return LegStatistics(
            sent: leg.packetsSent, received: leg.packetsReceived, lossPercent: expected > 0 ? 100 * Double(stats!.lost) / Double(expected) : nil,
            playout: stats, framesMixed: mixer.framesMixed(of: leg.participant))
    }

    public func close() {
        try? sink?.close()
    }
}
