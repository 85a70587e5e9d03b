/// The audio of one conference at its mixer, one 20 ms tick at a time (sans-I/O: packets and
/// times in, packets and PCM out; RTP, encryption and sockets are the adapter's).
///
/// Each tick:
/// 1. Every remote participant's jitter buffer gives this slot's frame. Only those with audio
///    are decoded — a silent participant sends nothing (`VoiceActivityDetector` at its end), so
///    its buffer is empty and it costs no decode. The local participant (when the mixing node
///    takes part) contributes its microphone frame when it carries voice.
/// 2. The active frames are summed once.
/// 3. Every active speaker gets the sum minus its own frame, encoded with its own encoder; every
///    listener gets the whole sum, encoded **once** with one shared encoder and sent to all of
///    them. So the cost is one decode per active speaker plus one encode per distinct mix —
///    the libopus floor — and silent participants are nearly free.
/// 4. Each outgoing mix passes a limiter: sums of loud speakers are scaled down smoothly rather
///    than clipped (fast attack, slow release); a hard clamp is only the last guard.
///
/// When nobody else speaks a participant is sent nothing; its jitter buffer goes quiet and plays
/// silence, as for any pause.
public final class ConferenceMixer {
    public struct Configuration: Sendable {
        public var bitrate = 32_000
        public var complexity = 5
        public var expectedPacketLoss = 10
        /// Conference streams pause whenever their speaker does: concealment stops after 60 ms
        /// of an empty buffer instead of inventing half a second of audio.
        public var jitter = JitterBuffer.Configuration(maximumConcealment: 0.06)
        public init() {}
    }

    /// One encoded mix for one participant this tick.
    public struct Output: Sendable, Equatable {
        public var participant: String
        public var payload: [UInt8]
        /// The first packet after a pause (RTP marker bit).
        public var startsTalkspurt: Bool
        /// The listeners' shared mix (the same payload goes to every listener).
        public var shared: Bool
    }

    public struct Tick: Sendable {
        public var outputs: [Output] = []
        /// What the local participant hears (nil: nobody else spoke, or no local participant).
        public var local: [Int16]?
        public var activeSpeakers: [String] = []
        public var decodes = 0
        public var encodes = 0
    }

    /// Totals since the mixer started, for benchmarks and status.
    public struct Counters: Sendable, Equatable {
        public var ticks = 0
        public var decodes = 0
        public var encodes = 0
        public var sharedEncodes = 0
        public var packetsOut = 0
    }

    private final class Remote {
        var jitter: JitterBuffer
        let decoder: OpusDecoder
        /// Its own mix (everyone but itself) while it speaks; created on first need.
        var encoder: OpusEncoder?
        var limiter = MixLimiter()
        var frame: [Int16]?
        /// What it was sent last tick: nothing, the shared mix, or its own mix.
        var lastSent = Sent.nothing
        /// Ticks its audio was in the mix from its own packet (not concealment or FEC).
        var framesMixed = 0

        init(jitter: JitterBuffer.Configuration) throws(MediaError) {
            self.jitter = JitterBuffer(configuration: jitter)
            decoder = try OpusDecoder()
        }
    }

    private enum Sent { case nothing, shared, own }

    public let configuration: Configuration
    public private(set) var counters = Counters()
    private var remotes: [(name: String, remote: Remote)] = []
    private var localName: String?
    private var localLimiter = MixLimiter()
    private let sharedEncoder: OpusEncoder
    private var sharedLimiter = MixLimiter()
    private var sharedRunning = false
    private var sum = [Int32](repeating: 0, count: Opus.frameSampleCount)
    private var scratch = [Int32](repeating: 0, count: Opus.frameSampleCount)

    public init(configuration: Configuration = Configuration()) throws(MediaError) {
        self.configuration = configuration
        sharedEncoder = try Self.makeEncoder(configuration)
    }

    public var participants: [String] { (localName.map { [$0] } ?? []) + remotes.map(\.name) }

    public func addRemote(_ name: String) throws(MediaError) {
        guard !remotes.contains(where: { $0.name == name }) else { return }
        remotes.append((name, try Remote(jitter: configuration.jitter)))
    }

    public func removeRemote(_ name: String) {
        remotes.removeAll { $0.name == name }
    }

    /// The mixing node takes part as `name` (nil: it only mixes).
    public func setLocal(_ name: String?) {
        localName = name
    }

    /// One packet from a remote participant (already decrypted).
    public func receive(from name: String, sequence: UInt16, timestamp: UInt32, payload: [UInt8], now: Double) {
        guard let remote = remotes.first(where: { $0.name == name })?.remote else { return }
        remote.jitter.insert(sequence: sequence, timestamp: timestamp, payload: payload, arrival: now)
    }

    public func statistics(of name: String) -> JitterBuffer.Statistics? {
        remotes.first { $0.name == name }?.remote.jitter.statistics
    }

    /// Ticks a participant's own audio was in the mix (what the others heard of it).
    public func framesMixed(of name: String) -> Int? {
        remotes.first { $0.name == name }?.remote.framesMixed
    }

