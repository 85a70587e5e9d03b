import ArgumentParser
import Foundation
import SkylarkAudio
import SkylarkMedia
import SkylarkNode

/// `skylark audio`: the sound devices, without a running node.
struct AudioCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audio", abstract: "Sound devices: list them, or check a microphone and speaker before a call.",
        subcommands: [AudioDevicesCommand.self, AudioTestCommand.self])
}

struct AudioDevicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract:
            "The sound server's sources (microphones) and sinks (speakers), defaults marked '*', and the ALSA PCMs. The server is found as libpulse finds it (PULSE_SERVER, XDG_RUNTIME_DIR)."
    )

    @Flag(help: "JSON instead of text.") var json = false

    /// What `--json` prints: the sound server's devices (nil and `serverError` when none
    /// answers) and ALSA's PCMs.
    struct Listing: Encodable {
        var server: String?
        var sources: [AudioDevices.Device]
        var sinks: [AudioDevices.Device]
        var defaultSource: String?
        var defaultSink: String?
        var serverError: String?
        var alsa: [ALSA.PCM]
    }

    func run() throws {
        let pulse = Result { () throws(AudioDeviceError) in try PulseServer().devices() }
        let alsa = ALSA.pcms()
        if json {
            var listing = Listing(sources: [], sinks: [], alsa: alsa)
            switch pulse {
            case let .success(devices):
                listing.server = devices.server
                listing.sources = devices.sources
                listing.sinks = devices.sinks
                listing.defaultSource = devices.defaultSource
                listing.defaultSink = devices.defaultSink
            case let .failure(error):
                listing.serverError = "\(error)"
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(listing), as: UTF8.self))
        } else {
            switch pulse {
            case let .success(devices):
                print("sound server: \(devices.server)")
                print("microphones (--mic pulse:NAME):")
                for source in devices.sources {
                    print(
                        "  \(source.name == devices.defaultSource ? "*" : " ") \(source.name)  \(source.description)\(source.isMonitor ? "  (what a sink plays)" : "")"
                    )
                }
                print("speakers (--speaker pulse:NAME):")
                for sink in devices.sinks { print("  \(sink.name == devices.defaultSink ? "*" : " ") \(sink.name)  \(sink.description)") }
            case let .failure(error):
                FileHandle.standardError.write(Data("\(error)\n".utf8))
            }
            print("ALSA PCMs (--mic alsa:NAME, --speaker alsa:NAME):")
            if alsa.isEmpty { print("  none") }
            for pcm in alsa {
                let direction = pcm.input && pcm.output ? "" : pcm.input ? "  (capture only)" : "  (playback only)"
                print("    \(pcm.name)  \(pcm.description)\(direction)")
            }
        }
        // Without a sound server or an ALSA device there is nothing to call with.
        if case .failure = pulse, alsa.isEmpty { throw ExitCode(13) }
    }
}

/// Plays the microphone back to the speaker with a level meter: a sound check before a call.
struct AudioTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test", abstract: "Play the microphone back to the speaker for a while, with a live level meter.")

    @Option(help: "Microphone: pulse, pulse:SOURCE, alsa or alsa:PCM (as for 'skylark run').") var mic = "pulse"
    @Option(help: "Speaker: pulse, pulse:SINK, alsa or alsa:PCM.") var speaker = "pulse"
    @Option(help: "How long, in seconds.") var seconds: Double = 10

    func run() throws {
        guard seconds > 0, seconds <= 3_600 else { tool.fail("--seconds must be between 0 and 3600", code: 1) }
        do {
            try AudioSourceSpec.check(mic)
            try AudioSinkSpec.check(speaker)
        } catch { tool.fail("\(error)", code: 13) }
        guard let source = DeviceSpec(mic), let sink = DeviceSpec(speaker) else {
            tool.fail("--mic and --speaker must be sound devices (pulse, pulse:NAME, alsa or alsa:PCM)", code: 1)
        }
        let capture = DeviceCapture(source.endpoint)
        let playback = DevicePlayback(sink.endpoint)
        let interactive = isatty(STDOUT_FILENO) == 1
        let start = Date()
        var frame = 0
        var peak = 0.0
        while Date().timeIntervalSince(start) < seconds {
            let samples = capture.read(count: Opus.frameSampleCount) ?? []
            try? playback.write(samples)
            peak = max(peak, AudioAnalysis.rms(samples))
            frame += 1
            if frame % 5 == 0 {
                let line = LevelMeter.line(rms: peak, condition: "\(capture.condition)")
                FileHandle.standardOutput.write(Data((interactive ? "\r\(line)" : "\(line)\n").utf8))
                peak = 0
            }
            let due = start.addingTimeInterval(Double(frame) * 0.02).timeIntervalSinceNow
            if due > 0 { usleep(UInt32(due * 1_000_000)) }
        }
        if interactive { print("") }
        try? playback.close()
    }
}

/// A level as dBFS and a bar, for the sound check and the console.
enum LevelMeter {
    static func line(rms: Double, condition: String) -> String {
        let dbfs = rms > 0 ? 20 * log10(rms / Double(Int16.max)) : -96
        let filled = max(0, min(40, Int((dbfs + 60) / 60 * 40)))
        return "mic \(String(repeating: "#", count: filled))\(String(repeating: ".", count: 40 - filled)) \(String(format: "%4.0f", dbfs)) dBFS  (\(condition))"
    }
}
