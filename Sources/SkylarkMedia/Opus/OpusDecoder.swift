import COpus
import COpusShims

/// An Opus decoder for one incoming stream (48 kHz mono).
///
/// Owns one `OpusDecoder*`, destroyed exactly once in `deinit` (see `OpusEncoder` for why this
/// is a class). Not `Sendable`: decoding mutates the state that PLC and FEC extrapolate from.
///
/// The jitter buffer tells the adapter which of the three calls to make for each 20 ms slot:
/// `decode` for a packet that arrived, `decodeFEC(from:)` when the slot's packet is lost but its
/// successor is already here, `concealLoss()` when both are missing.
public final class OpusDecoder {
    private let handle: OpaquePointer

    public init() throws(MediaError) {
        var status: Int32 = OPUS_OK
        let created = opus_decoder_create(Int32(Opus.sampleRate), Int32(Opus.channelCount), &status)
        guard status == OPUS_OK, let created else { throw Opus.error("opus_decoder_create", status == OPUS_OK ? OPUS_ALLOC_FAIL : status) }
        handle = created
    }

    deinit { opus_decoder_destroy(handle) }

    /// Decodes one packet into as many samples as it carries (960 for Skylark's own 20 ms
    /// packets; up to 120 ms for packets from other Opus senders).
    ///
    /// Throws (rather than concealing) on a packet libopus cannot parse, so the adapter can
    /// count it; the usual reaction is `concealLoss()`. An empty packet is refused here because
    /// libopus would read it as "lost" and silently run PLC.
    public func decode(_ packet: [UInt8]) throws(MediaError) -> [Int16] {
        guard !packet.isEmpty else { throw Opus.error("opus_decode", OPUS_INVALID_PACKET) }
        return try run("opus_decode", packet: packet, sampleCount: Opus.maxPacketSampleCount, fec: false)
    }

    /// Rebuilds the frame *before* `next` from the low-bitrate copy (LBRR) that `next` carries
    /// when the sender had in-band FEC on. Afterwards decode `next` itself as usual.
    ///
    /// If `next` carries no FEC data (FEC off, CELT-only mode, or the first packet of a talk
    /// spurt) libopus falls back to concealment, so the result is never worse than
    /// `concealLoss()`. The length is that of the last decoded frame (960 for Skylark streams).
    public func decodeFEC(from next: [UInt8]) throws(MediaError) -> [Int16] {
        guard !next.isEmpty else { throw Opus.error("opus_decode(FEC)", OPUS_INVALID_PACKET) }
        return try run("opus_decode(FEC)", packet: next, sampleCount: lostFrameSampleCount, fec: true)
    }

    /// Packet-loss concealment: one frame extrapolated from the decoder's history (decoding
    /// with no data). Repeated calls fade to silence. Never fails on a valid decoder; if libopus
    /// ever refused, silence of the right length is the honest substitute.
    public func concealLoss() -> [Int16] {
        let count = lostFrameSampleCount
        do {
            return try run("opus_decode(PLC)", packet: [], sampleCount: count, fec: false)
        } catch {
            return [Int16](repeating: 0, count: count)
        }
    }

    /// Forgets all history, as at the start of a new stream.
    public func reset() throws(MediaError) {
        let status = skylark_opus_decoder_reset_state(handle)
        if status != OPUS_OK { throw Opus.error("OPUS_RESET_STATE", status) }
    }

    /// The duration to rebuild for a lost packet: libopus requires FEC and PLC calls to ask for a
    /// whole number of 2.5 ms; the natural choice is the length of the previous packet, which
    /// libopus remembers (0 before the first packet, hence the 20 ms default).
    private var lostFrameSampleCount: Int {
        var samples: Int32 = 0
        let status = skylark_opus_decoder_get_last_packet_duration(handle, &samples)
        guard status == OPUS_OK, samples > 0, Int(samples) <= Opus.maxPacketSampleCount else { return Opus.frameSampleCount }
        return Int(samples)
    }

    private func run(_ operation: String, packet: [UInt8], sampleCount: Int, fec: Bool) throws(MediaError) -> [Int16] {
        // `sampleCount` is at least one 2.5 ms frame, so `pcm` has a base address.
        var pcm = [Int16](repeating: 0, count: sampleCount)
        let decoded = pcm.withUnsafeMutableBufferPointer { out in
            packet.withUnsafeBufferPointer { data in
                // An empty packet passes NULL: libopus's signal for "lost, conceal it".
                opus_decode(handle, packet.isEmpty ? nil : data.baseAddress, Int32(packet.count), out.baseAddress!, Int32(sampleCount), fec ? 1 : 0)
            }
        }
        guard decoded >= 0 else { throw Opus.error(operation, decoded) }
        if Int(decoded) < pcm.count { pcm.removeSubrange(Int(decoded)...) }
        return pcm
    }
}
