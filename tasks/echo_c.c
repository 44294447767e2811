/* echo_c: returns its payload unchanged (used by benchmarks), with the wasmq C SDK. */
#include "wasmq.h"

static wasmq_result echo(wasmq_bytes payload) {
    return wasmq_ok(payload.data, payload.len);
}

WASMQ_HANDLER(echo)
