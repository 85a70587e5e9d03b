import Foundation

/// One call's audio, both ways: the microphone is encoded with Opus into RTP (20, 40 or 60 ms a
/// packet),
/// sealed with AES-256-GCM under the keys only the two callers derived; what arrives is opened
/// (replays refused), smoothed by the adaptive jitter buffer, decoded (FEC for a lost frame when
/// the next one carries it, concealment otherwise), resampled by the drift between the far end's
/// clock and ours (`Playout`) and written to the speaker.
///
/// A two-party call adapts: each side seals a `ReceiverReport` once a second (its own SSRC and
/// payload type 112, so its nonces never meet the audio's) and the `BitrateController` turns
/// the far end's reports into the encoder's bitrate, packet size and FEC share. Conference legs
/// keep the fixed setting (the mixer sends no reports).
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
        /// The encoder's setting now and what drove it (nil for conference legs).
        public var adaptation: BitrateController.Setting?
        /// The round trip measured through the reports, ms.
        public var reportRTTMilliseconds: Double?
        /// The playout's drift compensation now, ppm (nil before audio).
        public var playoutDriftPPM: Double?
    }

    /// Receiver reports travel as RTP of this payload type (dynamic range, beside Opus's 111).
    public static let reportPayloadType: UInt8 = 112
    public static let reportInterval = 1.0
    /// The SSRC a side's reports carry: its audio SSRC with fixed bits flipped, so the two
    /// streams have separate sequence spaces, replay windows and nonces.
    public static func reportSSRC(for ssrc: UInt32) -> UInt32 { ssrc ^ 0x5245_5054 }

    public static let frame = Opus.frameDuration
    /// Beyond this many overdue frames (a stalled process) the clock jumps instead of bursting.
    public static let maximumCatchUp = 10

    private let encoder: OpusEncoder
    private var source: any AudioSource
    private var sink: (any AudioSink)?
    private var cipher: MediaCipher
    private let playout: Playout
    /// Conference legs, and calls from a live microphone (DTX), send only while it carries voice.
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
    /// Nil for conference legs: they neither report nor adapt.
    private var controller: BitrateController?
    private var applied: BitrateController.Setting?
    private var reception = ReceptionTracker()
    /// Frames waiting to fill a packet of several, and the RTP timestamp of the first.
    private var pendingPCM: [Int16] = []
    private var packetTimestamp: UInt32 = 0
    private var reportSequence: UInt16
    private var nextReportAt: Double
    /// The far end's last report: its "sent at", echoed in ours for the round trip.
    private var peerReport: (sentAtMilliseconds: UInt32, arrivedAt: Double)?

    /// `role`: which half of the call's keys is ours; `source` and `sink`: the microphone and
    /// the speaker; `sequence` and `timestamp`: where our RTP starts (random in production);
    /// `dtx`: leave silence unsent (for live microphones, whose pauses are real: discontinuous
    /// transmission by the voice-activity detector's level); `adaptive`:
    /// report and follow the far end's reports (off only to compare).
    public init(
        sharedSecret: [UInt8], callID: [UInt8], role: MediaCipher.Role, ssrc: UInt32, peerSSRC: UInt32, source: any AudioSource,
        sink: (any AudioSink)?, conferenceLeg: Bool = false, dtx: Bool = false, adaptive: Bool = true,
        adaptation: BitrateController.Configuration = .init(),
        sequence: UInt16 = .random(in: 0...UInt16.max), timestamp: UInt32 = .random(in: 0...UInt32.max), now: Double
    ) throws {
        // DTX by level, as conference legs send: Opus's own DTX takes a steady tone for noise.
        voiceActivity = conferenceLeg || dtx ? VoiceActivityDetector() : nil
        let controller = conferenceLeg || !adaptive ? nil : BitrateController(configuration: adaptation, start: now, firstSequence: sequence)
        self.controller = controller
        encoder = try OpusEncoder(
            bitrate: controller?.setting.bitrate ?? 32_000, complexity: 5, inbandFEC: true, expectedPacketLoss: controller?.setting.expectedLossPercent ?? 10)
        applied = controller?.setting
        reportSequence = sequence &+ 0x8000
        nextReportAt = now + Self.reportInterval
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

    /// The packets whose 20 ms frames are due by `now` (a receiver report first when one is
    /// due), sealed and ready to send.
    public func packetsDue(now: Double) -> [[UInt8]] {
        let due = Int((now - start) / Self.frame) + 1
        if due - framesSent > Self.maximumCatchUp { framesSent = due - 1 }
        var packets: [[UInt8]] = []
        if var controller, let deadline = controller.nextTimeout, now >= deadline {
            controller.handleTimeout(now: now)
            self.controller = controller
            apply(controller.setting)
        }
        let framesPerPacket = applied?.framesPerPacket ?? 1
        // The report first: behind the audio of the same tick, a full drop-tail queue on a narrow
        // path would take the audio and drop the report every time.
        if controller != nil, now >= nextReportAt, reception.hasReceived {
            nextReportAt = max(nextReportAt + Self.reportInterval, now + Self.reportInterval / 2)
            let report = reception.report(jitterMilliseconds: playout.jitter.statistics.jitterMs, sentAt: now, echoing: peerReport)
            let header = RTPHeader(
                payloadType: Self.reportPayloadType, sequenceNumber: reportSequence, timestamp: ReceiverReport.milliseconds(now),
                ssrc: Self.reportSSRC(for: ssrc))
            reportSequence &+= 1
            if let packet = try? cipher.seal(header: header, payload: report.encoded()) { packets.append(packet) }
        }
        while framesSent < due {
            framesSent += 1
            let pcm = source.nextFrame() ?? [Int16](repeating: 0, count: Opus.frameSampleCount)
            if voiceActivity?.isVoice(pcm) == false {
                // Silence is not sent (RFC 3550 §5.1: the timestamp runs on, the sequence does not);
                // the far end conceals, fading to silence. A partly filled packet goes out first.
                if !pendingPCM.isEmpty, let packet = seal(pendingPCM, now: now) { packets.append(packet) }
                pendingPCM.removeAll(keepingCapacity: true)
                timestamp &+= UInt32(Opus.frameSampleCount)
                pausedSending = true
                continue
            }
            if pendingPCM.isEmpty { packetTimestamp = timestamp }
            pendingPCM += pcm
            timestamp &+= UInt32(Opus.frameSampleCount)
            guard pendingPCM.count >= framesPerPacket * Opus.frameSampleCount else { continue }
            if let packet = seal(pendingPCM, now: now) { packets.append(packet) }
            pendingPCM.removeAll(keepingCapacity: true)
        }
        if let first = sentBytes.first, now - first.at > 5 { sentBytes.removeAll { now - $0.at > 2 } }
        return packets
    }

    /// Encodes the frames of one packet (starting at `packetTimestamp`) and seals it.
    private func seal(_ pcm: [Int16], now: Double) -> [UInt8]? {
        guard let opus = try? encoder.encode(pcm) else { return nil }
        let header = RTPHeader(sequenceNumber: sequence, timestamp: packetTimestamp, ssrc: ssrc, marker: pausedSending)
        pausedSending = false
        sequence &+= 1
        guard let packet = try? cipher.seal(header: header, payload: opus) else { return nil }
        packetsSent += 1
        sentBytes.append((now, packet.count))
        return packet
    }

    /// Hands a new setting to the encoder; the packet size changes at the next packet.
    private func apply(_ setting: BitrateController.Setting) {
        guard setting != applied else { return }
        if setting.bitrate != applied?.bitrate { try? encoder.setBitrate(setting.bitrate) }
        if setting.expectedLossPercent != applied?.expectedLossPercent { try? encoder.setExpectedPacketLoss(setting.expectedLossPercent) }
        applied = setting
    }

    /// Whether `packet` looks like this call's incoming RTP (the peer's SSRC, or its reports'),
    /// before any crypto.
    public func accepts(_ packet: [UInt8]) -> Bool {
        guard let (header, _) = try? RTPHeader.decode(packet) else { return false }
        return header.ssrc == peerSSRC || (controller != nil && header.ssrc == Self.reportSSRC(for: peerSSRC))
    }

    /// Takes one incoming packet; false when it is not this call's or fails authentication.
    public func receive(_ packet: [UInt8], now: Double) -> Bool {
        guard accepts(packet), let (header, payload) = try? cipher.open(packet) else { return false }
        if header.ssrc != peerSSRC {
            // A report: authenticated, so the far end's own figures. A malformed one is dropped.
            guard header.payloadType == Self.reportPayloadType, let report = try? ReceiverReport(decoding: payload), var controller else { return false }
            peerReport = (report.sentAtMilliseconds, now)
            controller.handle(report, now: now)
            self.controller = controller
            apply(controller.setting)
            return true
        }
        reception.record(sequence: header.sequenceNumber, timestamp: header.timestamp, bytes: packet.count, arrival: now)
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
        let recent = sentBytes.filter { now - $0.at <= 2 }
        let span = max(0.02, min(2, now - (recent.first?.at ?? now)))
        return Statistics(
            // Network loss by sequence number (RFC 3550 A.3): under DTX the pauses are not loss.
            lossPercent: reception.lossPercent,
            jitterMilliseconds: stats.jitterMs,
            bitrateKbps: recent.isEmpty ? nil : Double(recent.reduce(0) { $0 + $1.bytes }) * 8 / span / 1000,
            packetsSent: packetsSent, packetsReceived: packetsReceived,
            longestGapMilliseconds: lastArrival == nil ? nil : longestGap * 1000,
            adaptation: applied, reportRTTMilliseconds: controller?.roundTripTime.map { $0 * 1000 },
            playoutDriftPPM: lastArrival == nil ? nil : playout.driftPPM)
    }
}
