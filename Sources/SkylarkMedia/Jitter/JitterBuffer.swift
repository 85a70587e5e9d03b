/// An adaptive jitter buffer for one incoming audio stream of 20 ms frames, one to three a packet (sans-I/O: the adapter passes
/// arrival and playout times in, in seconds on any monotonic clock).
///
/// The adapter calls `insert` for each packet that arrives (after `MediaCipher.open`) and
/// `next(now:)` once per 20 ms audio tick; `next` says what to feed the decoder for that slot:
///
/// - `.frame(payload)` — the slot's packet is here: decode it;
/// - `.fec(next)` — the slot's packet is missing but its successor is here: decode the
///   successor's in-band FEC (`OpusDecoder.decodeFEC(from:)`); the successor itself is played
///   at the following tick;
/// - `.conceal` — nothing to decode from: run PLC (`OpusDecoder.concealLoss()`). Also returned,
///   without consuming a slot, when the buffer stretches to add delay;
/// - `nil` — still buffering (before the first frame, or after a long outage): play silence.
///
/// **Delay model.** Each packet's *transit* is its arrival time minus its media time
/// (timestamp / clock rate); the smallest transit among recent packets is the baseline — a
/// packet that took the fastest path. A slot's *delay* is how long after that ideal arrival it
/// is played: `now − baseline − mediaTime(slot)`. A packet whose transit exceeds the baseline by
/// more than the delay arrives too late. The buffer keeps the delay near a *target*:
///
/// - target = minimum + 2 × jitter, where jitter is RFC 3550's interarrival estimator (§6.4.1,
///   A.8: J += (|D| − J)/16). J comes to a third to a half of the spread of a jittery path
///   (≈35 ms for a uniform 0–80 ms), so 2 J plus the minimum covers most of the spread, and
///   the late-packet rule below the rest;
/// - it grows at once when the jitter grows, and when a packet arrives late (to that packet's
///   excess transit plus half a frame), and shrinks by at most 10 ms per second of playout
///   (a noisy path gets a steady delay, not a sawtooth);
/// - always within [minimumDelay, maximumDelay].
///
/// The delay moves in whole frames: a whole frame (20 ms) short of the target and the buffer
/// inserts one `.conceal` without consuming a slot; more than 2.5 frames (50 ms) over it and it
/// skips one slot (at most one per tick, so shrinking is gradual). Each correction is a
/// discontinuity the listener can hear, so the band is wide — more than three frames — and a
/// path whose packets arrive in bursts (a TCP relay) does not make the delay flap. Skipping
/// drops 20 ms of audio; Opus copes, and it happens at most about once every two seconds while
/// the target is shrinking.
///
/// **Loss.** A slot is lost when its time comes and its packet has not arrived; a packet for a
/// slot already played is *late* and dropped (and raises the target) — unless its media time is
/// far ahead of its number: the sender paused (DTX) without numbering the pause, so the slots
/// concealed meanwhile were not its, and the packet starts a new talk spurt. Duplicates are dropped.
/// Sequence numbers are extended past 65 535 (`RTPSequence`). A packet far ahead of the stream
/// (a restarted sender) restarts the buffer once a second such packet confirms the jump, so one
/// stray packet cannot flush a healthy stream.
public struct JitterBuffer: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// The smallest target delay, seconds.
        public var minimumDelay: Double
        /// The largest target delay, seconds: beyond this a conversation becomes walkie-talkie.
        public var maximumDelay: Double
        /// Audio per packet and per tick, seconds.
        public var frameDuration: Double
        /// RTP timestamp units per second.
        public var clockRate: Int
        /// Target delay = minimum + this × jitter estimate.
        public var jitterMultiplier: Double
        /// Target delay shed per second of playout when the path calms down, seconds/second.
        public var shrinkRate: Double
        /// Concealment with an empty buffer after which the stream is taken as paused and the
        /// buffer goes back to buffering (`next` returns nil), seconds.
        public var maximumConcealment: Double
        /// Packets further ahead of the playout point than this many frames are not buffered
        /// (they would only play after seconds of concealment): they signal a stream restart.
        public var capacity: Int
        /// Recent packets whose fastest transit is the delay baseline (100 ≈ 2 s: long enough to
        /// see a fast packet through jitter, short enough to follow a route change).
        public var baselineWindow: Int

        public init(
            minimumDelay: Double = 0.020, maximumDelay: Double = 0.200, frameDuration: Double = 0.020, clockRate: Int = 48_000,
            jitterMultiplier: Double = 2, shrinkRate: Double = 0.010, maximumConcealment: Double = 0.5, capacity: Int = 64, baselineWindow: Int = 100
        ) {
            self.minimumDelay = minimumDelay
            self.maximumDelay = max(maximumDelay, minimumDelay)
            self.frameDuration = frameDuration
            self.clockRate = clockRate
            self.jitterMultiplier = max(jitterMultiplier, 0)
            self.shrinkRate = shrinkRate
            self.maximumConcealment = maximumConcealment
            self.capacity = max(capacity, 2)
            self.baselineWindow = max(baselineWindow, 1)
        }
    }

    /// What to play for one 20 ms slot.
    public enum Playout: Sendable, Equatable {
        case frame([UInt8])
        case fec([UInt8])
        case conceal
    }

    /// What `insert` did with a packet.
    public enum Insertion: Sendable, Equatable {
        case buffered
        case duplicate
        /// Its slot was already played (or it is too far behind the stream); dropped.
        case late
        /// Far ahead of the stream; held as evidence of a sender restart, not buffered yet.
        case discontinuity
        /// Confirmed a discontinuity: the buffer was flushed and restarted from this packet.
        case restarted
    }

    public struct Statistics: Sendable, Equatable {
        /// Distinct packets that arrived (in time or late; duplicates excluded).
        public var received = 0
        /// Slots whose packet had not arrived when they were due (late packets count here too,
        /// as in RTCP: the loss the listener heard).
        public var lost = 0
        /// Of `lost`, slots rebuilt from the next packet's FEC.
        public var recoveredByFEC = 0
        /// Packets that arrived after their slot was played.
        public var late = 0
        public var duplicates = 0
        /// `.conceal` results: lost slots without FEC plus stretches that grew the delay.
        public var concealed = 0
        /// Packets thrown away unplayed: slots skipped to shrink the delay, and stream restarts.
        public var discarded = 0
        /// Delay of the last slot played, milliseconds.
        public var currentDelayMs = 0.0
        /// The delay the buffer is steering towards, milliseconds.
        public var targetDelayMs = 0.0
        /// RFC 3550 interarrival jitter estimate, milliseconds.
        public var jitterMs = 0.0
    }

    private struct Packet: Sendable {
        var timestamp: UInt64
        var payload: [UInt8]
        var arrival: Double
    }

    private enum Phase: Sendable {
        /// Waiting for enough delay before the first slot (also after a long outage).
        case buffering
        /// `next` is the extended sequence number of the slot to play at the next tick.
        case playing(next: UInt64)
    }

    public let configuration: Configuration
    public private(set) var statistics = Statistics()

    private var phase = Phase.buffering
    private var packets: [UInt64: Packet] = [:]
    /// Highest extended sequence number and timestamp buffered: the references for extending
    /// the next 16-bit sequence and 32-bit timestamp.
    private var highestSequence: UInt64?
    private var highestTimestamp: UInt64?
    /// Highest slot already played (or skipped): anything at or below it is late.
    private var playedThrough: UInt64?
    /// Which extended sequence numbers arrived, to tell a duplicate of a played packet from a
    /// late one.
    private var arrived = ReplayWindow()
    /// The last played packet's (sequence, timestamp), to place missing slots in media time.
    private var anchor: (sequence: UInt64, timestamp: UInt64)?
    private var jitter = 0.0
    private var lastTransit: Double?
    private var recentTransits: [Double] = []
    private var recentTransitCursor = 0
    private var target: Double
    private var concealmentRun = 0
    private var jumpCandidate: (sequence: UInt64, packet: Packet)?

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        target = configuration.minimumDelay
        statistics.targetDelayMs = target * 1000
    }

    private var samplesPerFrame: UInt64 { UInt64((configuration.frameDuration * Double(configuration.clockRate)).rounded()) }
    /// Media time per packet, learnt from consecutive packets: an adapting sender puts one to
    /// three frames in a packet, and a missing slot must be placed by the packets around it.
    private var learntSamplesPerPacket: UInt64?
    private var samplesPerPacket: UInt64 { learntSamplesPerPacket ?? samplesPerFrame }

    /// Number of packets waiting to be played.
    public var bufferedCount: Int { packets.count }

    // MARK: - Arrivals

    /// Adds a packet that arrived at `now`. Never traps, whatever the numbers.
    @discardableResult
    public mutating func insert(sequence: UInt16, timestamp: UInt32, payload: [UInt8], arrival now: Double) -> Insertion {
        // Sequence numbers start one cycle up so a packet reordered before the first one, even
        // across a wrap, still has an extended number (nothing goes below cycle zero).
        let extended = highestSequence.map { RTPSequence.extend(sequence, near: $0) } ?? UInt64(sequence) + 0x1_0000
        let extendedTimestamp = RTPSequence.extend(timestamp: timestamp, near: highestTimestamp)
        let packet = Packet(timestamp: extendedTimestamp, payload: payload, arrival: now)

        if arrived.check(extended) == .duplicate || packets[extended] != nil {
            statistics.duplicates += 1
            return .duplicate
        }
        if let playedThrough, extended <= playedThrough, let highestSequence, let highestTimestamp, extended > highestSequence,
            extendedTimestamp > highestTimestamp + (extended - highestSequence + 1) * samplesPerPacket
        {
            // The sender paused (DTX, a silent conference leg) and went on with the next sequence
            // number, its media time far ahead: the slots concealed meanwhile were never its
            // packets. This one starts a new talk spurt, buffered afresh (delay target, jitter
            // and baseline stay: the path has not changed).
            packets = [:]
            phase = .buffering
            self.playedThrough = extended - 1
            anchor = nil
            concealmentRun = 0
            jumpCandidate = nil
            store(extended, packet)
            return .buffered
        }
        if let playedThrough, extended <= playedThrough {
            arrived.accept(extended)
            statistics.received += 1
            statistics.late += 1
            let transit = self.transit(of: packet)
            updateJitter(transit: transit)
            // Still a measure of the path: if the path got slower than the largest delay, every
            // packet is late, and only late packets can move the baseline up to it.
            recordTransit(transit)
            // It needed (transit − baseline) of delay to be in time: aim a little above that.
            let needed = transit - baseline(including: transit) + configuration.frameDuration / 2
            target = min(configuration.maximumDelay, max(target, needed))
            publishTarget()
            return .late
        }
        if let start = playoutStart, extended >= start + UInt64(configuration.capacity) {
            return noteDiscontinuity(extended, packet)
        }
        if let highestSequence, highestSequence >= UInt64(configuration.capacity), extended <= highestSequence - UInt64(configuration.capacity) {
            // Still buffering, and far behind the newest packet: it could only play after the
            // newer ones had waited for seconds.
            arrived.accept(extended)
            statistics.received += 1
            statistics.late += 1
            return .late
        }
        store(extended, packet)
        return .buffered
    }

    /// The first slot still to be played: the playout point, or the oldest buffered packet.
    private var playoutStart: UInt64? {
        if case let .playing(next) = phase { return next }
        return packets.keys.min()
    }

    private mutating func store(_ extended: UInt64, _ packet: Packet) {
        // Up to 120 ms (RFC 6716's longest packet); a longer step between neighbours is a pause
        // (DTX), not the packet size.
        let before = packets[extended &- 1]?.timestamp ?? anchor.flatMap { $0.sequence == extended &- 1 ? $0.timestamp : nil }
        if let before, packet.timestamp > before, packet.timestamp - before <= 5_760 {
            learntSamplesPerPacket = packet.timestamp - before
        } else if let after = packets[extended &+ 1], after.timestamp > packet.timestamp, after.timestamp - packet.timestamp <= 5_760 {
            learntSamplesPerPacket = after.timestamp - packet.timestamp
        }
        packets[extended] = packet
        arrived.accept(extended)
        statistics.received += 1
        if highestSequence.map({ extended > $0 }) ?? true { highestSequence = extended }
        if highestTimestamp.map({ packet.timestamp > $0 }) ?? true { highestTimestamp = packet.timestamp }
        let transit = self.transit(of: packet)
        updateJitter(transit: transit)
        recordTransit(transit)
        jumpCandidate = nil
    }

    private mutating func noteDiscontinuity(_ extended: UInt64, _ packet: Packet) -> Insertion {
        guard let candidate = jumpCandidate, extended > candidate.sequence, extended - candidate.sequence < UInt64(configuration.capacity) else {
            jumpCandidate = (extended, packet)
            return .discontinuity
        }
        // Two packets agree the stream jumped: restart from them. Delay target and jitter are
        // kept (the path has not changed); everything tied to the old numbering is not.
        statistics.discarded += packets.count
        packets = [:]
        phase = .buffering
        playedThrough = nil
        arrived = ReplayWindow()
        anchor = nil
        lastTransit = nil
        recentTransits = []
        recentTransitCursor = 0
        concealmentRun = 0
        highestSequence = nil
        highestTimestamp = nil
        jumpCandidate = nil
        store(candidate.sequence, candidate.packet)
        store(extended, packet)
        return .restarted
    }

    // MARK: - Playout

    /// What to play for the tick at `now`; call once per frame duration. Nil while buffering.
    public mutating func next(now: Double) -> Playout? {
        shrinkTarget()
        let next: UInt64
        switch phase {
        case .buffering:
            guard let lowest = packets.keys.min(), let packet = packets[lowest] else { return nil }
            guard delay(ofMediaTime: packet.timestamp, now: now) >= target else { return nil }
            anchor = (lowest, packet.timestamp)
            next = lowest
        case let .playing(slot):
            next = slot
        }

        var slot = next
        var delay = delay(ofMediaTime: mediaTime(of: slot), now: now)
        if delay < target - configuration.frameDuration {
            // Too little delay: stretch by one frame of concealment, slot not consumed.
            phase = .playing(next: slot)
            statistics.concealed += 1
            statistics.currentDelayMs = delay * 1000
            return .conceal
        }
        if delay > target + 2.5 * configuration.frameDuration {
            // Too much delay: skip one slot (if its packet is here, it is discarded).
            if packets.removeValue(forKey: slot) != nil { statistics.discarded += 1 } else { statistics.lost += 1 }
            playedThrough = slot
            slot += 1
            delay -= Double(samplesPerPacket) / Double(configuration.clockRate)
        }

        let result: Playout
        if let packet = packets.removeValue(forKey: slot) {
            result = .frame(packet.payload)
            anchor = (slot, packet.timestamp)
            concealmentRun = 0
        } else {
            statistics.lost += 1
            if let successor = packets[slot + 1] {
                statistics.recoveredByFEC += 1
                result = .fec(successor.payload)
                concealmentRun = 0
            } else {
                statistics.concealed += 1
                result = .conceal
                concealmentRun += 1
            }
        }
        playedThrough = slot
        phase = .playing(next: slot + 1)
        statistics.currentDelayMs = delay * 1000
        if packets.isEmpty, Double(concealmentRun) * configuration.frameDuration >= configuration.maximumConcealment {
            // The sender has gone quiet (hold, outage): stop inventing audio and buffer afresh
            // when packets return, instead of playing them after a backlog of concealment.
            phase = .buffering
            concealmentRun = 0
        }
        return result
    }

    // MARK: - Delay estimation

    private func transit(of packet: Packet) -> Double {
        packet.arrival - Double(packet.timestamp) / Double(configuration.clockRate)
    }

    /// The media time of a slot: its packet's timestamp if it is here, otherwise counted in
    /// whole frames from the last packet played.
    private func mediaTime(of slot: UInt64) -> UInt64 {
        if let packet = packets[slot] { return packet.timestamp }
        guard let anchor else { return 0 }
        if slot >= anchor.sequence { return anchor.timestamp &+ (slot - anchor.sequence) &* samplesPerPacket }
        let back = (anchor.sequence - slot) &* samplesPerPacket
        return anchor.timestamp >= back ? anchor.timestamp - back : 0
    }

    private func delay(ofMediaTime timestamp: UInt64, now: Double) -> Double {
        now - baseline(including: nil) - Double(timestamp) / Double(configuration.clockRate)
    }

    /// The fastest recent transit (optionally counting one more that is not recorded).
    private func baseline(including extra: Double?) -> Double {
        var fastest = recentTransits.min() ?? extra ?? 0
        if let extra { fastest = min(fastest, extra) }
        return fastest
    }

    private mutating func recordTransit(_ transit: Double) {
        if recentTransits.count < configuration.baselineWindow {
            recentTransits.append(transit)
        } else {
            recentTransits[recentTransitCursor] = transit
            recentTransitCursor = (recentTransitCursor + 1) % configuration.baselineWindow
        }
    }

    /// RFC 3550 §6.4.1: D is the change in transit between consecutive arrivals (in arrival
    /// order), and the estimate moves 1/16 of the way to |D| each packet.
    private mutating func updateJitter(transit: Double) {
        if let lastTransit {
            let difference = abs(transit - lastTransit)
            // A single absurd value (a timestamp jump) must not poison the estimate for seconds.
            jitter += (min(difference, configuration.maximumDelay) - jitter) / 16
        }
        lastTransit = transit
        statistics.jitterMs = jitter * 1000
        let wanted = desiredTarget
        if wanted > target {
            target = wanted
            publishTarget()
        }
    }

    private var desiredTarget: Double {
        min(configuration.maximumDelay, max(configuration.minimumDelay, configuration.minimumDelay + configuration.jitterMultiplier * jitter))
    }

    private mutating func shrinkTarget() {
        let wanted = desiredTarget
        if wanted < target {
            target = max(wanted, target - configuration.shrinkRate * configuration.frameDuration)
            publishTarget()
        }
    }

    private mutating func publishTarget() { statistics.targetDelayMs = target * 1000 }
}
