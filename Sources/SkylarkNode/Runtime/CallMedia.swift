import Foundation
import SkylarkMedia
import SkylarkOverlay

/// `--mic`: what a node's microphone plays in calls.
public enum AudioSourceSpec {
    /// "silence", "tone:HZ" or the path of a 48 kHz WAV file (played in a loop).
    public static func check(_ spec: String) throws { _ = try make(spec) }

    static func make(_ spec: String) throws -> any AudioSource {
        if spec == "silence" { return SilenceSource() }
        if spec.hasPrefix("tone:") {
            guard let hz = Double(spec.dropFirst(5)), (20...20_000).contains(hz) else {
                throw MediaError.invalidParameter(name: "tone", value: String(spec.dropFirst(5)))
            }
            return ToneSource(hz: hz, amplitude: 0.3)
        }
        return try WAVFileSource(path: spec, loops: true)
    }
}

/// One call's audio, both ways: the microphone is encoded with Opus every 20 ms into RTP,
/// sealed with AES-256-GCM under the keys only the two callers derived; what arrives is opened
/// (replays refused), smoothed by the adaptive jitter buffer, decoded (FEC for a lost frame when
/// the next one carries it, concealment otherwise) and written to the speaker.
///
/// Time comes in as `now`; the reactor calls `packetsDue` and `playOut` every 20 ms and they
/// catch up on whatever the wall clock says is due, so a late tick never stretches the call.
final class CallMedia {
    struct Statistics {
        var lossPercent: Double?
        var jitterMilliseconds: Double?
        var bitrateKbps: Double?
        var packetsSent: Int?
        var packetsReceived: Int?
        /// Longest time between two packets received, in ms (a path switch shows here).
        var longestGapMilliseconds: Double?
    }

    static let frame = Opus.frameDuration
    /// Beyond this many overdue frames (a stalled process) the clock jumps instead of bursting.
    static let maximumCatchUp = 10

    private let encoder: OpusEncoder
    private let decoder: OpusDecoder
    private var source: any AudioSource
    private let sink: WAVFileSink?
    private var cipher: MediaCipher
    private var jitter: JitterBuffer
    /// Conference legs send only while the microphone carries voice.
    private var voiceActivity: VoiceActivityDetector?
    private var pausedSending = true
    private let ssrc: UInt32
    private let peerSSRC: UInt32
    private var sequence = UInt16.random(in: 0...UInt16.max)
    private var timestamp = UInt32.random(in: 0...UInt32.max)
    private let start: Double
    private var framesSent = 0
    private var playStart: Double?
    private var framesPlayed = 0
    private var packetsSent = 0
    private var packetsReceived = 0
    private var sentBytes: [(at: Double, bytes: Int)] = []
    private var lastArrival: Double?
    private var longestGap: Double = 0

    init(
        sharedSecret: [UInt8], callID: [UInt8], role: CallSession.Role, ssrc: UInt32, peerSSRC: UInt32, microphone: String, speaker: String?,
        conferenceLeg: Bool = false, now: Double
    ) throws {
        jitter = JitterBuffer(configuration: conferenceLeg ? ConferenceMixer.Configuration().jitter : JitterBuffer.Configuration())
        voiceActivity = conferenceLeg ? VoiceActivityDetector() : nil
        encoder = try OpusEncoder(bitrate: 32_000, complexity: 5, inbandFEC: true, expectedPacketLoss: 10)
        decoder = try OpusDecoder()
        source = try AudioSourceSpec.make(microphone)
        sink = try speaker.map { try WAVFileSink(path: $0) }
        cipher = MediaCipher(keys: try MediaKeys.derive(sharedSecret: sharedSecret, callID: callID), role: role == .caller ? .caller : .callee)
        self.ssrc = ssrc
        self.peerSSRC = peerSSRC
        start = now
    }

    /// The packets whose 20 ms frames are due by `now`, sealed and ready to send.
    func packetsDue(now: Double) -> [[UInt8]] {
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
    func accepts(_ packet: [UInt8]) -> Bool {
        guard let (header, _) = try? RTPHeader.decode(packet) else { return false }
        return header.ssrc == peerSSRC
    }

    /// Takes one incoming packet; false when it is not this call's or fails authentication.
    func receive(_ packet: [UInt8], now: Double) -> Bool {
        guard accepts(packet), let (header, payload) = try? cipher.open(packet) else { return false }
        jitter.insert(sequence: header.sequenceNumber, timestamp: header.timestamp, payload: payload, arrival: now)
        packetsReceived += 1
        if let last = lastArrival { longestGap = max(longestGap, now - last) }
        lastArrival = now
        if playStart == nil { playStart = now }
        return true
    }

    /// Plays the frames due by `now` into the speaker; true if at least one was decoded audio
    /// (not concealment or the silence of a buffer still filling).
    @discardableResult
    func playOut(now: Double) -> Bool {
        guard let playStart else { return false }
        let due = Int((now - playStart) / Self.frame)
        if due - framesPlayed > Self.maximumCatchUp { framesPlayed = due - 1 }
        var decoded = false
        while framesPlayed < due {
            // Each frame is taken at the time it was due (see MixerMedia.tick).
            let frameTime = min(now, playStart + Double(framesPlayed + 1) * Self.frame)
            framesPlayed += 1
            let pcm: [Int16]
            switch jitter.next(now: frameTime) {
            case let .frame(payload)?:
                if let samples = try? decoder.decode(payload) {
                    pcm = samples
                    decoded = true
                } else {
                    pcm = decoder.concealLoss()
                }
            case let .fec(next)?:
                pcm = (try? decoder.decodeFEC(from: next)) ?? decoder.concealLoss()
            case .conceal?:
                pcm = decoder.concealLoss()
            case nil:
                // Still filling the buffer: silence keeps the recording on the call's timeline.
                pcm = [Int16](repeating: 0, count: Opus.frameSampleCount)
            }
            try? sink?.write(pcm)
        }
        return decoded
    }

    func close() {
        try? sink?.close()
    }

    func statistics(now: Double) -> Statistics {
        let stats = jitter.statistics
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
