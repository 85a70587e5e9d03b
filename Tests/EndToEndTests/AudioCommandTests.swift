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
