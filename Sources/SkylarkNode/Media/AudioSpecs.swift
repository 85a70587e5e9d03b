import SkylarkMedia

/// `--mic`: what a node's microphone plays in calls.
public enum AudioSourceSpec {
    /// "silence", "tone:HZ" or the path of a 48 kHz WAV file (played in a loop).
    public static func check(_ spec: String) throws { _ = try make(spec) }

    static func make(_ spec: String) throws -> any AudioSource {
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

/// `--speaker`: where a call's audio goes (a WAV file per call, or nowhere).
enum AudioSinkSpec {
    static func make(_ path: String?) throws -> (any AudioSink)? {
        try path.map { try WAVFileSink(path: $0) }
    }
}
