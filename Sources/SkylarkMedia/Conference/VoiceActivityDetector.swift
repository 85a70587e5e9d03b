/// Decides, frame by frame, whether a microphone is carrying voice, so a conference participant
/// who is silent sends nothing and costs the mixer nothing (no decode, no own mix).
///
/// A frame is voice when its RMS level is above `thresholdDBFS`; a pause shorter than the
/// hangover is bridged (sent as it is), so the ends of words are not clipped and a talker is not
/// switched on and off between syllables. Deliberately simple — a fixed threshold suits the
/// lab's sources and line-level input; a noisy microphone would want an adaptive noise floor.
public struct VoiceActivityDetector: Sendable {
    /// −50 dBFS: far below speech at a normal level (−30…−15 dBFS), above digital silence and
    /// the noise of a quiet line.
    public var thresholdDBFS: Double
    /// Frames of silence still sent after voice (15 × 20 ms = 300 ms).
    public var hangoverFrames: Int
    private var remaining = 0

    public init(thresholdDBFS: Double = -50, hangoverFrames: Int = 15) {
        self.thresholdDBFS = thresholdDBFS
        self.hangoverFrames = max(hangoverFrames, 0)
    }

    /// Whether this frame should be sent.
    public mutating func isVoice(_ frame: [Int16]) -> Bool {
        if Self.level(of: frame) >= thresholdDBFS {
            remaining = hangoverFrames
            return true
        }
        guard remaining > 0 else { return false }
        remaining -= 1
        return true
    }

    /// RMS level in dB relative to full scale (−∞ for digital silence).
    public static func level(of frame: [Int16]) -> Double {
        guard !frame.isEmpty else { return -.infinity }
        var sum = 0.0
        for sample in frame { sum += Double(sample) * Double(sample) }
        let rms = (sum / Double(frame.count)).squareRoot()
        return rms > 0 ? 20 * log10(rms / 32_768) : -.infinity
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif
