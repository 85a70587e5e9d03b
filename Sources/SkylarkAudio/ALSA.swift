import CALSA
import Foundation

/// Plain ALSA, for machines without a sound server: PCMs by name, as `aplay -L` lists them.
public enum ALSA {
    /// An ALSA PCM as `skylark audio devices` shows it.
    public struct PCM: Codable, Sendable, Equatable {
        public var name: String
        public var description: String
        /// Whether it captures (a microphone) and plays (a speaker).
        public var input: Bool
        public var output: Bool
    }

    /// The PCMs ALSA's configuration names (cards, plugins such as `pulse` and `default`).
    public static func pcms() -> [PCM] {
        _ = quiet
        var hints: UnsafeMutablePointer<UnsafeMutableRawPointer?>?
        guard snd_device_name_hint(-1, "pcm", &hints) >= 0, let hints else { return [] }
        defer { snd_device_name_free_hint(hints) }
        func hint(_ entry: UnsafeMutableRawPointer, _ id: String) -> String? {
            guard let value = snd_device_name_get_hint(entry, id) else { return nil }
            defer { free(value) }
            return String(cString: value)
        }
        var found: [PCM] = []
        var index = 0
        while let entry = hints[index] {
            index += 1
            guard let name = hint(entry, "NAME") else { continue }
            // No IOID: both directions.
            let direction = hint(entry, "IOID")
            let description = (hint(entry, "DESC") ?? "").split(separator: "\n").joined(separator: " — ")
            found.append(PCM(name: name, description: description, input: direction != "Output", output: direction != "Input"))
        }
        return found
    }

    /// Opens and closes `device` (without waiting for a busy one), so a wrong name is an error
    /// when the node starts rather than silence in the first call.
    public static func check(device: String, capture: Bool) throws(AudioDeviceError) {
        _ = quiet
        var pcm: OpaquePointer?
        let status = snd_pcm_open(&pcm, device, capture ? SND_PCM_STREAM_CAPTURE : SND_PCM_STREAM_PLAYBACK, SND_PCM_NONBLOCK)
        guard status >= 0, let pcm else { throw .alsaUnavailable(name: device, reason: Self.error(status)) }
        snd_pcm_close(pcm)
    }

    static func error(_ status: Int32) -> String { String(cString: snd_strerror(status)) }

    /// Once per process, before the first ALSA call: libasound's own stderr lines off.
    static let quiet: Void = skylark_alsa_quiet_errors()
}

/// One ALSA PCM stream, blocking, 48 kHz mono 16-bit (ALSA's plug layer converts for the card
/// when the name goes through it, as "default" and "plughw:" do): one `snd_pcm_t`, closed once.
final class ALSAConnection: DeviceConnection {
    private let pcm: OpaquePointer

    init(device: String, direction: DeviceDirection) throws(DeviceFailure) {
        _ = ALSA.quiet
        var opened: OpaquePointer?
        var status = snd_pcm_open(&opened, device, direction == .record ? SND_PCM_STREAM_CAPTURE : SND_PCM_STREAM_PLAYBACK, 0)
        guard status >= 0, let opened else { throw DeviceFailure(reason: ALSA.error(status)) }
        // 60 ms of device buffer: three blocks, as the PulseAudio playback target.
        status = snd_pcm_set_params(opened, SND_PCM_FORMAT_S16_LE, SND_PCM_ACCESS_RW_INTERLEAVED, 1, UInt32(DeviceStream.sampleRate), 1, 60_000)
        guard status >= 0 else {
            snd_pcm_close(opened)
            throw DeviceFailure(reason: "48 kHz mono 16-bit: \(ALSA.error(status))")
        }
        pcm = opened
    }

    deinit { snd_pcm_close(pcm) }

    func read(_ block: inout [Int16]) -> String? {
        transfer(block.count) { offset, count in
            block.withUnsafeMutableBufferPointer { snd_pcm_readi(pcm, $0.baseAddress! + offset, snd_pcm_uframes_t(count)) }
        }
    }

    func write(_ block: [Int16]) -> String? {
        transfer(block.count) { offset, count in
            block.withUnsafeBufferPointer { snd_pcm_writei(pcm, $0.baseAddress! + offset, snd_pcm_uframes_t(count)) }
        }
    }

    /// Moves `frames` in as many calls as ALSA needs; an overrun, underrun or suspend is
    /// recovered from (a glitch, not a failure), anything else ends the stream.
    private func transfer(_ frames: Int, _ move: (Int, Int) -> snd_pcm_sframes_t) -> String? {
        var done = 0
        while done < frames {
            let moved = move(done, frames - done)
            if moved >= 0 {
                done += Int(moved)
                continue
            }
            let recovered = snd_pcm_recover(pcm, Int32(moved), 1)
            if recovered < 0 { return ALSA.error(recovered) }
        }
        return nil
    }
}
