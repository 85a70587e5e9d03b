#include "pulse_shims.h"
#include <pulse/pulseaudio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    skylark_pulse_devices *out;
    int pending;   // introspection answers still to come
    int failed;
    char *error;
    size_t error_size;
} list_state;

static void copy(char *to, size_t size, const char *from) {
    snprintf(to, size, "%s", from ? from : "");
}

static void append(skylark_pulse_device **list, int *count, const char *name, const char *description, int is_monitor) {
    skylark_pulse_device *grown = realloc(*list, sizeof(skylark_pulse_device) * (size_t)(*count + 1));
    if (!grown) return;
    *list = grown;
    skylark_pulse_device *device = &grown[*count];
    copy(device->name, sizeof device->name, name);
    copy(device->description, sizeof device->description, description);
    device->is_monitor = is_monitor;
    *count += 1;
}

static void on_server(pa_context *context, const pa_server_info *info, void *userdata) {
    (void)context;
    list_state *state = userdata;
    if (info) {
        copy(state->out->default_source, sizeof state->out->default_source, info->default_source_name);
        copy(state->out->default_sink, sizeof state->out->default_sink, info->default_sink_name);
        copy(state->out->server_name, sizeof state->out->server_name, info->server_name);
        copy(state->out->server_version, sizeof state->out->server_version, info->server_version);
    }
    state->pending -= 1;
}

static void on_source(pa_context *context, const pa_source_info *info, int eol, void *userdata) {
    (void)context;
    list_state *state = userdata;
    if (eol) { state->pending -= 1; return; }
    append(&state->out->sources, &state->out->source_count, info->name, info->description,
           info->monitor_of_sink != PA_INVALID_INDEX);
}

static void on_sink(pa_context *context, const pa_sink_info *info, int eol, void *userdata) {
    (void)context;
    list_state *state = userdata;
    if (eol) { state->pending -= 1; return; }
    append(&state->out->sinks, &state->out->sink_count, info->name, info->description, 0);
}

static long long milliseconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int skylark_pulse_list_devices(const char *server, int timeout_ms, skylark_pulse_devices *out, char *error, size_t error_size) {
    memset(out, 0, sizeof *out);
    pa_mainloop *loop = pa_mainloop_new();
    if (!loop) { copy(error, error_size, "cannot create a PulseAudio main loop"); return -1; }
    pa_context *context = pa_context_new(pa_mainloop_get_api(loop), "skylark");
    list_state state = { out, 0, 0, error, error_size };
    int result = -1;
    if (!context) { copy(error, error_size, "cannot create a PulseAudio context"); goto done; }
    if (pa_context_connect(context, server, PA_CONTEXT_NOAUTOSPAWN, NULL) < 0) {
        snprintf(error, error_size, "cannot connect to the sound server: %s", pa_strerror(pa_context_errno(context)));
        goto done;
    }
    long long deadline = milliseconds() + timeout_ms;
    int asked = 0;
    for (;;) {
        pa_context_state_t now = pa_context_get_state(context);
        if (now == PA_CONTEXT_FAILED || now == PA_CONTEXT_TERMINATED) {
            snprintf(error, error_size, "cannot connect to the sound server: %s", pa_strerror(pa_context_errno(context)));
            goto done;
        }
        if (now == PA_CONTEXT_READY && !asked) {
            asked = 1;
            state.pending = 3;
            pa_operation *operations[3] = {
                pa_context_get_server_info(context, on_server, &state),
                pa_context_get_source_info_list(context, on_source, &state),
                pa_context_get_sink_info_list(context, on_sink, &state),
            };
            for (int i = 0; i < 3; i++) {
                if (operations[i]) pa_operation_unref(operations[i]); else state.pending -= 1;
            }
        }
        if (asked && state.pending <= 0) { result = 0; break; }
        if (milliseconds() > deadline) {
            snprintf(error, error_size, "the sound server did not answer within %d ms", timeout_ms);
            goto done;
        }
        if (pa_mainloop_prepare(loop, 100000) < 0 || pa_mainloop_poll(loop) < 0 || pa_mainloop_dispatch(loop) < 0) {
            copy(error, error_size, "the PulseAudio main loop failed");
            goto done;
        }
    }
done:
    if (context) { pa_context_disconnect(context); pa_context_unref(context); }
    pa_mainloop_free(loop);
    if (result != 0) skylark_pulse_free_devices(out);
    return result;
}

void skylark_pulse_free_devices(skylark_pulse_devices *devices) {
    free(devices->sources);
    free(devices->sinks);
    devices->sources = NULL;
    devices->sinks = NULL;
    devices->source_count = 0;
    devices->sink_count = 0;
}
