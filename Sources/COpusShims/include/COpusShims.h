#ifndef SKYLARK_COPUSSHIMS_H
#define SKYLARK_COPUSSHIMS_H
#include <opus/opus.h>

/// opus_encoder_ctl and opus_decoder_ctl are variadic, and their request arguments are macros;
/// Swift can call neither. One typed function per request keeps the argument type right (an
/// opus_int32 value for a SET, an opus_int32 pointer for a GET). Each returns libopus's status
/// (OPUS_OK or a negative OPUS_* error code).
int skylark_opus_encoder_set_bitrate(OpusEncoder *encoder, opus_int32 bitsPerSecond);
int skylark_opus_encoder_get_bitrate(OpusEncoder *encoder, opus_int32 *bitsPerSecond);
int skylark_opus_encoder_set_complexity(OpusEncoder *encoder, opus_int32 complexity);
int skylark_opus_encoder_get_complexity(OpusEncoder *encoder, opus_int32 *complexity);
int skylark_opus_encoder_set_inband_fec(OpusEncoder *encoder, opus_int32 enabled);
int skylark_opus_encoder_get_inband_fec(OpusEncoder *encoder, opus_int32 *enabled);
int skylark_opus_encoder_set_packet_loss_perc(OpusEncoder *encoder, opus_int32 percent);
int skylark_opus_encoder_get_packet_loss_perc(OpusEncoder *encoder, opus_int32 *percent);
int skylark_opus_encoder_set_signal(OpusEncoder *encoder, opus_int32 signal);
int skylark_opus_encoder_get_lookahead(OpusEncoder *encoder, opus_int32 *samples);
int skylark_opus_encoder_reset_state(OpusEncoder *encoder);
int skylark_opus_decoder_get_last_packet_duration(OpusDecoder *decoder, opus_int32 *samples);
int skylark_opus_decoder_reset_state(OpusDecoder *decoder);
#endif
