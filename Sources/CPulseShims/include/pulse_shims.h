#ifndef SKYLARK_PULSE_SHIMS_H
#define SKYLARK_PULSE_SHIMS_H
#include <stddef.h>

/// One source (microphone, or a sink's monitor) or sink (speaker) of a PulseAudio server.
typedef struct {
    char name[256];
    char description[256];
    /// Sources only: this source is the monitor of a sink (what the sink plays).
    int is_monitor;
} skylark_pulse_device;

typedef struct {
    skylark_pulse_device *sources;
    int source_count;
    skylark_pulse_device *sinks;
    int sink_count;
    char default_source[256];
    char default_sink[256];
    char server_name[128];
    char server_version[64];
} skylark_pulse_devices;

/// Lists the sources and sinks of the server at `server` (NULL: where libpulse finds it —
/// PULSE_SERVER, then XDG_RUNTIME_DIR), never starting one. 0 on success; otherwise -1 with a
/// message in `error`. Gives up after `timeout_ms`. Free a successful result with
/// `skylark_pulse_free_devices`.
int skylark_pulse_list_devices(const char *server, int timeout_ms, skylark_pulse_devices *out, char *error, size_t error_size);
void skylark_pulse_free_devices(skylark_pulse_devices *devices);
#endif
