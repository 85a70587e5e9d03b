import SkylarkMedia

/// A call's microphone from a PulseAudio source, captured on the device's clock. Reads never
/// block and never end: what the device has not delivered (or while it is gone) is silence.
public final class PulseCapture: AudioSource, Sendable {
    private let stream: PulseStream

    /// `device`: a source name (nil: the server's default). `changes` hears when the device goes
    /// and comes back (on the device thread).
    public convenience init(server: PulseServer = PulseServer(), device: String? = nil, changes: @escaping @Sendable (DeviceCondition) -> Void = { _ in }) {
        self.init(server: server, device: device, processor: nil, changes: changes)
    }

    init(server: PulseServer, device: String?, processor: VoiceProcessor?, changes: @escaping @Sendable (DeviceCondition) -> Void) {
        // 200 ms: a tick late by that much loses the oldest audio, not the newest.
        stream = PulseStream(
            server: server, device: device, direction: .record, name: "Skylark microphone", bufferMilliseconds: 200, processor: processor,
            changes: changes)
    }

    deinit { stream.stop() }

    public var condition: DeviceCondition { stream.current }
    public var counters: (overruns: Int, underruns: Int) { stream.ring.counters }

    public func read(count: Int) -> [Int16]? {
        // The device and the media tick run on different clocks: the backlog wanders by a frame or
        // two, and drifts. Past five frames (100 ms) it is cut back to two, so latency stays
        // bounded; a late tick's catch-up reads stay within that and lose nothing.
        if stream.ring.count > count * 5 { _ = stream.ring.take(upTo: stream.ring.count - count * 2) }
        return stream.ring.pop(max(count, 0))
    }
}

/// A call's speaker as a PulseAudio sink, played on the device's clock.
public final class PulsePlayback: AudioSink, Sendable {
    private let stream: PulseStream

    public convenience init(server: PulseServer = PulseServer(), device: String? = nil, changes: @escaping @Sendable (DeviceCondition) -> Void = { _ in }) {
        self.init(server: server, device: device, processor: nil, changes: changes)
    }

    init(server: PulseServer, device: String?, processor: VoiceProcessor?, changes: @escaping @Sendable (DeviceCondition) -> Void) {
        stream = PulseStream(
            server: server, device: device, direction: .playback, name: "Skylark speaker", bufferMilliseconds: 200, processor: processor,
            changes: changes)
    }

    deinit { stream.stop() }

    public var condition: DeviceCondition { stream.current }
    public var counters: (overruns: Int, underruns: Int) { stream.ring.counters }

    public func write(_ samples: [Int16]) throws(MediaError) { stream.ring.push(samples) }

    public func close() throws(MediaError) { stream.stop() }
}

/// A call's microphone and speaker on one sound server, sharing one voice processor: the echo
/// canceller needs what the speaker plays to take it out of what the microphone hears.
public enum DeviceAudio {
    public static func pair(
        server: PulseServer = PulseServer(), microphone: String?, speaker: String?, processing: VoiceProcessing,
        microphoneChanges: @escaping @Sendable (DeviceCondition) -> Void = { _ in },
        speakerChanges: @escaping @Sendable (DeviceCondition) -> Void = { _ in }
    ) -> (PulseCapture, PulsePlayback) {
        let processor = VoiceProcessor(processing, frameSamples: PulseStream.blockSamples, sampleRate: PulseStream.sampleRate)
        return (
            PulseCapture(server: server, device: microphone, processor: processor, changes: microphoneChanges),
            PulsePlayback(server: server, device: speaker, processor: processor, changes: speakerChanges)
        )
    }

    /// A microphone alone (no speaker device to cancel): noise suppression and gain only.
    public static func microphone(
        server: PulseServer = PulseServer(), device: String?, processing: VoiceProcessing,
        changes: @escaping @Sendable (DeviceCondition) -> Void = { _ in }
    ) -> PulseCapture {
        var alone = processing
        alone.echoCancellation = false
        let processor = VoiceProcessor(alone, frameSamples: PulseStream.blockSamples, sampleRate: PulseStream.sampleRate)
        return PulseCapture(server: server, device: device, processor: processor, changes: changes)
    }
}
