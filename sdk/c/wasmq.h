/* wasmq.h: the wasmq guest SDK for C and C++ (guest ABI 1).
 *
 * A handler takes the payload bytes and returns a result, or an error:
 *
 *     #include "wasmq.h"
 *
 *     static wasmq_result handle(wasmq_bytes payload) {
 *         if (payload.len == 0) return wasmq_error("empty payload");   // terminal
 *         char out[64];                                                // the stack is fine:
 *         int n = snprintf(out, sizeof out, "%zu bytes", payload.len); // wasmq_ok copies
 *         return wasmq_ok(out, (size_t)n);
 *     }
 *     WASMQ_HANDLER(handle)
 *
 * WASMQ_HANDLER defines the module's `alloc` and `execute` exports; the SDK owns the
 * payload buffer (freed after the handler returns) and the result buffer (kept until the
 * host has copied it), and packs pointer and length for the host. Header only: include
 * it in the one file that holds the handler. Build as a wasm32-wasi reactor
 * (`zig cc -target wasm32-wasi -mexec-model=reactor -I <this dir> ...`).
 *
 * A module imports `wasmq.fail` only when its code can return an error, and
 * `wasmq.progress` only when it reports progress, so a handler that does neither runs
 * on any host that runs raw modules.
 */
#ifndef WASMQ_H
#define WASMQ_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
#define WASMQ__EXTERN_C extern "C"
extern "C" {
#else
#define WASMQ__EXTERN_C
#endif

/* The payload: `len` bytes at `data`. data[len] is always '\0', so a text payload can go
 * to string functions as it is (a payload holding NUL bytes of its own is still `len`
 * long). Valid until the handler returns. */
typedef struct wasmq_bytes {
    const char *data;
    size_t len;
} wasmq_bytes;

/* Error kinds, as the host numbers them. */
enum {
    WASMQ_TERMINAL = 0,  /* no retry: the task goes to the dead-letter queue */
    WASMQ_RETRYABLE = 1, /* retried with backoff, up to the task's max_retries */
};

/* The host keeps at most this many bytes of an error message, and marks a longer one as
 * cut. */
#define WASMQ_MESSAGE_MAX 1024

typedef int32_t (*wasmq__fail_fn)(int32_t kind, const char *msg, size_t len);

/* What a handler returns. Build it with wasmq_ok* / wasmq_error* / wasmq_retry*; the
 * fields are the SDK's. A zero-initialised value is an empty successful result. */
typedef struct wasmq_result {
    char *data;          /* the result (SDK-owned) or the error message */
    size_t len;
    int32_t kind;        /* the error kind, when fail is set */
    int32_t owned;       /* data is malloc'd and freed by the SDK */
    wasmq__fail_fn fail; /* set for an error: the host's wasmq.fail */
} wasmq_result;

typedef wasmq_result (*wasmq_handler)(wasmq_bytes payload);

/* The host functions of ABI 1 (import module "wasmq"). An import is only emitted when
 * code that can run calls it, which is what keeps error-free handlers import-free. */
__attribute__((import_module("wasmq"), import_name("fail")))
int32_t wasmq__host_fail(int32_t kind, const char *msg, size_t len);
__attribute__((import_module("wasmq"), import_name("progress")))
int32_t wasmq__host_progress(double value, const char *msg, size_t len);

/* ---- results ---------------------------------------------------------------------- */

/* Succeed with a copy of `len` bytes at `data` (which may be a stack buffer). */
static inline wasmq_result wasmq_ok(const void *data, size_t len) {
    wasmq_result r;
    memset(&r, 0, sizeof r);
    r.data = (char *)malloc(len ? len : 1);
    /* No memory for the result: trap, which the host retries like a crash. */
    if (r.data == NULL) __builtin_trap();
    if (len) memcpy(r.data, data, len);
    r.len = len;
    r.owned = 1;
    return r;
}

/* Succeed with a NUL-terminated string (the NUL is not part of the result). */
static inline wasmq_result wasmq_ok_str(const char *text) {
    return wasmq_ok(text, strlen(text));
}

/* Succeed with `len` bytes of a buffer from malloc, without copying: the SDK frees it. */
static inline wasmq_result wasmq_ok_take(void *malloced, size_t len) {
    wasmq_result r;
    memset(&r, 0, sizeof r);
    r.data = (char *)malloced;
    r.len = malloced ? len : 0;
    r.owned = 1;
    return r;
}

static inline wasmq_result wasmq__vokf(const char *fmt, va_list ap) {
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    if (n < 0) n = 0;
    char *out = (char *)malloc((size_t)n + 1);
    if (out == NULL) __builtin_trap();
    vsnprintf(out, (size_t)n + 1, fmt, again);
    va_end(again);
    return wasmq_ok_take(out, (size_t)n);
}

/* Succeed with printf-formatted text. */
__attribute__((format(printf, 1, 2))) static inline wasmq_result wasmq_okf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    wasmq_result r = wasmq__vokf(fmt, ap);
    va_end(ap);
    return r;
}

/* ---- errors ----------------------------------------------------------------------- */

