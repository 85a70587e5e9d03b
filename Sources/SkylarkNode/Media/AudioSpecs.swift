import Logging
import SkylarkAudio
import SkylarkMedia

/// `--mic`: what a node's microphone plays in calls.
public enum AudioSourceSpec {
    /// "silence", "tone:HZ", the path of a 48 kHz WAV file (played in a loop), "pulse" (the sound
    /// server's default source), "pulse:SOURCE", "alsa" (ALSA's default PCM) or "alsa:PCM". A
    /// device must exist when the node starts; one that goes away later only makes the call
    /// silent until it is back.
    public static func check(_ spec: String) throws {
        if let device = DeviceSpec(spec) {
            try device.check(capture: true)
            return
        }
        _ = try make(spec)
    }

    /// The source `spec` names, muted through `controls`.
    static func make(_ spec: String, logger: Logger? = nil, controls: AudioControls) throws -> any AudioSource {
        ControlledSource(try make(spec, logger: logger), controls: controls)
    }

    static func make(_ spec: String, logger: Logger? = nil) throws -> any AudioSource {
        if let device = DeviceSpec(spec) {
            return DeviceCapture(device.endpoint, changes: device.reporter("microphone", logger))
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

/// `--speaker`: where a call's audio goes (a WAV file per call, a PulseAudio sink, an ALSA PCM,
/// or nowhere).
public enum AudioSinkSpec {
    /// "pulse" or "pulse:SINK" must name a sink of a sound server that answers; "alsa[:PCM]" a
    /// PCM ALSA can open for playback.
    public static func check(_ spec: String) throws {
        if let device = DeviceSpec(spec) { try device.check(capture: false) }
    }

    /// The sink `spec` names (nil: none), at the volume `controls` says.
    static func make(_ spec: String?, logger: Logger? = nil, controls: AudioControls) throws -> (any AudioSink)? {
        guard let spec else { return nil }
        let sink: any AudioSink
        if let device = DeviceSpec(spec) {
            sink = DevicePlayback(device.endpoint, changes: device.reporter("speaker", logger))
        } else {
            sink = try WAVFileSink(path: spec)
        }
        return ControlledSink(sink, controls: controls)
    }
}

/// A sound device named on the command line: "pulse", "pulse:NAME", "alsa" or "alsa:PCM".
public struct DeviceSpec: Sendable {
    public var endpoint: AudioEndpoint

    public init?(_ spec: String) {
        if spec == "pulse" {
            endpoint = .pulse(device: nil)
        } else if spec.hasPrefix("pulse:"), spec.count > 6 {
            endpoint = .pulse(device: String(spec.dropFirst(6)))
        } else if spec == "alsa" {
            endpoint = .alsa(device: "default")
        } else if spec.hasPrefix("alsa:"), spec.count > 5 {
            endpoint = .alsa(device: String(spec.dropFirst(5)))
        } else {
            return nil
        }
    }

    /// The device exists now: a PulseAudio source or sink of a server that answers, or an ALSA
    /// PCM that opens in that direction.
    func check(capture: Bool) throws {
        switch endpoint {
        case let .pulse(server, name):
            let devices = try server.devices()
            guard let name else { return }
            let kind = capture ? "source" : "sink"
            let known = (capture ? devices.sources : devices.sinks).map(\.name)
            guard known.contains(name) else { throw AudioDeviceError.noSuchDevice(kind: kind, name: name, known: known) }
        case let .alsa(device):
            try ALSA.check(device: device, capture: capture)
        }
    }

    /// Logs a device going away and coming back, once each.
    func reporter(_ role: String, _ logger: Logger?) -> @Sendable (DeviceCondition) -> Void {
        let device = endpoint.description
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
    /// A live microphone (not a file, tone or silence): its pauses are real, so DTX leaves them
    /// unsent.
    static func isDevice(microphone: String) -> Bool { DeviceSpec(microphone) != nil }

    static func make(
        microphone: String, speaker: String?, processing: VoiceProcessing, logger: Logger?, controls: AudioControls
    ) throws -> (source: any AudioSource, sink: (any AudioSink)?) {
        switch (DeviceSpec(microphone), speaker.flatMap(DeviceSpec.init)) {
        case let (mic?, speakerDevice?):
            let (capture, playback) = DeviceAudio.pair(
                microphone: mic.endpoint, speaker: speakerDevice.endpoint, processing: processing,
                microphoneChanges: mic.reporter("microphone", logger), speakerChanges: speakerDevice.reporter("speaker", logger))
            return (ControlledSource(capture, controls: controls), ControlledSink(playback, controls: controls))
        case let (mic?, nil):
            let capture = DeviceAudio.microphone(mic.endpoint, processing: processing, changes: mic.reporter("microphone", logger))
            return (ControlledSource(capture, controls: controls), try AudioSinkSpec.make(speaker, logger: logger, controls: controls))
        case (nil, _):
            return (
                try AudioSourceSpec.make(microphone, logger: logger, controls: controls),
                try AudioSinkSpec.make(speaker, logger: logger, controls: controls)
            )
        }
    }
}
