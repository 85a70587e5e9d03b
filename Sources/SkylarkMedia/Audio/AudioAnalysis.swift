#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Measurements for checking audio end to end: that a call carried the caller's tone (dominant
/// frequency), that the callee heard something (RMS), and that the callee's recording matches
/// what was sent once the path's delay is taken out (best-alignment cross-correlation).
///
/// Plain loops over `Double`, written for clarity and bounded cost (seconds of 48 kHz audio in a
/// test); nothing here runs on the real-time path.
public enum AudioAnalysis {
    /// Root mean square in sample units (0 for silence, ≈ 23 170 for a full-scale sine,
    /// 32 767·a/√2 for a sine of amplitude a).
    public static func rms(_ samples: [Int16]) -> Double {
        guard !samples.isEmpty else { return 0 }
        var sum = 0.0
        for sample in samples { sum += Double(sample) * Double(sample) }
        return (sum / Double(samples.count)).squareRoot()
    }

    /// Energy of `samples` at one frequency (Goertzel's recurrence, which evaluates a single
    /// DFT term at any frequency — not only at bin centres — in one pass).
    public static func power(of samples: [Int16], at frequency: Double, sampleRate: Int = Opus.sampleRate) -> Double {
        power(of: samples.map(Double.init), at: frequency, sampleRate: sampleRate)
    }

    /// Mean power at `frequency` over Hann-windowed blocks of `blockSeconds` (100 ms: a main lobe
    /// ±20 Hz wide). One Goertzel term over seconds is a filter a fraction of a hertz wide: a tone
    /// played 0.04 % fast — what drift compensation does to a call's audio, inaudibly — lands in
    /// its null (at 2 s, 0.5 Hz off is nothing at all). Short blocks take a tone within a few
    /// hertz whole, and the window keeps tones 100 Hz apart out of each other's measure.
    public static func tonePower(of samples: [Int16], at frequency: Double, blockSeconds: Double = 0.1, sampleRate: Int = Opus.sampleRate) -> Double {
        let length = max(Int(blockSeconds * Double(sampleRate)), 2)
        guard samples.count >= length else { return power(of: windowed(samples[...]), at: frequency, sampleRate: sampleRate) }
        var total = 0.0, blocks = 0
        var start = 0
        while start + length <= samples.count {
            total += power(of: windowed(samples[start..<start + length]), at: frequency, sampleRate: sampleRate)
            blocks += 1
            start += length
        }
        return total / Double(blocks)
    }

    /// The strongest frequency in `range` (Hz), to within 0.1 Hz, or nil for silence or fewer
    /// than 10 ms of audio.
    ///
    /// A coarse scan (5 Hz steps) over up to 200 ms from the middle of the signal finds the peak
    /// — 200 ms under a Hann window gives a main lobe ±10 Hz wide, so 5 Hz steps cannot step
    /// over it — and a fine scan (0.1 Hz steps, ±5 Hz) over up to 2 s places it. The window keeps
    /// a strong tone's side lobes from masquerading as other peaks.
    public static func dominantFrequency(of samples: [Int16], sampleRate: Int = Opus.sampleRate, in range: ClosedRange<Double> = 20...8_000) -> Double? {
        guard samples.count >= sampleRate / 100, rms(samples) > 0 else { return nil }
        let nyquist = Double(sampleRate) / 2
        let low = max(range.lowerBound, 1), high = min(range.upperBound, nyquist - 1)
        guard low <= high else { return nil }

        let coarse = windowed(middle(samples, count: sampleRate / 5))
        var best = (frequency: low, power: -1.0)
        var frequency = low
        while frequency <= high {
            let p = power(of: coarse, at: frequency, sampleRate: sampleRate)
            if p > best.power { best = (frequency, p) }
            frequency += 5
        }

        let fine = windowed(middle(samples, count: 2 * sampleRate))
        var refined = (frequency: best.frequency, power: -1.0)
        frequency = max(low, best.frequency - 5)
        while frequency <= min(high, best.frequency + 5) {
            let p = power(of: fine, at: frequency, sampleRate: sampleRate)
            if p > refined.power { refined = (frequency, p) }
            frequency += 0.1
        }
        return refined.frequency
    }

