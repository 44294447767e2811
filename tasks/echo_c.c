/* echo_c: returns its payload unchanged (used by benchmarks). */
#include <stdint.h>
#include <stdlib.h>

__attribute__((export_name("alloc"))) uint32_t alloc(uint32_t size) {
    return (uint32_t)(uintptr_t)malloc(size ? size : 1);
}

/* The payload buffer came from alloc and stays alive: return it as the result. */
__attribute__((export_name("execute"))) uint64_t execute(uint32_t ptr, uint32_t len) {
    return ((uint64_t)ptr << 32) | len;
}
