// `skylark audio` as a user runs it: against a real headless PulseAudio server, and with none.

import Foundation
import SkylarkTestSupport
import Testing

@Suite("skylark audio: devices and the sound check", .serialized, .timeLimit(.minutes(2)))
struct AudioCommandTests {
    @Test("no sound server: exit 13 'no sound server', for devices and the sound check")
    func noSoundServer() async throws {
        try await withSandbox { sandbox in
            let nowhere = ["PULSE_SERVER": "unix:\(sandbox.path("no-server-here"))"]
            expectExit(try await sandbox.skylark(["audio", "devices"], environment: nowhere), 13, stderrContains: "no sound server")
            expectExit(try await sandbox.skylark(["audio", "test", "--seconds", "1"], environment: nowhere), 13, stderrContains: "no sound server")
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
}
