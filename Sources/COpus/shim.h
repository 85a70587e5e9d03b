#ifndef SKYLARK_COPUS_SHIM_H
#define SKYLARK_COPUS_SHIM_H
// libopus's public API. Included as <opus/opus.h> so that no extra include path is needed;
// opus.h pulls in opus_types.h and opus_defines.h (error codes, OPUS_APPLICATION_VOIP, the
// *_REQUEST numbers) relative to itself.
#include <opus/opus.h>
#endif
