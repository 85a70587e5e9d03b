#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where a call's outgoing audio comes from: 48 kHz mono samples, pulled one frame at a time by
/// the media adapter's 20 ms tick. Headless sources (files, tones, silence) make calls testable
/// and scriptable; live devices can conform later.
public protocol AudioSource {
    /// The next `count` samples, or nil once the source has ended. A source that is running
    /// short returns `count` samples padded with silence, then nil.
    mutating func read(count: Int) -> [Int16]?
}

extension AudioSource {
    /// The next 20 ms frame (`Opus.frameSampleCount` samples).
    public mutating func nextFrame() -> [Int16]? { read(count: Opus.frameSampleCount) }
}

/// Plays a WAV file's samples, once or in a loop.
public struct WAVFileSource: AudioSource, Sendable {
    public let samples: [Int16]
    public let loops: Bool
    private var position = 0

    public init(file: WAVFile, loops: Bool = false) {
        self.samples = file.samples
        self.loops = loops
    }

    public init(path: String, loops: Bool = false) throws(MediaError) {
        self.init(file: try WAVFile(path: path), loops: loops)
    }

    public mutating func read(count: Int) -> [Int16]? {
        guard count > 0 else { return [] }
        // An empty file has nothing to loop: it ends at once instead of spinning.
        guard position < samples.count || (loops && !samples.isEmpty) else { return nil }
        var out = [Int16]()
        out.reserveCapacity(count)
        while out.count < count {
            if position == samples.count {
                guard loops else { break }
                position = 0
            }
            let take = min(count - out.count, samples.count - position)
            out.append(contentsOf: samples[position..<position + take])
            position += take
        }
        if out.count < count { out.append(contentsOf: repeatElement(0, count: count - out.count)) }
        return out
    }
}

/// A sine tone, endless. The call tests send one and look for it at the far end.
public struct ToneSource: AudioSource, Sendable {
    public let hz: Double
    /// Fraction of full scale, 0…1.
    public let amplitude: Double
    public let sampleRate: Int
    /// Position in the cycle, 0 ≤ phase < 1. Kept in cycles (not radians, not a sample count)
    /// so it stays exact over hours and the tone is continuous across frames.
    private var phase = 0.0

    /// `hz` is clamped to 0…Nyquist and `amplitude` to 0…1 (a tone generator has no reason to
    /// fail, and a clipped or aliased tone would only mislead a test).
    public init(hz: Double, amplitude: Double = 0.5, sampleRate: Int = Opus.sampleRate) {
        self.sampleRate = max(sampleRate, 1)
        self.hz = hz.isFinite ? min(max(hz, 0), Double(self.sampleRate) / 2) : 0
        self.amplitude = amplitude.isFinite ? min(max(amplitude, 0), 1) : 0
    }

    public mutating func read(count: Int) -> [Int16]? {
        let step = hz / Double(sampleRate)
        let scale = amplitude * Double(Int16.max)
        var out = [Int16]()
        out.reserveCapacity(max(count, 0))
        for _ in 0..<max(count, 0) {
            out.append(Int16((scale * sin(2 * Double.pi * phase)).rounded()))
            phase += step
            if phase >= 1 { phase -= 1 }
        }
        return out
    }
}

/// Silence, endless or for a number of samples.
public struct SilenceSource: AudioSource, Sendable {
    /// Samples left, nil for endless.
    public private(set) var remaining: Int?

    public init(sampleCount: Int? = nil) { remaining = sampleCount.map { max($0, 0) } }

    public mutating func read(count: Int) -> [Int16]? {
        guard let left = remaining else { return [Int16](repeating: 0, count: max(count, 0)) }
        guard left > 0 else { return nil }
        remaining = max(left - count, 0)
        return [Int16](repeating: 0, count: max(count, 0))
    }
}

/// Where a call's incoming audio goes, one decoded frame at a time.
public protocol AudioSink {
    mutating func write(_ samples: [Int16]) throws(MediaError)
    /// Finishes what was written (a file's last frames); nothing for most sinks.
    mutating func close() throws(MediaError)
}

extension AudioSink {
    public mutating func close() throws(MediaError) {}
}

/// Records to a WAV file that is valid after every frame (see `WAVWriter`).
public final class WAVFileSink: AudioSink {
    public let writer: WAVWriter

    public init(path: String) throws(MediaError) { writer = try WAVWriter(path: path) }

    public func write(_ samples: [Int16]) throws(MediaError) { try writer.append(samples) }

    public func close() throws(MediaError) { try writer.close() }
}

/// Discards audio, counting it (for calls whose audio nobody checks, and for benchmarks).
public struct NullSink: AudioSink, Sendable {
    public private(set) var sampleCount = 0

    public init() {}

    public mutating func write(_ samples: [Int16]) throws(MediaError) { sampleCount += samples.count }
}
