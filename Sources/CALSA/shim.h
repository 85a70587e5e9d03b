#ifndef SKYLARK_CALSA_SHIM_H
#define SKYLARK_CALSA_SHIM_H
// libasound (ALSA): PCM capture and playback with the blocking read/write API, the device name
// hints for listing, and the error strings. Only functions are used (no alloca macros).
#include <alsa/asoundlib.h>

// libasound prints its own diagnostics to stderr ("ALSA lib pcm.c:... Unknown PCM x") through a
// variadic handler Swift cannot define; Skylark reports the same failure in its own words.
static void skylark_alsa_discard_error(const char *file, int line, const char *function, int err, const char *fmt, ...) {
    (void)file; (void)line; (void)function; (void)err; (void)fmt;
}
static inline void skylark_alsa_quiet_errors(void) { snd_lib_error_set_handler(skylark_alsa_discard_error); }
#endif
