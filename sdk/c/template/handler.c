/* __NAME__: a wasmq task in C.
 *
 * {"name": "Ada"} -> {"greeting": "Hello, Ada!"}; a payload without a name fails
 * terminally (retrying the same payload would not help). */
#include <stdio.h>
#include <string.h>

#include "wasmq.h"

static wasmq_result handle(wasmq_bytes payload) {
    /* The payload ends with a NUL, so string functions can read it as it is. */
    char name[64];
    const char *key = strstr(payload.data, "\"name\"");
    if (key == NULL || sscanf(key, "\"name\" : \"%63[^\"]\"", name) != 1)
        return wasmq_error("the payload has no \"name\": send {\"name\": \"Ada\"}");

    wasmq_progress(50, "found the name");

    /* A local buffer is fine: wasmq_ok copies the result. */
    char out[128];
    int n = snprintf(out, sizeof out, "{\"greeting\":\"Hello, %s!\"}", name);
    printf("__NAME__ greeted %s\n", name);
    return wasmq_ok(out, (size_t)n);
}

WASMQ_HANDLER(handle)
