/// What the playout decodes with: `OpusDecoder` in calls (a unit test may count frames instead).
public protocol FrameDecoding: AnyObject {
    func decode(_ packet: [UInt8]) throws(MediaError) -> [Int16]
    func decodeFEC(from next: [UInt8]) throws(MediaError) -> [Int16]
    func concealLoss() -> [Int16]
    /// Forgets the stream so far (a new talk spurt after a pause).
    func reset() throws(MediaError)
}

extension OpusDecoder: FrameDecoding {}

/// The receive side of a stream from the jitter buffer to the speaker: exactly one frame per tick
/// of the local clock, whatever the far end's clock does.
///
/// The far end sends on its clock and the local speaker plays on another; the jitter buffer sees
/// the difference as a delay that creeps (300 ppm: 18 ms a minute) and would correct it by
/// skipping or repeating a whole frame every minute or so — a click. Here a `DriftCompensator`
/// watches the delay against the buffer's target and a `DriftResampler` plays the decoded audio
/// that much faster or slower, so the delay stays put and the frame corrections are left for
/// real changes of the path. Sans-I/O: time comes in as `now`.
public final class Playout {
    public private(set) var jitter: JitterBuffer
    private let decoder: any FrameDecoding
    private let resampler: DriftResampler?
    private var compensator = DriftCompensator()
    /// Resampled audio not yet played (under a frame).
    private var pending: [Int16] = []
    /// The buffer went back to buffering (the sender paused: DTX, a silent conference leg):
    /// the next talk spurt starts the decoder afresh.
    private var paused = false
    private let frameSamples: Int
    private let sampleRate: Double
    private var halfFrameMilliseconds: Double { Double(frameSamples) / sampleRate * 500 }

    /// `driftCompensation: false` leaves drift to the jitter buffer's whole-frame corrections.
    public init(jitter configuration: JitterBuffer.Configuration = JitterBuffer.Configuration(), decoder: any FrameDecoding, driftCompensation: Bool = true) {
        jitter = JitterBuffer(configuration: configuration)
        self.decoder = decoder
        resampler = driftCompensation ? DriftResampler(sampleRate: configuration.clockRate) : nil
        frameSamples = Int((configuration.frameDuration * Double(configuration.clockRate)).rounded())
        sampleRate = Double(configuration.clockRate)
    }

    /// The correction in force, ppm (positive: playing faster than the far end sends).
    public var driftPPM: Double { compensator.ppm }
    /// How far the delay of the last frame heard was from the compensator's aim (the jitter
    /// buffer's target plus half a frame), ms.
    public private(set) var excessMilliseconds = 0.0

    @discardableResult
    public func insert(sequence: UInt16, timestamp: UInt32, payload: [UInt8], arrival now: Double) -> JitterBuffer.Insertion {
        jitter.insert(sequence: sequence, timestamp: timestamp, payload: payload, arrival: now)
    }

    /// The frame to play for the tick at `now`, and whether any of it was decoded audio (not
    /// concealment or the silence of a buffer still filling).
    public func frame(now: Double) -> (samples: [Int16], decoded: Bool) {
        var decoded = false
        // A frame resampled faster than real time yields a little under a frame, so now and then
        // a tick takes two; never more than a few (the ratio is within ±0.1 %).
        var pulls = 0
        while pending.count < frameSamples, pulls < 4 {
            pulls += 1
            let queued = Double(pending.count) / sampleRate
            let pcm: [Int16]
            switch jitter.next(now: now) {
            case let .frame(payload)?:
                // After a pause the decoder's state is half a second of fading concealment, and
                // it would fade the first 20 ms of the new spurt in from there (a click or a
                // word's onset at a fifth of its level): the spurt starts as a new stream.
                if paused { try? decoder.reset() }
                paused = false
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
                // Still filling: silence keeps the speaker on the call's timeline, and the level
                // the compensator learnt means nothing for the stream that comes next.
                compensator.reset()
                paused = true
                pending += repeatElement(0, count: frameSamples - pending.count)
                continue
            }
            guard let resampler else {
                pending += pcm
                continue
            }
            // The frame pulled now is heard after what is still queued here (0 to 20 ms, sweeping
            // as the ratio moves the frame boundaries). The compensator aims the delay heard at the
            // target plus half a frame, so the buffer's own measure — taken when the frame is
            // pulled — stays within half a frame of its target and never reaches its corrections.
            let statistics = jitter.statistics
            excessMilliseconds = statistics.currentDelayMs + queued * 1000 - statistics.targetDelayMs - halfFrameMilliseconds
            resampler.setDrift(ppm: compensator.observe(excess: excessMilliseconds / 1000))
            pending += resampler.process(pcm)
        }
        if pending.count < frameSamples { pending += repeatElement(0, count: frameSamples - pending.count) }
        let out = Array(pending.prefix(frameSamples))
        pending.removeFirst(frameSamples)
        return (out, decoded)
    }
}
