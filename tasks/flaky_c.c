/* flaky_c: how a C handler fails, with the wasmq SDK.
 *
 *   wasmq_retry(msg)  asks for a retry: the task goes back to the queue with backoff,
 *                     until its retries are used up;
 *   wasmq_error(msg)  fails the task at once, without retries (it goes to the
 *                     dead-letter queue);
 *   abort()           traps, and traps (like timeouts) are retried: return
 *                     wasmq_error for what a retry cannot fix.
 *
 * The message is kept with the task and shown wherever the task is.
 * Payload {"mode": "ok" | "retry" | "fail"}. */
#include <string.h>

#include "wasmq.h"

static wasmq_result handle(wasmq_bytes payload) {
    /* The SDK ends the payload with a NUL, so string functions take it as it is. */
    if (strstr(payload.data, "\"retry\""))
        return wasmq_retry("upstream unavailable, asking for a retry");
    if (strstr(payload.data, "\"fail\"")) return wasmq_error("invalid request, giving up");
    return wasmq_ok_str("{\"ok\":true}");
}

WASMQ_HANDLER(handle)
