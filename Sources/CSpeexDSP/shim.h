#ifndef SKYLARK_CSPEEXDSP_SHIM_H
#define SKYLARK_CSPEEXDSP_SHIM_H
// speexdsp: the acoustic echo canceller and the preprocessor (noise suppression, automatic gain,
// residual echo suppression), and the resampler that absorbs clock drift. Their ctl functions take a
// void pointer, not varargs.
#include <speex/speex_echo.h>
#include <speex/speex_preprocess.h>
#include <speex/speex_resampler.h>
#endif
