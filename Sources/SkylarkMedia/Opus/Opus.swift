import COpus

/// The one audio format Skylark speaks on the wire: Opus at 48 kHz, mono, 20 ms frames.
///
/// 48 kHz is Opus's native rate (fullband, no resampling inside libopus) and the RTP clock rate
/// RFC 7587 fixes for Opus whatever the audio bandwidth, so RTP timestamps advance by exactly
/// `frameSampleCount` per packet. 20 ms is the usual VoIP compromise between header overhead
/// (50 packets/s) and delay, and the frame size in-band FEC is designed around.
public enum Opus {
    public static let sampleRate = 48_000
    public static let channelCount = 1
    /// 20 ms at 48 kHz.
    public static let frameSampleCount = 960
    public static let frameDuration = 0.020
    /// A packet carries at most 60 ms (three frames): what a narrow path needs to keep the
    /// 40 bytes of IP, UDP and RTP headers per packet from eating the audio.
    public static let maximumFramesPerPacket = 3
    /// The largest packet libopus produces for one frame is 1275 bytes (RFC 6716 §3.4); a
    /// buffer this size can never be too small, so `OPUS_BUFFER_TOO_SMALL` cannot happen.
    static let maxPacketByteCount = 1_500
    /// 120 ms, the longest duration one Opus packet may carry (RFC 6716 §3.2.5): a decode
    /// buffer this size holds any packet a peer can send.
    static let maxPacketSampleCount = 5_760

    /// The libopus version string, e.g. "libopus 1.3.1".
    public static var libraryVersion: String { String(cString: opus_get_version_string()) }

    /// Builds the error for a negative libopus status, with libopus's own text.
    static func error(_ operation: String, _ code: Int32) -> MediaError {
        .opus(operation: operation, code: code, reason: String(cString: opus_strerror(code)))
    }
}
