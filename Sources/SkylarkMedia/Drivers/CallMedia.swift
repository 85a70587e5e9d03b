import Foundation

/// One call's audio, both ways: the microphone is encoded with Opus every 20 ms into RTP,
/// sealed with AES-256-GCM under the keys only the two callers derived; what arrives is opened
/// (replays refused), smoothed by the adaptive jitter buffer, decoded (FEC for a lost frame when
/// the next one carries it, concealment otherwise), resampled by the drift between the far end's
/// clock and ours (`Playout`) and written to the speaker.
///
/// Time comes in as `now`; the node calls `packetsDue` and `playOut` every 20 ms and they
/// catch up on whatever the clock says is due, so a late tick never stretches the call. No
/// socket and no clock: the packets go back to the caller, which sends them.
public final class CallMedia {
    public struct Statistics: Sendable {
        public var lossPercent: Double?
        public var jitterMilliseconds: Double?
        public var bitrateKbps: Double?
        public var packetsSent: Int?
        public var packetsReceived: Int?
        /// Longest time between two packets received, in ms (a path switch shows here).
        public var longestGapMilliseconds: Double?
    }

    public static let frame = Opus.frameDuration
    /// Beyond this many overdue frames (a stalled process) the clock jumps instead of bursting.
    public static let maximumCatchUp = 10

    private let encoder: OpusEncoder
    private var source: any AudioSource
    private var sink: (any AudioSink)?
    private var cipher: MediaCipher
    private let playout: Playout
    /// Conference legs send only while the microphone carries voice.
    private var voiceActivity: VoiceActivityDetector?
    private var pausedSending = true
    private let ssrc: UInt32
    private let peerSSRC: UInt32
    private var sequence: UInt16
    private var timestamp: UInt32
    private let start: Double
    private var framesSent = 0
    private var playStart: Double?
    private var framesPlayed = 0
    private var packetsSent = 0
    private var packetsReceived = 0
    private var sentBytes: [(at: Double, bytes: Int)] = []
    private var lastArrival: Double?
    private var longestGap: Double = 0

    /// `role`: which half of the call's keys is ours; `source` and `sink`: the microphone and
    /// the speaker; `sequence` and `timestamp`: where our RTP starts (random in production).
    public init(
        sharedSecret: [UInt8], callID: [UInt8], role: MediaCipher.Role, ssrc: UInt32, peerSSRC: UInt32, source: any AudioSource,
        sink: (any AudioSink)?, conferenceLeg: Bool = false, sequence: UInt16 = .random(in: 0...UInt16.max),
        timestamp: UInt32 = .random(in: 0...UInt32.max), now: Double
    ) throws {
        voiceActivity = conferenceLeg ? VoiceActivityDetector() : nil
        encoder = try OpusEncoder(bitrate: 32_000, complexity: 5, inbandFEC: true, expectedPacketLoss: 10)
        playout = Playout(
            jitter: conferenceLeg ? ConferenceMixer.Configuration().jitter : JitterBuffer.Configuration(), decoder: try OpusDecoder())
        self.source = source
        self.sink = sink
        cipher = MediaCipher(keys: try MediaKeys.derive(sharedSecret: sharedSecret, callID: callID), role: role)
        self.sequence = sequence
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.peerSSRC = peerSSRC
        start = now
    }

    /// The packets whose 20 ms frames are due by `now`, sealed and ready to send.
    public func packetsDue(now: Double) -> [[UInt8]] {
        let due = Int((now - start) / Self.frame) + 1
        if due - framesSent > Self.maximumCatchUp { framesSent = due - 1 }
        var packets: [[UInt8]] = []
        while framesSent < due {
            framesSent += 1
            let pcm = source.nextFrame() ?? [Int16](repeating: 0, count: Opus.frameSampleCount)
            if voiceActivity?.isVoice(pcm) == false {
                // Silence is not sent (RFC 3550 §5.1: the timestamp runs on, the sequence does not).
                timestamp &+= UInt32(Opus.frameSampleCount)
                pausedSending = true
                continue
            }
            guard let opus = try? encoder.encode(pcm) else { continue }
            let header = RTPHeader(sequenceNumber: sequence, timestamp: timestamp, ssrc: ssrc, marker: pausedSending)
            pausedSending = false
            sequence &+= 1
            timestamp &+= UInt32(Opus.frameSampleCount)
            guard let packet = try? cipher.seal(header: header, payload: opus) else { continue }
            packets.append(packet)
            packetsSent += 1
            sentBytes.append((now, packet.count))
        }
        if let first = sentBytes.first, now - first.at > 5 { sentBytes.removeAll { now - $0.at > 2 } }
        return packets
    }

    /// Whether `packet` looks like this call's incoming RTP (the peer's SSRC), before any crypto.
    public func accepts(_ packet: [UInt8]) -> Bool {
        guard let (header, _) = try? RTPHeader.decode(packet) else { return false }
        return header.ssrc == peerSSRC
    }

    /// Takes one incoming packet; false when it is not this call's or fails authentication.
    public func receive(_ packet: [UInt8], now: Double) -> Bool {
        guard accepts(packet), let (header, payload) = try? cipher.open(packet) else { return false }
        playout.insert(sequence: header.sequenceNumber, timestamp: header.timestamp, payload: payload, arrival: now)
        packetsReceived += 1
        if let last = lastArrival { longestGap = max(longestGap, now - last) }
        lastArrival = now
        if playStart == nil { playStart = now }
        return true
    }

    /// Plays the frames due by `now` into the speaker; true if at least one was decoded audio
    /// (not concealment or the silence of a buffer still filling).
    @discardableResult
    public func playOut(now: Double) -> Bool {
        guard let playStart else { return false }
        let due = Int((now - playStart) / Self.frame)
        if due - framesPlayed > Self.maximumCatchUp { framesPlayed = due - 1 }
        var decoded = false
        while framesPlayed < due {
            // Each frame is taken at the time it was due (see MixerMedia.tick).
            let frameTime = min(now, playStart + Double(framesPlayed + 1) * Self.frame)
            framesPlayed += 1
            let (pcm, audible) = playout.frame(now: frameTime)
            decoded = decoded || audible
            try? sink?.write(pcm)
        }
        return decoded
    }

    public func close() {
        try? sink?.close()
    }

    public func statistics(now: Double) -> Statistics {
        let stats = playout.jitter.statistics
        let expected = stats.received + stats.lost - stats.late
        let recent = sentBytes.filter { now - $0.at <= 2 }
        let span = max(0.02, min(2, now - (recent.first?.at ?? now)))
        return Statistics(
            lossPercent: expected > 0 ? 100 * Double(stats.lost) / Double(max(expected, 1)) : nil,
            jitterMilliseconds: stats.jitterMs,
            bitrateKbps: recent.isEmpty ? nil : Double(recent.reduce(0) { $0 + $1.bytes }) * 8 / span / 1000,
            packetsSent: packetsSent, packetsReceived: packetsReceived,
            longestGapMilliseconds: lastArrival == nil ? nil : longestGap * 1000)
    }
}
