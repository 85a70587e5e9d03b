import SkylarkTestSupport
import Testing

@testable import SkylarkMedia

@Suite("Audio sources, sinks and analysis")
struct AudioTests {
    @Test("A tone source produces its frequency and level", arguments: [440.0, 1_000.0, 3_150.5])
    func toneFrequency(hz: Double) throws {
        let samples = tone(hz, amplitude: 0.5, count: 48_000)
        let measured = try #require(AudioAnalysis.dominantFrequency(of: samples))
        #expect(abs(measured - hz) < 0.5, "measured \(measured) Hz")
        let expectedRMS = 0.5 * 32_767 / 2.0.squareRoot()
        #expect(abs(AudioAnalysis.rms(samples) - expectedRMS) / expectedRMS < 0.01)
    }

    @Test("A tone played a few hundred ppm off (drift compensation) still measures whole; a neighbour 110 Hz away does not leak in")
    func tonePowerToleratesDrift() {
        let exact = tone(1_320, amplitude: 0.3, count: 96_000)
        let drifted = tone(1_320 * 1.0004, amplitude: 0.3, count: 96_000)  // 400 ppm: 0.53 Hz
        let neighbour = tone(1_210, amplitude: 0.3, count: 96_000)
        let reference = AudioAnalysis.tonePower(of: exact, at: 1_320)
        #expect(AudioAnalysis.tonePower(of: drifted, at: 1_320) > 0.95 * reference)
        #expect(AudioAnalysis.tonePower(of: neighbour, at: 1_320) < 1e-4 * reference)
        // One Goertzel term over the whole 2 s, as the lab's check was: the drifted tone is in its null.
        #expect(AudioAnalysis.power(of: drifted, at: 1_320) < 0.05 * AudioAnalysis.power(of: exact, at: 1_320))
    }

    @Test("A tone is continuous across frames of any size")
    func toneContinuity() throws {
        var whole = ToneSource(hz: 523.25)
        var pieces = ToneSource(hz: 523.25)
        let expected = try unwrap(whole.read(count: 2_000))
        var got = [Int16]()
        for size in [1, 959, 40, 1_000] { got += try unwrap(pieces.read(count: size)) }
        #expect(got == expected)
        // Out-of-range settings are clamped, not trapped on.
        var silly = ToneSource(hz: -5, amplitude: 7)
        #expect(silly.read(count: 10)?.count == 10)
        #expect(ToneSource(hz: .infinity).hz == 0)
    }

    @Test("Silence is silent, endless or limited; the null sink counts")
    func silenceAndNullSink() throws {
        var endless = SilenceSource()
        #expect(endless.nextFrame() == [Int16](repeating: 0, count: 960))
        var limited = SilenceSource(sampleCount: 1_000)
        #expect(limited.nextFrame()?.count == 960)
        #expect(limited.nextFrame()?.count == 960)
        #expect(limited.nextFrame() == nil)
        #expect(AudioAnalysis.dominantFrequency(of: [Int16](repeating: 0, count: 4_800)) == nil)
        #expect(AudioAnalysis.rms([]) == 0)

        var sink = NullSink()
        try sink.write([1, 2, 3])
        try sink.write([Int16](repeating: 0, count: 960))
        #expect(sink.sampleCount == 963)
    }

    @Test("Cross-correlation finds a known lag, either way, and a weaker match for unrelated audio")
    func knownLag() throws {
        var random = SeededGenerator(seed: 5)
        let reference = (0..<9_600).map { _ in Int16.random(in: -8_000...8_000, using: &random) }
        // The signal is the reference 237 samples late, at a different gain, with a little noise.
        let late = [Int16](repeating: 0, count: 237) + reference.map { Int16(Double($0) * 0.6) + Int16.random(in: -300...300, using: &random) }
        let found = try #require(AudioAnalysis.bestAlignment(of: late, against: reference, lags: -500...500))
        #expect(found.lag == 237)
        #expect(found.correlation > 0.95)

        let early = Array(reference.dropFirst(100))
        let back = try #require(AudioAnalysis.bestAlignment(of: early, against: reference, lags: -500...500))
        #expect(back.lag == -100)
        #expect(back.correlation > 0.999)

        let unrelated = (0..<9_600).map { _ in Int16.random(in: -8_000...8_000, using: &random) }
        let none = try #require(AudioAnalysis.bestAlignment(of: unrelated, against: reference, lags: -50...50))
        #expect(none.correlation < 0.1)

        #expect(abs(AudioAnalysis.correlation(reference, reference) - 1) < 1e-12)
        #expect(abs(AudioAnalysis.correlation(reference, reference.map { -$0 }) + 1) < 1e-12)
        // No lag leaves enough overlap.
        #expect(AudioAnalysis.bestAlignment(of: [1, 2], against: reference, lags: 0...10, minimumOverlap: 100) == nil)
    }
}
