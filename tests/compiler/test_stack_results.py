"""A raw handler that returns a local buffer: the sandbox names the mistake instead of
returning whatever the freed stack holds (C through ``zig cc``, and Zig)."""

from __future__ import annotations

from pathlib import Path

import pytest

import compiler
from runtime.modules.contract import compile_checked
from runtime.sandbox import Outcome, Sandbox, TaskLimits
from runtime.sandbox.engine import get_engine
from runtime.settings import Settings

pytestmark = pytest.mark.toolchain

LIMITS = TaskLimits(timeout=20.0, memory=64 << 20, result=1 << 20, logs=1 << 20)

RAW_C = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
__attribute__((export_name("alloc"))) uint32_t alloc(uint32_t n) {
    return (uint32_t)(uintptr_t)malloc(n ? n : 1);
}
__attribute__((export_name("execute"))) uint64_t execute(uint32_t ptr, uint32_t len) {
    char out[64];
    memset(out, 'x', sizeof out);
    if (len && ((const char *)(uintptr_t)ptr)[0] == 'h') {
        char *heap = malloc(sizeof out);
        memcpy(heap, out, sizeof out);
        return ((uint64_t)(uintptr_t)heap << 32) | sizeof out;
    }
    return ((uint64_t)(uintptr_t)out << 32) | sizeof out;  /* the classic mistake */
}
"""

RAW_ZIG = """
const std = @import("std");
var gpa = std.heap.wasm_allocator;
export fn alloc(n: u32) u32 {
    const buf = gpa.alloc(u8, @max(n, 1)) catch return 0;
    return @intCast(@intFromPtr(buf.ptr));
}
export fn execute(ptr: u32, len: u32) u64 {
    _ = ptr;
    _ = len;
    var out: [64]u8 = undefined;
    @memset(&out, 'z');
    return (@as(u64, @intFromPtr(&out)) << 32) | out.len;
}
"""


def _run(source: str, name: str, tmp_path: Path, cache: Path, payload: bytes) -> Outcome:
    path = tmp_path / name
    path.write_text(source)
    adapter = compiler.adapter_for(path, "go", cache)
    data = adapter.compile(path, timeout=300, output_limit=64 << 20)
    module = compile_checked(get_engine(False), data)
    box = Sandbox(Settings.load({}, environ={}, env_file=None))
    try:
        return box.run(module, name, payload, LIMITS, task_name="raw")
    finally:
        box.close()


@pytest.mark.parametrize(("source", "name"), [(RAW_C, "raw_stack.c"), (RAW_ZIG, "raw_stack.zig")])
def test_a_result_in_a_returned_frame_is_named(
    source: str, name: str, tmp_path: Path, toolchain_cache: Path
) -> None:
    outcome = _run(source, name, tmp_path, toolchain_cache, b"s")
    assert outcome.kind == "bad_result", outcome.message
    assert "in its stack" in outcome.message
    assert "guest SDKs" in outcome.message


def test_a_heap_result_of_the_same_handler_is_fine(tmp_path: Path, toolchain_cache: Path) -> None:
    outcome = _run(RAW_C, "raw_heap.c", tmp_path, toolchain_cache, b"h")
    assert outcome.ok and outcome.result == b"x" * 64
