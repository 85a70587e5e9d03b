/// Keeps a buffer that sits between two clocks at its target level by playing a little fast or a
/// little slow (sans-I/O: the adapter passes in how far the buffer is above its target, and
/// resamples by the rate this returns).
///
/// Two clocks never agree: a sound card runs up to a few hundred ppm off nominal, and so does the
/// far end's. Left alone, a buffer between them drains or fills at that rate (300 ppm is 18 ms a
/// minute), and whole-frame corrections are then heard as a click every minute or so. Resampling
/// by the difference — a 0.03 % change in pitch, far below what an ear resolves — keeps the
/// level and costs no audio.
///
/// A proportional controller on a smoothed excess: rate = gain × excess, within ±maximum. The
/// excess is smoothed over about a second (the level moves in device-sized bursts), and the loop
/// settles in about ten seconds; a steady drift d leaves the buffer d / gain above target (3 ms
/// at 300 ppm), which is why no integral term is needed.
public struct DriftCompensator: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// The largest correction, ppm (parts per million faster (+) or slower (−) than nominal).
        public var maximumPPM: Double
        /// ppm of correction per millisecond above target.
        public var ppmPerMillisecond: Double
        /// Weight of each new observation in the smoothed excess (one per 20 ms frame: 0.02
        /// averages over about a second).
        public var smoothing: Double

        public init(maximumPPM: Double = 1_000, ppmPerMillisecond: Double = 100, smoothing: Double = 0.02) {
            self.maximumPPM = max(maximumPPM, 0)
            self.ppmPerMillisecond = max(ppmPerMillisecond, 0)
            self.smoothing = min(max(smoothing, 0.0001), 1)
        }
    }

    public let configuration: Configuration
    /// The correction in force: positive plays faster (consumes the buffer), negative slower.
    public private(set) var ppm: Double = 0
    private var smoothedExcess: Double?

    public init(configuration: Configuration = Configuration()) { self.configuration = configuration }

    /// Takes the buffer's level above its target (seconds; negative below) and returns the
    /// correction to apply from now on.
    @discardableResult
    public mutating func observe(excess seconds: Double) -> Double {
        guard seconds.isFinite else { return ppm }
        let smoothed = smoothedExcess.map { $0 + (seconds - $0) * configuration.smoothing } ?? seconds
        smoothedExcess = smoothed
        ppm = min(configuration.maximumPPM, max(-configuration.maximumPPM, smoothed * 1000 * configuration.ppmPerMillisecond))
        return ppm
    }

    /// Forgets the level (after a restart of the stream: the old level says nothing).
    public mutating func reset() {
        smoothedExcess = nil
        ppm = 0
    }
}
