/* task_1_c: the reference task in C. Reads {"name": ...}, prints a greeting line,
 * returns {"message":"Hello, <name>!"}. Built with zig cc as a wasm32-wasi reactor. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT(name) __attribute__((export_name(name)))

EXPORT("alloc") uint32_t alloc(uint32_t size) {
    return (uint32_t)(uintptr_t)malloc(size ? size : 1);
}

/* The string value of "name" in a flat JSON object, copied into out (escapes kept). */
static size_t find_name(const char *in, size_t len, char *out, size_t cap) {
    static const char key[] = "\"name\"";
    for (size_t i = 0; i + sizeof key - 1 <= len; i++) {
        if (memcmp(in + i, key, sizeof key - 1) != 0) continue;
        size_t j = i + sizeof key - 1;
        while (j < len && (in[j] == ' ' || in[j] == ':' || in[j] == '\t')) j++;
        if (j >= len || in[j] != '"') return 0;
        size_t n = 0;
        for (j++; j < len && in[j] != '"' && n < cap; j++) {
            if (in[j] == '\\' && j + 1 < len && n + 1 < cap) out[n++] = in[j++];
            out[n++] = in[j];
        }
        return n;
    }
    return 0;
}

EXPORT("execute") uint64_t execute(uint32_t ptr, uint32_t len) {
    const char *payload = (const char *)(uintptr_t)ptr;
    char name[256];
    size_t n = find_name(payload, len, name, sizeof name - 1);
    if (n == 0) {
        memcpy(name, "World", 5);
        n = 5;
    }
    name[n] = '\0';
    free((void *)payload);
    printf("Hello, %s! (from task_1 in C)\n", name);
    fflush(stdout);
    size_t cap = n + 32;
    char *out = malloc(cap);
    int written = snprintf(out, cap, "{\"message\":\"Hello, %s!\"}", name);
    return ((uint64_t)(uintptr_t)out << 32) | (uint32_t)written;
}
