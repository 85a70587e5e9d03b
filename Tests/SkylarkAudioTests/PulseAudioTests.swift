import Foundation
import SkylarkAudio
import SkylarkMedia
import SkylarkTestSupport
import Testing

/// Device audio through a real PulseAudio server (headless, null sinks): what is played into the
/// "mic" sink is what a capture of `mic.monitor` hears, as it would be a microphone's.
@Suite(.serialized) struct PulseAudioTests {
    /// Waits (polling, real time) until `condition` holds or `seconds` pass.
    static func eventually(within seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    /// Plays `hz` into `playback` and captures from `capture`, 20 ms at a time in real time, for
    /// `seconds`; what was captured after the first half second. A null sink that has just got
    /// its first stream renders nothing for about 2 s (measured: 100 of the first 175 frames
    /// silent), so a round trip lasts 4 s; a sound card runs from the start.
    static func roundTrip(_ playback: DevicePlayback, _ capture: DeviceCapture, hz: Double, seconds: Double) throws -> [Int16] {
        var tone = ToneSource(hz: hz, amplitude: 0.3)
        var heard: [Int16] = []
        let frames = Int(seconds * 50)
        let start = Date()
        for frame in 0..<frames {
            try playback.write(tone.nextFrame()!)
            let samples = capture.read(count: Opus.frameSampleCount)!
            if frame >= 25 { heard += samples }
            // Pace by the wall clock of this test, as the node's 20 ms media tick does.
            let due = start.addingTimeInterval(Double(frame + 1) * 0.02)
            let wait = due.timeIntervalSinceNow
            if wait > 0 { usleep(UInt32(wait * 1_000_000)) }
        }
        return heard
    }

    @Test(.timeLimit(.minutes(1)))
    func devicesAreListedWithTheirDefaultsAndMonitors() throws {
        let server = try PulseAudioServer(sinks: ["mic", "spk"])
        defer { server.stop() }
        let devices = try PulseServer(address: server.address).devices()
        #expect(devices.sinks.map(\.name).sorted() == ["mic", "spk"])
        #expect(devices.sources.contains { $0.name == "mic.monitor" && $0.isMonitor })
        #expect(devices.sources.contains { $0.name == "spk.monitor" && $0.isMonitor })
        #expect(["mic", "spk"].contains(devices.defaultSink))
        #expect(devices.server.contains("pulseaudio"))
    }

    @Test(.timeLimit(.minutes(1)))
    func noServerIsAClearError() throws {
        let directory = try makeTemporaryDirectory()
        defer { removeDirectory(directory) }
        #expect {
            try PulseServer(address: "unix:\(directory)/nothing-here").devices(timeout: 1)
        } throws: { error in
            guard case let .serverUnavailable(reason)? = error as? AudioDeviceError else { return false }
            return !reason.isEmpty && "\(error)".hasPrefix("no sound server")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aTonePlayedIntoTheMicrophoneSinkIsCapturedFromItsMonitor() throws {
        let server = try PulseAudioServer(sinks: ["mic"])
        defer { server.stop() }
        let pulse = PulseServer(address: server.address)
        let capture = DeviceCapture(.pulse(server: pulse, device: "mic.monitor"))
        let playback = DevicePlayback(.pulse(server: pulse, device: "mic"))
        #expect(Self.eventually(within: 5) { playback.condition == .running && capture.condition == .running })
        let heard = try Self.roundTrip(playback, capture, hz: 440, seconds: 4)
        let dominant = try #require(AudioAnalysis.dominantFrequency(of: heard))
        #expect(abs(dominant - 440) < 10, "dominant \(dominant) Hz")
        #expect(AudioAnalysis.rms(heard) > 1_000, "rms \(AudioAnalysis.rms(heard))")
        try playback.close()
    }

    @Test(.timeLimit(.minutes(1)))
    func aSoundServerRestartedMidCallIsWaitedForInSilenceAndPickedUpAgain() throws {
        let server = try PulseAudioServer(sinks: ["mic"])
        defer { server.stop() }
        let pulse = PulseServer(address: server.address)
        let changes = ChangeLog()
        let playback = DevicePlayback(.pulse(server: pulse, device: "mic"))
        let capture = DeviceCapture(.pulse(server: pulse, device: "mic.monitor")) { changes.add($0) }
        #expect(Self.eventually(within: 5) { capture.condition == .running && playback.condition == .running })

        server.stop()
        #expect(Self.eventually(within: 5) { if case .waiting = capture.condition { return true } else { return false } })
        // While the device is gone the call reads silence, never an end.
        let gone = (0..<10).flatMap { _ in capture.read(count: Opus.frameSampleCount)! }
        #expect(gone.count == 10 * Opus.frameSampleCount)

        try server.start()
        #expect(Self.eventually(within: 10) { capture.condition == .running && playback.condition == .running })
        let heard = try Self.roundTrip(playback, capture, hz: 660, seconds: 4)
        let dominant = try #require(AudioAnalysis.dominantFrequency(of: heard))
        #expect(abs(dominant - 660) < 10, "dominant \(dominant) Hz after the restart")
        // Told once each way: running, waiting, running.
        let seen = changes.all.map { if case .waiting = $0 { return "waiting" } else { return "\($0)" } }
        #expect(seen == ["running", "waiting", "running"], "\(seen)")
    }

    @Test(.timeLimit(.minutes(1)))
    func anALSADeviceThatCannotBeOpenedIsAClearErrorAndALSAsOwnPCMsAreListed() throws {
        #expect {
            try ALSA.check(device: "no-such-pcm", capture: true)
        } throws: { error in
            "\(error)".hasPrefix("ALSA device 'no-such-pcm' cannot be opened: ")
        }
        // ALSA's configuration always defines "null" (and "default").
        let names = ALSA.pcms().map(\.name)
        #expect(names.contains("null"), "\(names)")
        // A stream on a PCM that cannot be opened waits for it, in words, instead of failing the call.
        let capture = DeviceCapture(.alsa(device: "no-such-pcm"))
        #expect(Self.eventually(within: 5) { if case .waiting = capture.condition { return true } else { return false } })
        #expect(capture.read(count: Opus.frameSampleCount)?.count == Opus.frameSampleCount, "silence meanwhile")
    }

    @Test(.timeLimit(.minutes(1)))
    func alsasNullDevicePlaysOnItsOwnClock() throws {
        let playback = DevicePlayback(.alsa(device: "null"))
        #expect(Self.eventually(within: 5) { playback.condition == .running })
        try playback.close()
    }
}

final class ChangeLog: @unchecked Sendable {
    private let lock = NSLock()
    private var changes: [DeviceCondition] = []
    func add(_ change: DeviceCondition) { lock.withLock { changes.append(change) } }
    var all: [DeviceCondition] { lock.withLock { changes } }
}
