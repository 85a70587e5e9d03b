import COpus
import COpusShims

/// An Opus encoder for one outgoing stream (48 kHz mono, 20 ms frames, VOIP application).
///
/// Owns one `OpusEncoder*`, created in `init` and destroyed exactly once in `deinit`; the
/// pointer never leaves this class, so nothing else can free it or outlive it. A class rather
/// than a struct because the C state cannot be copied: two copies of a struct would share (and
/// double-free) one handle.
///
/// Not `Sendable`: libopus encoder state is mutated by every `encode`, so one encoder belongs to
/// one task (the call's media adapter). Encoding is a pure computation — no I/O, no clock.
public final class OpusEncoder {
    private let handle: OpaquePointer

    /// - Parameters:
    ///   - bitrate: target bits per second (libopus accepts 500…512 000; 32 kbit/s gives
    ///     wideband-or-better voice with room for FEC).
    ///   - complexity: 0 (cheapest) … 10 (best); 5 costs about half of 10 (≈0.2 ms against
    ///     ≈0.4 ms per 20 ms frame on the 2-core test machine) for little loss in quality on voice.
    ///   - inbandFEC: carry a low-bitrate copy of each frame in the next packet (LBRR), so the
    ///     receiver can rebuild one lost frame from its successor.
    ///   - expectedPacketLoss: percent, 0…100. libopus only spends bits on FEC when this is
    ///     above zero, and spends more the higher it is; the adapter updates it from RTCP-like
    ///     loss reports with `setExpectedPacketLoss`.
    public init(bitrate: Int = 32_000, complexity: Int = 5, inbandFEC: Bool = true, expectedPacketLoss: Int = 10) throws(MediaError) {
        var status: Int32 = OPUS_OK
        let created = opus_encoder_create(Int32(Opus.sampleRate), Int32(Opus.channelCount), OPUS_APPLICATION_VOIP, &status)
        guard status == OPUS_OK, let created else { throw Opus.error("opus_encoder_create", status == OPUS_OK ? OPUS_ALLOC_FAIL : status) }
        handle = created
        // From here on `deinit` runs if a setter throws, so the handle is still freed once.
        // Biasing the mode decision towards voice keeps the encoder in SILK/hybrid mode, the
        // modes that carry in-band FEC.
        try Self.check(skylark_opus_encoder_set_signal(handle, OPUS_SIGNAL_VOICE), "OPUS_SET_SIGNAL")
        try setBitrate(bitrate)
        try setComplexity(complexity)
        try setInbandFEC(inbandFEC)
        try setExpectedPacketLoss(expectedPacketLoss)
    }

    deinit { opus_encoder_destroy(handle) }

    /// Encodes 20, 40 or 60 ms (one to three `Opus.frameSampleCount` frames) into one Opus
    /// packet: longer packets cut the header overhead to a half or a third when the path is narrow.
    public func encode(_ pcm: [Int16]) throws(MediaError) -> [UInt8] {
        guard pcm.count > 0, pcm.count % Opus.frameSampleCount == 0, pcm.count <= Opus.maximumFramesPerPacket * Opus.frameSampleCount else {
            throw .wrongFrameSize(expected: Opus.frameSampleCount, actual: pcm.count)
        }
        var packet = [UInt8](repeating: 0, count: Opus.maxPacketByteCount)
        // Both buffers are non-empty (checked above, allocated here), so their base addresses exist.
        let written = pcm.withUnsafeBufferPointer { samples in
            packet.withUnsafeMutableBufferPointer { out in
                opus_encode(handle, samples.baseAddress!, Int32(pcm.count), out.baseAddress!, Int32(out.count))
            }
        }
        guard written > 0 else { throw Opus.error("opus_encode", written < 0 ? written : OPUS_INTERNAL_ERROR) }
        packet.removeSubrange(Int(written)...)
        return packet
    }

    // MARK: - Settings (through CShims: opus_encoder_ctl is variadic)

    public func setBitrate(_ bitsPerSecond: Int) throws(MediaError) {
        // libopus quietly clamps positive values to 500…512 000 but refuses ≤ 0; refusing out of
        // range values here makes a caller's unit mistake (kbit/s for bit/s) visible.
        guard (500...512_000).contains(bitsPerSecond) else {
            throw .invalidParameter(name: "Opus bitrate", value: "\(bitsPerSecond) bit/s (500…512000)")
        }
        try Self.check(skylark_opus_encoder_set_bitrate(handle, Int32(bitsPerSecond)), "OPUS_SET_BITRATE")
    }

    public func setComplexity(_ complexity: Int) throws(MediaError) {
        guard (0...10).contains(complexity) else { throw .invalidParameter(name: "Opus complexity", value: "\(complexity) (0…10)") }
        try Self.check(skylark_opus_encoder_set_complexity(handle, Int32(complexity)), "OPUS_SET_COMPLEXITY")
    }

    public func setInbandFEC(_ enabled: Bool) throws(MediaError) {
        try Self.check(skylark_opus_encoder_set_inband_fec(handle, enabled ? 1 : 0), "OPUS_SET_INBAND_FEC")
    }

    /// Percent of packets the encoder should expect to be lost (0…100).
    public func setExpectedPacketLoss(_ percent: Int) throws(MediaError) {
        guard (0...100).contains(percent) else { throw .invalidParameter(name: "expected packet loss", value: "\(percent)% (0…100)") }
        try Self.check(skylark_opus_encoder_set_packet_loss_perc(handle, Int32(percent)), "OPUS_SET_PACKET_LOSS_PERC")
    }

    /// Forgets all history, as at the start of a new stream.
    public func reset() throws(MediaError) {
        try Self.check(skylark_opus_encoder_reset_state(handle), "OPUS_RESET_STATE")
    }

    /// The bitrate in effect, read back from libopus (which rounds and clamps).
    public var bitrate: Int { readInt(skylark_opus_encoder_get_bitrate) }
    public var complexity: Int { readInt(skylark_opus_encoder_get_complexity) }
    public var inbandFEC: Bool { readInt(skylark_opus_encoder_get_inband_fec) != 0 }
    public var expectedPacketLoss: Int { readInt(skylark_opus_encoder_get_packet_loss_perc) }

    /// Samples of delay the encoder adds (its look-ahead): decoded audio lags the input by this
    /// much, which is what a comparison of sent and received audio has to align for.
    public var lookahead: Int { readInt(skylark_opus_encoder_get_lookahead) }

    private func readInt(_ get: (OpaquePointer?, UnsafeMutablePointer<Int32>?) -> Int32) -> Int {
        var value: Int32 = 0
        // GET requests on a valid encoder cannot fail; a failure would leave `value` at 0.
        _ = get(handle, &value)
        return Int(value)
    }

    private static func check(_ status: Int32, _ operation: String) throws(MediaError) {
        if status != OPUS_OK { throw Opus.error(operation, status) }
    }
}