    /// Normalised correlation of two equally long stretches (the shorter length is used):
    /// 1 for identical shape whatever the gain, 0 for unrelated, −1 for inverted.
    public static func correlation(_ a: [Int16], _ b: [Int16]) -> Double {
        let count = min(a.count, b.count)
        return normalisedCorrelation(a, b, lag: 0, range: 0..<count)
    }

    /// The lag at which `signal` best matches `reference`, and how well.
    public struct Alignment: Sendable, Equatable {
        /// `signal[i + lag]` lines up with `reference[i]`: positive when the signal is late
        /// (the codec's look-ahead, the jitter buffer's delay).
        public let lag: Int
        /// Normalised correlation over the overlap at that lag (−1…1).
        public let correlation: Double
    }

    /// Searches `lags` for the highest normalised cross-correlation between `signal` shifted
    /// back by the lag and `reference`. Lags whose overlap is shorter than `minimumOverlap`
    /// samples (default: half the shorter signal) are skipped, because a few overlapping
    /// samples can correlate perfectly by chance. Nil if no lag qualifies.
    ///
    /// Cost is |lags| × overlap multiply-adds: a ±1000-sample search over one second of audio
    /// is about 10⁸ — fine in a test, not for the real-time path.
    public static func bestAlignment(of signal: [Int16], against reference: [Int16], lags: ClosedRange<Int>, minimumOverlap: Int? = nil) -> Alignment? {
        let needed = max(minimumOverlap ?? min(signal.count, reference.count) / 2, 1)
        var best: Alignment?
        for lag in lags {
            // reference index i pairs with signal index i + lag.
            let start = max(0, -lag)
            let end = min(reference.count, signal.count - lag)
            guard end - start >= needed else { continue }
            let value = normalisedCorrelation(reference, signal, lag: lag, range: start..<end)
            if best.map({ value > $0.correlation }) ?? true { best = Alignment(lag: lag, correlation: value) }
        }
        return best
    }

    // MARK: - Internals

    private static func normalisedCorrelation(_ reference: [Int16], _ signal: [Int16], lag: Int, range: Range<Int>) -> Double {
        guard !range.isEmpty else { return 0 }
        var cross = 0.0, referenceEnergy = 0.0, signalEnergy = 0.0
        reference.withUnsafeBufferPointer { r in
            signal.withUnsafeBufferPointer { s in
                for i in range {
                    let x = Double(r[i]), y = Double(s[i + lag])
                    cross += x * y
                    referenceEnergy += x * x
                    signalEnergy += y * y
                }
            }
        }
        let norm = (referenceEnergy * signalEnergy).squareRoot()
        return norm > 0 ? cross / norm : 0
    }

    private static func power(of samples: [Double], at frequency: Double, sampleRate: Int) -> Double {
        let coefficient = 2 * cos(2 * Double.pi * frequency / Double(sampleRate))
        var previous = 0.0, beforePrevious = 0.0
        samples.withUnsafeBufferPointer { buffer in
            for x in buffer {
                let current = x + coefficient * previous - beforePrevious
                beforePrevious = previous
                previous = current
            }
        }
        return previous * previous + beforePrevious * beforePrevious - coefficient * previous * beforePrevious
    }

    private static func middle(_ samples: [Int16], count: Int) -> ArraySlice<Int16> {
        guard samples.count > count else { return samples[...] }
        let start = (samples.count - count) / 2
        return samples[start..<start + count]
    }

    private static func windowed(_ samples: ArraySlice<Int16>) -> [Double] {
        let n = samples.count
        guard n > 1 else { return samples.map(Double.init) }
        return samples.enumerated().map { index, sample in
            Double(sample) * 0.5 * (1 - cos(2 * Double.pi * Double(index) / Double(n - 1)))
        }
    }
}
