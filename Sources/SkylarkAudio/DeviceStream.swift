import Foundation
import Synchronization

/// Where a microphone or speaker stream opens.
public enum AudioEndpoint: Sendable, Equatable, CustomStringConvertible {
    /// A source or sink of a PulseAudio server (PipeWire answers the same protocol); nil: the
    /// server's default.
    case pulse(server: PulseServer = PulseServer(), device: String?)
    /// An ALSA PCM by name: "default", "plughw:CARD=USB,DEV=0", "pulse", ...
    case alsa(device: String)

    public var description: String {
        switch self {
        case let .pulse(_, device): return "pulse:\(device ?? "default")"
        case let .alsa(device): return "alsa:\(device)"
        }
    }

    func connect(_ direction: DeviceDirection, name: String) throws(DeviceFailure) -> any DeviceConnection {
        switch self {
        case let .pulse(server, device): return try PulseConnection(server: server, device: device, direction: direction, name: name)
        case let .alsa(device): return try ALSAConnection(device: device, direction: direction)
        }
    }
}

enum DeviceDirection: Sendable { case record, playback }

/// Why a device could not be opened or stopped working, in the sound system's own words.
struct DeviceFailure: Error { var reason: String }

/// One open device stream moving 20 ms blocks, blocking on the device's clock. Each call returns
/// nil, or why the device failed (the stream then closes it and opens it again later).
protocol DeviceConnection: AnyObject {
    func read(_ block: inout [Int16]) -> String?
    func write(_ block: [Int16]) -> String?
}

/// One device stream on a thread of its own, on the device's clock: connects, moves 20 ms
/// blocks until the device fails, then tries again every second until it is back or closed.
/// What it moves goes through a `SampleRing`, so the media tick never waits for the device.
final class DeviceStream: Sendable {
    static let sampleRate = 48_000
    static let blockSamples = 960

    let ring: SampleRing
    private let condition = Mutex(DeviceCondition.connecting)
    private let stopping = Atomic<Bool>(false)
    private let changes: @Sendable (DeviceCondition) -> Void

    private let processor: VoiceProcessor?

    init(
        endpoint: AudioEndpoint, direction: DeviceDirection, name: String, bufferMilliseconds: Int, processor: VoiceProcessor? = nil,
        changes: @escaping @Sendable (DeviceCondition) -> Void
    ) {
        ring = SampleRing(capacity: Self.sampleRate * bufferMilliseconds / 1000)
        self.processor = processor
        self.changes = changes
        let thread = Thread { [self] in run(endpoint: endpoint, direction: direction, name: name) }
        thread.name = "skylark-audio-\(direction == .record ? "capture" : "playback")"
        thread.start()
    }

    var current: DeviceCondition { condition.withLock { $0 } }

    func stop() { stopping.store(true, ordering: .relaxed) }

    private func set(_ new: DeviceCondition) {
        let changed = condition.withLock { state -> Bool in
            guard state != new else { return false }
            state = new
            return true
        }
        if changed { changes(new) }
    }

    private func run(endpoint: AudioEndpoint, direction: DeviceDirection, name: String) {
        while !stopping.load(ordering: .relaxed) {
            let connection: any DeviceConnection
            do {
                connection = try endpoint.connect(direction, name: name)
            } catch {
                set(.waiting(error.reason))
                pause(seconds: 1)
                continue
            }
            set(.running)
            var block = [Int16](repeating: 0, count: Self.blockSamples)
            while !stopping.load(ordering: .relaxed) {
                let failure: String?
                switch direction {
                case .record:
                    failure = connection.read(&block)
                    if failure == nil { ring.push(processor?.captured(block) ?? block) }
                case .playback:
                    // Silence when nothing waits keeps the device's clock running and the latency fixed.
                    var samples = ring.take(upTo: Self.blockSamples) ?? []
                    if samples.count < Self.blockSamples { samples += repeatElement(0, count: Self.blockSamples - samples.count) }
                    processor?.played(samples)
                    failure = connection.write(samples)
                }
                if let failure {
                    set(.waiting(failure))
                    break
                }
            }
            // The connection is released here (closing the device) before the pause.
            if !stopping.load(ordering: .relaxed) { pause(seconds: 1) }
        }
        set(.closed)
    }

    private func pause(seconds: Double) {
        for _ in 0..<Int(seconds * 20) where !stopping.load(ordering: .relaxed) { usleep(50_000) }
    }
}
