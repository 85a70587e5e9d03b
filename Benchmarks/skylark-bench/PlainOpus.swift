import ArgumentParser
import COpus
import COpusShims
import SkylarkMedia

/// Plain libopus handles with the settings calls use (48 kHz mono, VOIP, voice signal, in-band
/// FEC, 10 % expected loss), for the benchmarks' libopus floors. The caller destroys them.
enum PlainOpus {
    static func encoder(bitrate: Int = 32_000, complexity: Int = 5) throws -> OpaquePointer {
        var status: Int32 = OPUS_OK
        guard let encoder = opus_encoder_create(Int32(Opus.sampleRate), 1, OPUS_APPLICATION_VOIP, &status), status == OPUS_OK else {
            throw ValidationError("opus_encoder_create failed: \(status)")
        }
        // opus_encoder_ctl is variadic: through the C shims.
        guard skylark_opus_encoder_set_signal(encoder, OPUS_SIGNAL_VOICE) == OPUS_OK, skylark_opus_encoder_set_bitrate(encoder, Int32(bitrate)) == OPUS_OK,
            skylark_opus_encoder_set_complexity(encoder, Int32(complexity)) == OPUS_OK, skylark_opus_encoder_set_inband_fec(encoder, 1) == OPUS_OK,
            skylark_opus_encoder_set_packet_loss_perc(encoder, 10) == OPUS_OK
        else {
            opus_encoder_destroy(encoder)
            throw ValidationError("opus ctl failed")
        }
        return encoder
    }

    static func decoder() throws -> OpaquePointer {
        var status: Int32 = OPUS_OK
        guard let decoder = opus_decoder_create(Int32(Opus.sampleRate), 1, &status), status == OPUS_OK else {
            throw ValidationError("opus_decoder_create failed: \(status)")
        }
        return decoder
    }
}
