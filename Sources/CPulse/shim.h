#ifndef SKYLARK_CPULSE_SHIM_H
#define SKYLARK_CPULSE_SHIM_H
// libpulse: the blocking "simple" API for capture and playback streams, and the error strings.
// The asynchronous API (device lists) is used only from CPulseShims.
#include <pulse/simple.h>
#include <pulse/error.h>
#endif
