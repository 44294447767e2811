/* flaky_c: how a C handler fails. The sandbox's retry convention:
 *
 *   exit(75)  (EX_TEMPFAIL) asks for a retry: the task goes back to the queue with
 *             backoff, until its retries are used up;
 *   exit(n)   with any other non-zero n fails the task terminally, without retries;
 *   abort()   traps, which is retried (like a crash or a timeout).
 *
 * Write the reason to stderr first: it is kept with the task and shown in the error.
 * Payload {"mode": "ok" | "retry" | "fail"}. Built with zig cc as a wasm32-wasi reactor. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT(name) __attribute__((export_name(name)))
#define EXIT_RETRY 75   /* EX_TEMPFAIL: try again later */
#define EXIT_TERMINAL 1 /* do not retry */

EXPORT("alloc") uint32_t alloc(uint32_t size) {
    return (uint32_t)(uintptr_t)malloc(size ? size : 1);
}

static int has(const char *payload, size_t len, const char *word) {
    size_t n = strlen(word);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(payload + i, word, n) == 0) return 1;
    return 0;
}

EXPORT("execute") uint64_t execute(uint32_t ptr, uint32_t len) {
    const char *payload = (const char *)(uintptr_t)ptr;
    if (has(payload, len, "\"retry\"")) {
        fprintf(stderr, "upstream unavailable, asking for a retry\n");
        exit(EXIT_RETRY);
    }
    if (has(payload, len, "\"fail\"")) {
        fprintf(stderr, "invalid request, giving up\n");
        exit(EXIT_TERMINAL);
    }
    static const char ok[] = "{\"ok\":true}";
    char *out = malloc(sizeof ok);
    memcpy(out, ok, sizeof ok);
    return ((uint64_t)(uintptr_t)out << 32) | (uint32_t)(sizeof ok - 1);
}
