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
///
/// **Keeping the reference aligned.** The canceller models the echo as the speaker's signal
/// through a fixed room: it needs, with each microphone block, the speaker's samples at a
/// *constant* offset. speexdsp's own two-thread feed (`speex_echo_playback`/`_capture`) holds
/// two blocks and re-aligns whenever the threads do not strictly alternate — and a sound
/// server's playback writes come in bursts (a 60 ms buffer refills three blocks at once): in the
/// lab it warned "no playback frame available" (that block passed uncancelled) and the
/// alignment moved each time, so the echo removed ranged 12–21 dB run to run. Here every
/// played sample goes into a ring at its sample count, and microphone block n takes the
/// reference from sample n·960 + offset: both devices run on the sound card's clock, so the
/// offset stays put. It is set when the speaker first plays, `referenceSlackBlocks` behind the
/// newest sample so a burst either way stays inside it, and set again only if the speaker stops
/// or drifts a whole slack either way (`realignments`).
public final class VoiceProcessor: @unchecked Sendable {
    public static let tailMilliseconds = 200
    /// How far behind the newest played block the reference is read: the playback thread may be
    /// this many blocks late or early against the capture thread without a realignment.
    static let referenceSlackBlocks = 2

    private let lock = NSLock()
    private let echo: OpaquePointer?
    private let preprocess: OpaquePointer?
    private let frameSamples: Int
    /// The last second played, by absolute sample count (`playedCount` is one past the newest).
    private var reference: [Int16]
    private var playedCount = 0
    private var capturedCount = 0
    /// Reference sample for microphone sample 0 (nil: not aligned yet, or the speaker stopped).
    private var offset: Int?
    private var lastPlayedCount = 0
    private var capturesSincePlayback = 0
    /// Times the reference was aligned (the first time included).
    public var realignments: Int { lock.withLock { realignmentCount } }
    private var realignmentCount = 0

    /// Nil when every part is off (nothing to do).
    public init?(_ settings: VoiceProcessing, frameSamples: Int, sampleRate: Int) {
        guard !settings.isOff else { return nil }
        self.frameSamples = frameSamples
        reference = [Int16](repeating: 0, count: sampleRate)
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
    public func played(_ block: [Int16]) {
        guard echo != nil, block.count == frameSamples else { return }
        lock.withLock {
            // Whole slices, not a loop per sample: this runs on the playback thread every block.
            let start = playedCount % reference.count
            let first = min(block.count, reference.count - start)
            reference.replaceSubrange(start..<start + first, with: block[0..<first])
            if first < block.count { reference.replaceSubrange(0..<block.count - first, with: block[first...]) }
            playedCount += block.count
        }
    }

    /// A block the microphone delivered, with the echo removed, noise suppressed and the level set.
    public func captured(_ block: [Int16]) -> [Int16] {
        guard block.count == frameSamples else { return block }
        var out = block
        lock.withLock {
            if let echo {
                let far = referenceBlock()
                block.withUnsafeBufferPointer { input in
                    far.withUnsafeBufferPointer { play in
                        out.withUnsafeMutableBufferPointer { output in speex_echo_cancellation(echo, input.baseAddress, play.baseAddress, output.baseAddress) }
                    }
                }
            }
            capturedCount += frameSamples
            if let preprocess { _ = out.withUnsafeMutableBufferPointer { speex_preprocess_run(preprocess, $0.baseAddress) } }
        }
        return out
    }

    /// The speaker's samples that go with the microphone block being captured (under the lock):
    /// silence while the speaker plays nothing.
    private func referenceBlock() -> [Int16] {
        let slack = Self.referenceSlackBlocks * frameSamples
        capturesSincePlayback = playedCount == lastPlayedCount ? capturesSincePlayback + 1 : 0
        lastPlayedCount = playedCount
        guard capturesSincePlayback <= Self.referenceSlackBlocks, playedCount >= slack + frameSamples else {
            // The speaker has not started, or stopped (its device went away): it plays nothing,
            // and the alignment is made afresh when it plays again.
            offset = nil
            return [Int16](repeating: 0, count: frameSamples)
        }
        var start = capturedCount + (offset ?? 0)
        if offset == nil || start + frameSamples > playedCount || playedCount - start > 2 * slack + frameSamples {
            // First played blocks, or the speaker fell a whole slack behind or ran as far ahead.
            offset = playedCount - slack - frameSamples - capturedCount
            realignmentCount += 1
            start = capturedCount + offset!
        }
        let from = start % reference.count
        if from + frameSamples <= reference.count { return Array(reference[from..<from + frameSamples]) }
        return Array(reference[from...]) + reference[0..<(from + frameSamples - reference.count)]
    }
}
