// `skylark audio` as a user runs it: against a real headless PulseAudio server, and with none.

import Foundation
import SkylarkAudio
import SkylarkMedia
import SkylarkTestSupport
import Testing

@Suite("skylark audio: devices and the sound check", .serialized, .timeLimit(.minutes(2)))
struct AudioCommandTests {
    @Test("no sound server: said so, ALSA's PCMs still listed; the sound check on pulse exits 13 'no sound server'")
    func noSoundServer() async throws {
        try await withSandbox { sandbox in
            let nowhere = ["PULSE_SERVER": "unix:\(sandbox.path("no-server-here"))"]
            let devices = try await sandbox.skylark(["audio", "devices"], environment: nowhere)
            expectExit(devices, 0, stderrContains: "no sound server")
            #expect(devices.stdout.contains("ALSA PCMs") && devices.stdout.contains("null"), "\(devices)")
            let json = try await sandbox.skylark(["audio", "devices", "--json"], environment: nowhere)
            let listing = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            #expect((listing?["serverError"] as? String)?.hasPrefix("no sound server") == true, "\(json)")
            #expect((listing?["alsa"] as? [[String: Any]])?.contains { $0["name"] as? String == "null" } == true, "\(json)")
            expectExit(try await sandbox.skylark(["audio", "test", "--seconds", "1"], environment: nowhere), 13, stderrContains: "no sound server")
        }
    }

    @Test("ALSA devices (through ALSA's pulse plugin): the sound check hears the microphone and plays to the speaker; an unknown PCM is a clear error")
    func alsaSoundCheck() async throws {
        let server = try PulseAudioServer(sinks: ["mic", "spk"])
        defer { server.stop() }
        try await withSandbox { sandbox in
            let environment = ["PULSE_SERVER": server.address]
            // 6 s of 440 Hz into the "mic" sink (paplay); what the speaker plays is captured from
            // spk.monitor here, 20 ms at a time, while the sound check runs.
            let tone = sandbox.path("tone.wav")
            var source = ToneSource(hz: 440, amplitude: 0.3)
            let writer = try WAVWriter(path: tone)
            for _ in 0..<300 { try writer.append(source.nextFrame()!) }
            try writer.close()
            let monitor = DeviceCapture(.pulse(server: PulseServer(address: server.address), device: "spk.monitor"))
            let recording = Task {
                var heard: [Int16] = []
                let start = ContinuousClock.now
                while ContinuousClock.now - start < .seconds(6) {
                    heard += monitor.read(count: Opus.frameSampleCount) ?? []
                    try? await Task.sleep(for: .milliseconds(20))
                }
                return heard
            }
            let player = try sandbox.launchProgram("/usr/bin/paplay", ["--device=mic", tone], environment: environment, label: "paplay")
            let check = try await sandbox.skylark(
                ["audio", "test", "--mic", "alsa:pulse:mic.monitor", "--speaker", "alsa:pulse:spk", "--seconds", "5"], environment: environment)
            expectExit(check, 0)
            // ALSA's capture carried the tone: the meter reads it at about −13 dBFS.
            let levels = check.stdout.split(separator: "\n").compactMap { line -> Double? in
                let words = line.split(separator: " ")
                guard line.hasPrefix("mic "), let unit = words.firstIndex(of: "dBFS"), unit > 0 else { return nil }
                return Double(words[unit - 1])
            }
            #expect(levels.contains { $0 > -20 }, "\(check)\npaplay: \(player.stderr)")
            // ALSA's playback reached the speaker: its last 2 s played the tone.
            let heard = await recording.value
            let played = Array(heard.suffix(2 * Opus.sampleRate).prefix(Opus.sampleRate))
            let dominant = try #require(AudioAnalysis.dominantFrequency(of: played))
            #expect(abs(dominant - 440) < 10 && AudioAnalysis.rms(played) > 1_000, "\(dominant) Hz, rms \(AudioAnalysis.rms(played))")
            let unknown = try await sandbox.skylark(["audio", "test", "--mic", "alsa:no-such-pcm", "--seconds", "1"], environment: environment)
            expectExit(unknown, 13, stderrContains: "ALSA device 'no-such-pcm' cannot be opened")
            #expect(!unknown.stderr.contains("ALSA lib"), "libasound's own diagnostics stay quiet: \(unknown.stderr)")
        }
    }

