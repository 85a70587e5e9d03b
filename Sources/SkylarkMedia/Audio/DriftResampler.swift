import CSpeexDSP

/// Resamples one mono 48 kHz stream by a small, changing ratio (speexdsp's resampler): the
/// actuator of a `DriftCompensator`. At +300 ppm it turns 1 000 300 samples into 1 000 000 (plays
/// faster), at −300 ppm 1 000 000 into 1 000 300. Continuous across calls and ratio changes; it
/// delays the stream by half its filter (under a millisecond).
///
/// Owns one `SpeexResamplerState`, freed once in `deinit`. Not `Sendable`: one stream's adapter
/// owns it.
public final class DriftResampler {
    /// speexdsp's quality 3, its VoIP default: flat through the voice band, a few percent of a
    /// core per hundred streams.
    public static let quality: Int32 = 3
    /// The ratio is (2¹⁶ + steps) / 2¹⁶: a step is 15 ppm. speexdsp 1.2.1 reads out of bounds
    /// when a stream's ratio keeps changing over a denominator of 10⁵ or more (reproduced with
    /// AddressSanitizer); 2¹⁶ ran two million changing blocks clean.
    private static let denominator: UInt32 = 65_536
    /// ±2 % at most: far beyond any clock, well inside what the resampler handles.
    private static let maximumSteps = 1_310

    private let handle: OpaquePointer?
    private let sampleRate: UInt32
    private var steps = 0

    public init(sampleRate: Int = Opus.sampleRate) {
        self.sampleRate = UInt32(sampleRate)
        var error: Int32 = 0
        handle = speex_resampler_init_frac(1, Self.denominator, Self.denominator, self.sampleRate, self.sampleRate, Self.quality, &error)
        // Without a state (out of memory) samples pass through unchanged: drift is then only
        // corrected in whole frames, as before this existed.
        if let handle { _ = speex_resampler_skip_zeros(handle) }
    }

    deinit { if let handle { speex_resampler_destroy(handle) } }

    /// The correction in force, ppm (a whole number of 15 ppm steps).
    public var ppm: Double { Double(steps) * 1_000_000 / Double(Self.denominator) }

    /// Sets the correction, ppm (to the nearest 15 ppm step, within ±2 %).
    public func setDrift(ppm requested: Double) {
        guard requested.isFinite, let handle else { return }
        let wanted = min(Self.maximumSteps, max(-Self.maximumSteps, Int((requested * Double(Self.denominator) / 1_000_000).rounded())))
        guard wanted != steps else { return }
        steps = wanted
        _ = speex_resampler_set_rate_frac(handle, UInt32(Int(Self.denominator) + wanted), Self.denominator, sampleRate, sampleRate)
    }

    /// The resampled block: about `input.count / (1 + ppm/10⁶)` samples.
    public func process(_ input: [Int16]) -> [Int16] {
        guard let handle, !input.isEmpty else { return input }
        var output = [Int16](repeating: 0, count: input.count + input.count / 64 + 64)
        var consumed = 0
        var produced = 0
        // speexdsp consumes as much input as the output room allows; the room above is enough
        // for any ratio setDrift accepts, but loop rather than drop if it ever is not.
        while consumed < input.count {
            var inputLength = UInt32(input.count - consumed)
            if output.count - produced < 64 { output.append(contentsOf: repeatElement(0, count: input.count)) }
            var outputLength = UInt32(output.count - produced)
            input.withUnsafeBufferPointer { source in
                output.withUnsafeMutableBufferPointer { target in
                    _ = speex_resampler_process_int(handle, 0, source.baseAddress! + consumed, &inputLength, target.baseAddress! + produced, &outputLength)
                }
            }
            consumed += Int(inputLength)
            produced += Int(outputLength)
            if inputLength == 0 && outputLength == 0 { break }
        }
        output.removeSubrange(produced...)
        return output
    }
}
