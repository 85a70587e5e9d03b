import CSpeexDSP
import Foundation

/// Which voice processing a call's device audio gets (`--echo-cancel`, `--noise-suppression`,
/// `--gain-control`); all on by default for device audio. Files and tones never get any.
public struct VoiceProcessing: Sendable, Equatable {
    public var echoCancellation = true
    public var noiseSuppression = true
    public var gainControl = true

    public init(echoCancellation: Bool = true, noiseSuppression: Bool = true, gainControl: Bool = true) {
        self.echoCancellation = echoCancellation
        self.noiseSuppression = noiseSuppression
        self.gainControl = gainControl
    }

    public var isOff: Bool { !echoCancellation && !noiseSuppression && !gainControl }
}

/// One call's voice processing with speexdsp: the echo canceller learns the speaker's signal
/// (`played`, on the playback thread, as each block goes to the device) and removes it from the
/// microphone's (`captured`, on the capture thread); the preprocessor then suppresses noise and
/// residual echo and levels the voice. Owns both speexdsp states and frees them once.
final class VoiceProcessor: @unchecked Sendable {
    static let tailMilliseconds = 200

    private let lock = NSLock()
    private let echo: OpaquePointer?
    private let preprocess: OpaquePointer?
    private let frameSamples: Int

    init?(_ settings: VoiceProcessing, frameSamples: Int, sampleRate: Int) {
        guard !settings.isOff else { return nil }
        self.frameSamples = frameSamples
        var rate = Int32(sampleRate)
        if settings.echoCancellation {
            echo = speex_echo_state_init(Int32(frameSamples), Int32(sampleRate * Self.tailMilliseconds / 1000))
            if let echo { _ = speex_echo_ctl(echo, SPEEX_ECHO_SET_SAMPLING_RATE, &rate) }
        } else {
            echo = nil
        }
        preprocess = speex_preprocess_state_init(Int32(frameSamples), Int32(sampleRate))
        if let preprocess {
            var denoise: Int32 = settings.noiseSuppression ? 1 : 0
            _ = speex_preprocess_ctl(preprocess, SPEEX_PREPROCESS_SET_DENOISE, &denoise)
            var agc: Int32 = settings.gainControl ? 1 : 0
            _ = speex_preprocess_ctl(preprocess, SPEEX_PREPROCESS_SET_AGC, &agc)
            if let echo {
                // Residual echo suppression uses the canceller's estimate.
                _ = speex_preprocess_ctl(preprocess, SPEEX_PREPROCESS_SET_ECHO_STATE, UnsafeMutableRawPointer(echo))
            }
        }
    }

    deinit {
        if let preprocess { speex_preprocess_state_destroy(preprocess) }
        if let echo { speex_echo_state_destroy(echo) }
    }

    /// A block the speaker is about to play (the far end's voice: what may come back).
    func played(_ block: [Int16]) {
        guard let echo, block.count == frameSamples else { return }
        lock.withLock { block.withUnsafeBufferPointer { speex_echo_playback(echo, $0.baseAddress) } }
    }

    /// A block the microphone delivered, with the echo removed, noise suppressed and the level set.
    func captured(_ block: [Int16]) -> [Int16] {
        guard block.count == frameSamples else { return block }
        var out = block
        lock.withLock {
            if let echo {
                block.withUnsafeBufferPointer { input in
                    out.withUnsafeMutableBufferPointer { output in speex_echo_capture(echo, input.baseAddress, output.baseAddress) }
                }
            }
            if let preprocess { _ = out.withUnsafeMutableBufferPointer { speex_preprocess_run(preprocess, $0.baseAddress) } }
        }
        return out
    }
}