    @Test("devices are listed with the defaults marked; a sound check plays the microphone back with a level meter")
    func devicesAndSoundCheck() async throws {
        let server = try PulseAudioServer(sinks: ["mic", "spk"])
        defer { server.stop() }
        try await withSandbox { sandbox in
            let environment = ["PULSE_SERVER": server.address]
            let json = try await sandbox.skylark(["audio", "devices", "--json"], environment: environment)
            expectExit(json, 0)
            let devices = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            let sinks = (devices?["sinks"] as? [[String: Any]])?.compactMap { $0["name"] as? String }.sorted()
            #expect(sinks == ["mic", "spk"], "\(json)")
            let text = try await sandbox.skylark(["audio", "devices"], environment: environment)
            expectExit(text, 0)
            let defaultSink = try #require(devices?["defaultSink"] as? String)
            #expect(text.stdout.contains("* \(defaultSink)"), "\(text)")
            #expect(text.stdout.contains("mic.monitor") && text.stdout.contains("(what a sink plays)"))

            let check = try await sandbox.skylark(
                ["audio", "test", "--mic", "pulse:mic.monitor", "--speaker", "pulse:spk", "--seconds", "1"], environment: environment)
            expectExit(check, 0)
            let meter = check.stdout.split(separator: "\n").filter { $0.hasPrefix("mic ") && $0.contains("dBFS") }
            #expect(meter.count >= 5, "\(check)")

            let unknown = try await sandbox.skylark(["audio", "test", "--mic", "pulse:no-such-mic", "--seconds", "1"], environment: environment)
            expectExit(unknown, 13, stderrContains: "no PulseAudio source 'no-such-mic' (sources: ")
        }
    }

    @Test("skylark run on a terminal without --mic/--speaker: no sound server is said aloud, one that answers is used quietly")
    func runOnATerminalLooksForTheSoundServer() async throws {
        let server = try PulseAudioServer(sinks: ["spk"])
        defer { server.stop() }
        try await withSandbox { sandbox in
            let nowhere = "unix:\(sandbox.path("no-server-here"))"
            let run = ["run", "alice", "--network", sandbox.path("missing.json"), "--state", sandbox.path("alice")]
            // util-linux's script gives the node a terminal of its own (bsdutils is Essential).
            func onATerminal(pulse: String) async throws -> String {
                let command = ([try Executables.path("skylark")] + run).joined(separator: " ")
                let child = try sandbox.launchProgram(
                    "/usr/bin/script", ["-qec", command, "/dev/null"], environment: ["PULSE_SERVER": pulse], label: "script-run")
                _ = try await child.waitForExit(timeout: .seconds(30))
                return child.stdout
            }
            let silent = try await onATerminal(pulse: nowhere)
            #expect(silent.contains("no sound server answered") && silent.contains("pass --mic and --speaker"), "\(silent)")
            #expect(silent.contains("cannot read network profile"), "the run went on to its next step: \(silent)")
            let served = try await onATerminal(pulse: server.address)
            #expect(!served.contains("no sound server") && served.contains("cannot read network profile"), "\(served)")
            // Not on a terminal (a service, a script): nobody to tell, silence as before.
            let piped = try await sandbox.skylark(run, environment: ["PULSE_SERVER": nowhere])
            expectExit(piped, 11, stderrContains: "cannot read network profile")
            #expect(!piped.stderr.contains("no sound server"), "\(piped)")
        }
    }
}