static inline wasmq_result wasmq__failure(int32_t kind, const char *msg, size_t len) {
    wasmq_result r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    r.fail = wasmq__host_fail;
    /* One byte over what the host keeps is enough for it to see the cut. */
    if (len > WASMQ_MESSAGE_MAX + 1) len = WASMQ_MESSAGE_MAX + 1;
    /* A copy: the message may live in the handler's stack frame. */
    r.data = (char *)malloc(len ? len : 1);
    if (r.data == NULL) {
        static const char oom[] = "out of memory while reporting an error";
        r.data = (char *)oom;
        r.len = sizeof oom - 1;
        return r;
    }
    if (len) memcpy(r.data, msg, len);
    r.len = len;
    r.owned = 1;
    return r;
}

static inline wasmq_result wasmq__vfailf(int32_t kind, const char *fmt, va_list ap) {
    char text[WASMQ_MESSAGE_MAX + 2];
    int n = vsnprintf(text, sizeof text, fmt, ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof text ? (size_t)n : sizeof text - 1;
    return wasmq__failure(kind, text, len);
}

/* Fail terminally: no retry, the task goes to the dead-letter queue with `message`. */
static inline wasmq_result wasmq_error(const char *message) {
    if (message == NULL) message = "";
    return wasmq__failure(WASMQ_TERMINAL, message, strlen(message));
}

/* Fail and ask for a retry (with backoff, up to the task's max_retries). */
static inline wasmq_result wasmq_retry(const char *message) {
    if (message == NULL) message = "";
    return wasmq__failure(WASMQ_RETRYABLE, message, strlen(message));
}

/* wasmq_error with a printf-formatted message. */
__attribute__((format(printf, 1, 2))) static inline wasmq_result wasmq_errorf(const char *fmt,
                                                                              ...) {
    va_list ap;
    va_start(ap, fmt);
    wasmq_result r = wasmq__vfailf(WASMQ_TERMINAL, fmt, ap);
    va_end(ap);
    return r;
}

/* wasmq_retry with a printf-formatted message. */
__attribute__((format(printf, 1, 2))) static inline wasmq_result wasmq_retryf(const char *fmt,
                                                                              ...) {
    va_list ap;
    va_start(ap, fmt);
    wasmq_result r = wasmq__vfailf(WASMQ_RETRYABLE, fmt, ap);
    va_end(ap);
    return r;
}

/* ---- progress --------------------------------------------------------------------- */

/* Report progress: `value` any finite number (by convention a percentage), `message`
 * short text or NULL. Cheap enough for a loop: the host keeps the latest report and
 * stores it a few times a second. Returns 0, or 28 (EINVAL) for a NaN or infinite value. */
static inline int wasmq_progress(double value, const char *message) {
    return (int)wasmq__host_progress(value, message ? message : "",
                                     message ? strlen(message) : 0);
}

/* ---- the exports ------------------------------------------------------------------ */

/* The payload buffer handed out by the last alloc, and the result the host is reading. */
static char *wasmq__payload;
static size_t wasmq__payload_size;
static char *wasmq__result;

static inline uint32_t wasmq__alloc(uint32_t len) {
    if (len == UINT32_MAX) __builtin_trap(); /* no room for the NUL in a 32-bit size */
    free(wasmq__payload);
    /* One byte more for the NUL that follows the payload. */
    wasmq__payload = (char *)malloc((size_t)len + 1);
    if (wasmq__payload == NULL) __builtin_trap();
    wasmq__payload_size = (size_t)len + 1;
    return (uint32_t)(uintptr_t)wasmq__payload;
}

static inline uint64_t wasmq__execute(wasmq_handler handler, uint32_t ptr, uint32_t len) {
    char *payload = (char *)(uintptr_t)ptr;
    int ours = payload == wasmq__payload && (size_t)len < wasmq__payload_size;
    if (ours) payload[len] = '\0';
    free(wasmq__result);
    wasmq__result = NULL;

    wasmq_bytes in;
    in.data = payload;
    in.len = len;
    wasmq_result r = handler(in);

    /* Freed only now: the handler reads the payload until it returns (wasmq_ok copies). */
    if (ours) {
        free(wasmq__payload);
        wasmq__payload = NULL;
        wasmq__payload_size = 0;
    }
    if (r.fail != NULL) {
        r.fail(r.kind, r.data, r.len);
        if (r.owned) free(r.data);
        return 0; /* the host reports the error; the result is ignored */
    }
    if (r.data == NULL || r.len == 0) {
        if (r.owned) free(r.data);
        return 0;
    }
    if (r.owned) wasmq__result = r.data;
    return ((uint64_t)(uintptr_t)r.data << 32) | (uint32_t)r.len;
}

#ifdef __cplusplus
}
#endif

/* Defines the module's `alloc` and `execute` exports around `handler`, a function
 * `wasmq_result handler(wasmq_bytes payload)`. Use it once, at file scope. */
#define WASMQ_HANDLER(handler)                                                                \
    WASMQ__EXTERN_C __attribute__((export_name("alloc"))) uint32_t wasmq_export_alloc(       \
        uint32_t len) {                                                                       \
        return wasmq__alloc(len);                                                             \
    }                                                                                         \
    WASMQ__EXTERN_C __attribute__((export_name("execute"))) uint64_t wasmq_export_execute(   \
        uint32_t ptr, uint32_t len) {                                                         \
        return wasmq__execute((handler), ptr, len);                                           \
    }

#endif /* WASMQ_H */
