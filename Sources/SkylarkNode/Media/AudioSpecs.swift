import Logging
import SkylarkAudio
import SkylarkMedia

/// `--mic`: what a node's microphone plays in calls.
public enum AudioSourceSpec {
    /// "silence", "tone:HZ", the path of a 48 kHz WAV file (played in a loop), "pulse" (the sound
    /// server's default source) or "pulse:SOURCE". A device must exist when the node starts; one
    /// that goes away later only makes the call silent until it is back.
    public static func check(_ spec: String) throws {
        if let device = PulseSpec(spec) {
            try device.check(kind: "source", in: { $0.sources })
            return
        }
        _ = try make(spec)
    }

    /// The source `spec` names, muted through `controls`.
    static func make(_ spec: String, logger: Logger? = nil, controls: AudioControls) throws -> any AudioSource {
        ControlledSource(try make(spec, logger: logger), controls: controls)
    }

    static func make(_ spec: String, logger: Logger? = nil) throws -> any AudioSource {
        if let device = PulseSpec(spec) {
            return PulseCapture(device: device.name, changes: device.reporter("microphone", logger))
        }
        if spec == "silence" { return SilenceSource() }
        if spec.hasPrefix("tone:") {
            guard let hz = Double(spec.dropFirst(5)), (20...20_000).contains(hz) else {
                throw MediaError.invalidParameter(name: "tone", value: String(spec.dropFirst(5)))
            }
            return ToneSource(hz: hz, amplitude: 0.3)
        }
        return try WAVFileSource(path: spec, loops: true)
    }
}

/// `--speaker`: where a call's audio goes (a WAV file per call, a PulseAudio sink, or nowhere).
public enum AudioSinkSpec {
    /// "pulse" or "pulse:SINK" must name a sink of a sound server that answers.
    public static func check(_ spec: String) throws {
        if let device = PulseSpec(spec) { try device.check(kind: "sink", in: { $0.sinks }) }
    }

    /// The sink `spec` names (nil: none), at the volume `controls` says.
    static func make(_ spec: String?, logger: Logger? = nil, controls: AudioControls) throws -> (any AudioSink)? {
        guard let spec else { return nil }
        let sink: any AudioSink
        if let device = PulseSpec(spec) {
            sink = PulsePlayback(device: device.name, changes: device.reporter("speaker", logger))
        } else {
            sink = try WAVFileSink(path: spec)
        }
        return ControlledSink(sink, controls: controls)
    }
}

/// "pulse" or "pulse:NAME".
public struct PulseSpec: Sendable {
    /// nil: the server's default.
    public var name: String?

    public init?(_ spec: String) {
        if spec == "pulse" {
            name = nil
        } else if spec.hasPrefix("pulse:"), spec.count > 6 {
            name = String(spec.dropFirst(6))
        } else {
            return nil
        }
    }

    func check(kind: String, in list: (AudioDevices) -> [AudioDevices.Device]) throws {
        let devices = try PulseServer().devices()
        guard let name else { return }
        let known = list(devices).map(\.name)
        guard known.contains(name) else { throw AudioDeviceError.noSuchDevice(kind: kind, name: name, known: known) }
    }

    /// Logs a device going away and coming back, once each.
    func reporter(_ role: String, _ logger: Logger?) -> @Sendable (DeviceCondition) -> Void {
        let device = name ?? "default"
        return { condition in
            switch condition {
            case .running: logger?.notice("\(role) device is playing", metadata: ["audio.device": "\(device)"])
            case let .waiting(reason):
                logger?.warning(
                    "\(role) device is gone; the call goes on in silence until it is back",
                    metadata: ["audio.device": "\(device)", "audio.reason": "\(reason)"])
            case .connecting, .closed: break
            }
        }
    }
}

/// A call's (or conference leg's) microphone and speaker together: when both are devices they
/// share one voice processor, so the echo canceller hears what the speaker plays.
enum CallAudio {
    static func make(
        microphone: String, speaker: String?, processing: VoiceProcessing, logger: Logger?, controls: AudioControls
    ) throws -> (source: any AudioSource, sink: (any AudioSink)?) {
        switch (PulseSpec(microphone), speaker.flatMap(PulseSpec.init)) {
        case let (mic?, speakerDevice?):
            let (capture, playback) = DeviceAudio.pair(
                microphone: mic.name, speaker: speakerDevice.name, processing: processing,
                microphoneChanges: mic.reporter("microphone", logger), speakerChanges: speakerDevice.reporter("speaker", logger))
            return (ControlledSource(capture, controls: controls), ControlledSink(playback, controls: controls))
        case let (mic?, nil):
            let capture = DeviceAudio.microphone(device: mic.name, processing: processing, changes: mic.reporter("microphone", logger))
            return (ControlledSource(capture, controls: controls), try AudioSinkSpec.make(speaker, logger: logger, controls: controls))
        case (nil, _):
            return (
                try AudioSourceSpec.make(microphone, logger: logger, controls: controls),
                try AudioSinkSpec.make(speaker, logger: logger, controls: controls)
            )
        }
    }
}
