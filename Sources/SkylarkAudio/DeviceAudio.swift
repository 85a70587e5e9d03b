import Foundation
import SkylarkMedia

/// Holds a device ring at its level when the device's clock and the media tick's disagree
/// (they always do, by up to a few hundred ppm): the audio crossing it is resampled by the
/// difference (`DriftCompensator`, `DriftResampler`), so the ring neither drains into silence nor
/// fills until its oldest audio is cut. Used from the media tick only; locked because the class
/// holding it is `Sendable`.
final class RingDrift: @unchecked Sendable {
    private let lock = NSLock()
    private var compensator = DriftCompensator()
    private let resampler = DriftResampler(sampleRate: DeviceStream.sampleRate)
    /// Resampled capture not yet read (under a block).
    private var pending: [Int16] = []
    /// The level aimed at, samples.
    let target: Int

    init(target: Int) { self.target = target }

    var ppm: Double { lock.withLock { compensator.ppm } }

    /// Capture: exactly `count` samples from `ring`, read a little faster or slower than the
    /// device delivers so the ring's level stays at the target.
    func read(_ count: Int, from ring: SampleRing) -> [Int16] {
        lock.withLock {
            // A stall (a late tick, a suspended process) leaves seconds queued: cut back at once
            // rather than drift back over minutes; a cut is heard, but once, not as lag.
            if ring.count > count * 5 {
                _ = ring.take(upTo: ring.count - target)
                compensator.reset()
            }
            while pending.count < count {
                // Nothing there: the device is gone or not started, and the level says nothing
                // about its clock.
                if ring.count == 0 { compensator.reset() }
                let excess = Double(ring.count + pending.count - target) / Double(DeviceStream.sampleRate)
                resampler.setDrift(ppm: compensator.observe(excess: excess))
                pending += resampler.process(ring.pop(count))
            }
            let out = Array(pending.prefix(count))
            pending.removeFirst(count)
            return out
        }
    }

    /// Playback: `samples` into `ring`, written a little shorter or longer than they came so the
    /// ring's level stays at the target.
    func write(_ samples: [Int16], to ring: SampleRing) {
        lock.withLock {
            let excess = Double(ring.count - target) / Double(DeviceStream.sampleRate)
            resampler.setDrift(ppm: compensator.observe(excess: excess))
            ring.push(resampler.process(samples))
        }
    }
}

/// A call's microphone (a PulseAudio source or an ALSA PCM), captured on the device's clock.
/// Reads never block and never end: what the device has not delivered (or while it is gone) is
/// silence.
public final class DeviceCapture: AudioSource, Sendable {
    private let stream: DeviceStream
    /// The device delivers a block every 20 ms and the tick takes one: a block and a half on
    /// average, so a tick a little late or early still finds a whole block.
    private let drift = RingDrift(target: DeviceStream.blockSamples * 3 / 2)

    /// `changes` hears when the device goes and comes back (on the device thread).
    public convenience init(_ endpoint: AudioEndpoint = .pulse(device: nil), changes: @escaping @Sendable (DeviceCondition) -> Void = { _ in }) {
        self.init(endpoint, processor: nil, changes: changes)
    }

    init(_ endpoint: AudioEndpoint, processor: VoiceProcessor?, changes: @escaping @Sendable (DeviceCondition) -> Void) {
        // 200 ms: a tick late by that much loses the oldest audio, not the newest.
        stream = DeviceStream(
            endpoint: endpoint, direction: .record, name: "Skylark microphone", bufferMilliseconds: 200, processor: processor, changes: changes)
    }

    deinit { stream.stop() }

    public var condition: DeviceCondition { stream.current }
    public var counters: (overruns: Int, underruns: Int) { stream.ring.counters }

    /// The drift correction in force between the device's clock and the media tick's, ppm.
    public var driftPPM: Double { drift.ppm }

    public func read(count: Int) -> [Int16]? {
        // A late tick's catch-up reads take what waited; the drift correction keeps the level
        // from creeping between them.
        drift.read(max(count, 0), from: stream.ring)
    }
}

/// A call's speaker (a PulseAudio sink or an ALSA PCM), played on the device's clock.
public final class DevicePlayback: AudioSink, Sendable {
    private let stream: DeviceStream
    /// Measured as each frame arrives, before it is added: the device takes a block when it has
    /// room, so a block waiting keeps it from ever finding the ring empty.
    private let drift = RingDrift(target: DeviceStream.blockSamples)

    public convenience init(_ endpoint: AudioEndpoint = .pulse(device: nil), changes: @escaping @Sendable (DeviceCondition) -> Void = { _ in }) {
        self.init(endpoint, processor: nil, changes: changes)
    }

    init(_ endpoint: AudioEndpoint, processor: VoiceProcessor?, changes: @escaping @Sendable (DeviceCondition) -> Void) {
        stream = DeviceStream(
            endpoint: endpoint, direction: .playback, name: "Skylark speaker", bufferMilliseconds: 200, processor: processor, changes: changes)
    }

    deinit { stream.stop() }

    public var condition: DeviceCondition { stream.current }
    public var counters: (overruns: Int, underruns: Int) { stream.ring.counters }

    /// The drift correction in force between the media tick's clock and the device's, ppm.
    public var driftPPM: Double { drift.ppm }

    public func write(_ samples: [Int16]) throws(MediaError) { drift.write(samples, to: stream.ring) }

    public func close() throws(MediaError) { stream.stop() }
}

/// A call's microphone and speaker, sharing one voice processor: the echo canceller needs what
/// the speaker plays to take it out of what the microphone hears. They may be on different
/// sound systems (an ALSA headset microphone, a PulseAudio speaker).
public enum DeviceAudio {
    public static func pair(
        microphone: AudioEndpoint, speaker: AudioEndpoint, processing: VoiceProcessing,
        microphoneChanges: @escaping @Sendable (DeviceCondition) -> Void = { _ in },
        speakerChanges: @escaping @Sendable (DeviceCondition) -> Void = { _ in }
    ) -> (DeviceCapture, DevicePlayback) {
        let processor = VoiceProcessor(processing, frameSamples: DeviceStream.blockSamples, sampleRate: DeviceStream.sampleRate)
        return (
            DeviceCapture(microphone, processor: processor, changes: microphoneChanges),
            DevicePlayback(speaker, processor: processor, changes: speakerChanges)
        )
    }

    /// A microphone alone (no speaker device to cancel): noise suppression and gain only.
    public static func microphone(
        _ endpoint: AudioEndpoint, processing: VoiceProcessing, changes: @escaping @Sendable (DeviceCondition) -> Void = { _ in }
    ) -> DeviceCapture {
        var alone = processing
        alone.echoCancellation = false
        let processor = VoiceProcessor(alone, frameSamples: DeviceStream.blockSamples, sampleRate: DeviceStream.sampleRate)
        return DeviceCapture(endpoint, processor: processor, changes: changes)
    }
}
