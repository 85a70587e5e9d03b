import Foundation
import Synchronization

/// What the user sets for a node's audio while it runs — microphone muted, speaker volume — and
/// the levels the console shows. One per node, shared by every call's source and sink.
public final class AudioControls: Sendable {
    private struct State {
        var muted = false
        var volume = 1.0
        var microphoneRMS = 0.0
        var speakerRMS = 0.0
    }

    /// Loudest volume: 200 % (twice the decoded level, clipped).
    public static let maximumVolume = 2.0

    private let state = Mutex(State())

    public init() {}

    public var muted: Bool {
        get { state.withLock { $0.muted } }
        set { state.withLock { $0.muted = newValue } }
    }

    /// Speaker gain, 0…`maximumVolume` (values outside are clamped).
    public var volume: Double {
        get { state.withLock { $0.volume } }
        set { state.withLock { $0.volume = newValue.isFinite ? min(max(newValue, 0), Self.maximumVolume) : 1 } }
    }

    /// The last frame's level at the microphone (before muting) and at the speaker (after the
    /// volume), as dBFS; -96 for silence.
    public var levels: (microphone: Double, speaker: Double) {
        state.withLock { (Self.dbfs($0.microphoneRMS), Self.dbfs($0.speakerRMS)) }
    }

    func heardAtMicrophone(_ rms: Double) { state.withLock { $0.microphoneRMS = rms } }
    func playedAtSpeaker(_ rms: Double) { state.withLock { $0.speakerRMS = rms } }

    static func dbfs(_ rms: Double) -> Double { rms > 0 ? max(-96, 20 * log10(rms / Double(Int16.max))) : -96 }
}

/// A source the user can mute: silence goes out while muted (the call and its timing go on).
public struct ControlledSource: AudioSource {
    public var source: any AudioSource
    public let controls: AudioControls

    public init(_ source: any AudioSource, controls: AudioControls) {
        self.source = source
        self.controls = controls
    }

    public mutating func read(count: Int) -> [Int16]? {
        guard let samples = source.read(count: count) else { return nil }
        controls.heardAtMicrophone(AudioAnalysis.rms(samples))
        return controls.muted ? [Int16](repeating: 0, count: samples.count) : samples
    }
}

/// A sink at the user's volume.
public struct ControlledSink: AudioSink {
    public var sink: any AudioSink
    public let controls: AudioControls

    public init(_ sink: any AudioSink, controls: AudioControls) {
        self.sink = sink
        self.controls = controls
    }

    public mutating func write(_ samples: [Int16]) throws(MediaError) {
        let volume = controls.volume
        let scaled =
            volume == 1
            ? samples : samples.map { Int16(clamping: Int((Double($0) * volume).rounded())) }
        controls.playedAtSpeaker(AudioAnalysis.rms(scaled))
        try sink.write(scaled)
    }

    public mutating func close() throws(MediaError) { try sink.close() }
}