    /// Mixes one 20 ms slot. `localFrame`: the local participant's microphone frame when it
    /// carries voice, nil when it is silent (or there is no local participant).
    public func tick(now: Double, localFrame: [Int16]? = nil) -> Tick {
        var result = Tick()
        counters.ticks += 1
        let frameCount = Opus.frameSampleCount

        // 1. This slot's audio from everyone who speaks.
        for entry in remotes {
            let remote = entry.remote
            remote.frame = nil
            switch remote.jitter.next(now: now) {
            case let .frame(payload)?:
                remote.frame = (try? remote.decoder.decode(payload)) ?? remote.decoder.concealLoss()
                remote.framesMixed += 1
            case let .fec(next)?:
                remote.frame = (try? remote.decoder.decodeFEC(from: next)) ?? remote.decoder.concealLoss()
            case .conceal?:
                remote.frame = remote.decoder.concealLoss()
            case nil:
                continue
            }
            result.decodes += 1
            result.activeSpeakers.append(entry.name)
        }
        let local = localName != nil && localFrame?.count == frameCount ? localFrame : nil
        if local != nil, let localName { result.activeSpeakers.insert(localName, at: 0) }

        // 2. The sum of them all.
        sum.withUnsafeMutableBufferPointer { total in
            for index in 0..<frameCount { total[index] = 0 }
            if let local { Self.add(local, into: total) }
            for entry in remotes { if let frame = entry.remote.frame { Self.add(frame, into: total) } }
        }
        let speakers = result.activeSpeakers.count

        // 3. The mixes. A speaker hears the others only when there are others.
        var sharedPayload: [UInt8]?
        var sharedStarts = false
        let listeners = remotes.filter { $0.remote.frame == nil }
        if speakers > 0 && !listeners.isEmpty {
            sharedPayload = encode(sum, limiter: &sharedLimiter, encoder: sharedEncoder)
            if sharedPayload != nil {
                result.encodes += 1
                counters.sharedEncodes += 1
            }
            sharedStarts = !sharedRunning
        }
        sharedRunning = sharedPayload != nil
        for entry in remotes {
            let remote = entry.remote
            if let own = remote.frame {
                guard speakers > 1 else {
                    remote.lastSent = .nothing
                    continue
                }
                subtract(own)
                if remote.encoder == nil { remote.encoder = try? Self.makeEncoder(configuration) }
                guard let encoder = remote.encoder else { continue }
                // Its own stream restarts from nothing after a pause.
                if remote.lastSent != .own { try? encoder.reset() }
                if let payload = encode(scratch, limiter: &remote.limiter, encoder: encoder) {
                    result.encodes += 1
                    result.outputs.append(Output(participant: entry.name, payload: payload, startsTalkspurt: remote.lastSent == .nothing, shared: false))
                    remote.lastSent = .own
                }
            } else if let sharedPayload {
                result.outputs.append(
                    Output(
                        participant: entry.name, payload: sharedPayload, startsTalkspurt: remote.lastSent == .nothing || sharedStarts,
                        shared: true))
                remote.lastSent = .shared
            } else {
                remote.lastSent = .nothing
            }
        }
        if localName != nil {
            if let local {
                if speakers > 1 {
                    subtract(local)
                    result.local = localLimiter.apply(scratch)
                }
            } else if speakers > 0 {
                result.local = localLimiter.apply(sum)
            }
        }
        counters.decodes += result.decodes
        counters.encodes += result.encodes
        counters.packetsOut += result.outputs.count
        return result
    }

    // MARK: - Internals

    private static func makeEncoder(_ configuration: Configuration) throws(MediaError) -> OpusEncoder {
        try OpusEncoder(
            bitrate: configuration.bitrate, complexity: configuration.complexity, inbandFEC: true,
            expectedPacketLoss: configuration.expectedPacketLoss)
    }

    private static func add(_ frame: [Int16], into total: UnsafeMutableBufferPointer<Int32>) {
        frame.withUnsafeBufferPointer { samples in
            for index in 0..<min(samples.count, total.count) { total[index] &+= Int32(samples[index]) }
        }
    }

    /// scratch = sum − frame.
    private func subtract(_ frame: [Int16]) {
        sum.withUnsafeBufferPointer { total in
            scratch.withUnsafeMutableBufferPointer { out in
                frame.withUnsafeBufferPointer { own in
                    for index in 0..<out.count { out[index] = total[index] &- Int32(own[index]) }
                }
            }
        }
    }

    private func encode(_ mix: [Int32], limiter: inout MixLimiter, encoder: OpusEncoder) -> [UInt8]? {
        try? encoder.encode(limiter.apply(mix))
    }
}

/// Keeps a sum of voices inside 16 bits without the harshness of clipping: the gain drops
/// within a millisecond when a frame would exceed the ceiling and recovers over about half a
/// second (≈5 % of the way per 20 ms frame). The final clamp only catches what a 1 ms attack
/// lets through.
struct MixLimiter: Sendable {
    /// Below full scale with room for Opus: a steady mix limited to 29 000 still decoded with
    /// samples at ±32 767; at 22 000 none did.
    static let ceiling: Float = 22_000
    static let attackSamples = 48
    static let release: Float = 0.05
    private(set) var gain: Float = 1

    mutating func apply(_ mix: [Int32]) -> [Int16] {
        var peak: Int32 = 0
        for sample in mix { peak = max(peak, sample == .min ? .max : abs(sample)) }
        let needed: Float = Float(peak) > Self.ceiling ? Self.ceiling / Float(peak) : 1
        let start = gain
        let end = needed < gain ? needed : min(needed, gain + (1 - gain) * Self.release)
        var out = [Int16](repeating: 0, count: mix.count)
        let count = mix.count
        mix.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { output in
                for index in 0..<count {
                    let g: Float
                    if end < start {
                        g = index < Self.attackSamples ? start + (end - start) * Float(index) / Float(Self.attackSamples) : end
                    } else {
                        g = start + (end - start) * Float(index) / Float(max(count, 1))
                    }
                    let value = Float(input[index]) * g
                    output[index] = Int16(max(-32_768, min(32_767, value)))
                }
            }
        }
        gain = end
        return out
    }
}
