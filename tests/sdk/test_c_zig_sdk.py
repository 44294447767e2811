"""The C/C++ (``sdk/c/wasmq.h``) and Zig (``sdk/zig/wasmq.zig``) guest SDKs, built by the
real Zig toolchain and run in the real sandbox: bytes in and out, results built in local
buffers, large payloads and results, errors of both kinds, progress, C++, a registered
example.

One probe handler per language dispatches on its payload (``command:argument``), so each
is compiled once per module.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
import wasmtime

import compiler
from compiler import sdk
from compiler.zig import ZigAdapter, ZigCAdapter, ZigCppAdapter
from runtime.modules.cache import forget_memory
from runtime.modules.contract import compile_checked
from runtime.modules.registry import Registry
from runtime.sandbox import Outcome, Sandbox, TaskLimits
from runtime.sandbox.engine import get_engine
from runtime.settings import Settings
from tests.support.paths import TASKS

pytestmark = pytest.mark.toolchain

LIMITS = TaskLimits(timeout=20.0, memory=256 << 20, result=4 << 20, logs=1 << 20)
MIB = 1 << 20

C_PROBE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wasmq.h"

static int is(const char *command, wasmq_bytes payload) {
    size_t n = strlen(command);
    return payload.len >= n && memcmp(payload.data, command, n) == 0 &&
           (payload.len == n || payload.data[n] == ':');
}

/* A result built in a local buffer: wasmq_ok must copy it before the frame is gone. */
static wasmq_result from_stack(void) {
    char buf[8192];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (char)('a' + i % 26);
    return wasmq_ok(buf, sizeof buf);
}

static wasmq_result handle(wasmq_bytes payload) {
    const char *colon = memchr(payload.data, ':', payload.len);
    const char *arg = colon ? colon + 1 : payload.data + payload.len;
    size_t arg_len = payload.len - (size_t)(arg - payload.data);
    if (is("echo", payload)) return wasmq_ok(arg, arg_len);
    if (is("stack", payload)) return from_stack();
    if (is("big", payload)) {
        size_t n = (size_t)strtoul(arg, NULL, 10);
        char *out = malloc(n);
        for (size_t i = 0; i < n; i++) out[i] = (char)(i % 251);
        return wasmq_ok_take(out, n);
    }
    if (is("okf", payload)) return wasmq_okf("%s=%d", "answer", 42);
    if (is("empty", payload)) return wasmq_ok(NULL, 0);
    if (is("nul", payload)) return wasmq_okf("%d", payload.data[payload.len] == '\0');
    /* The argument lives in the payload, which the SDK frees before it reports. */
    if (is("terminal", payload)) return wasmq_error(arg);
    if (is("retry", payload)) return wasmq_retry(arg);
    if (is("retryf", payload)) return wasmq_retryf("upstream %s after %d tries", arg, 3);
    if (is("progress", payload)) {
        wasmq_progress(10, "started");
        wasmq_progress(42.5, "halfway");
        return wasmq_ok_str("done");
    }
    if (is("nan", payload)) return wasmq_okf("%d", wasmq_progress(__builtin_nan(""), "x"));
    return wasmq_errorf("unknown command %.*s", (int)payload.len, payload.data);
}

WASMQ_HANDLER(handle)
"""

CPP_PROBE = r"""
#include <algorithm>
#include <string>

#include "wasmq.h"

namespace {

wasmq_result reverse(wasmq_bytes payload) {
    std::string text(payload.data, payload.len);
    if (text.empty()) return wasmq_retry("nothing to reverse");
    std::reverse(text.begin(), text.end());
    wasmq_progress(100, "reversed");
    // text dies with this frame; wasmq_ok has copied it.
    return wasmq_ok(text.data(), text.size());
}

}  // namespace

WASMQ_HANDLER(reverse)
"""

ZIG_PROBE = r"""
const std = @import("std");
const wasmq = @import("wasmq");

fn handle(allocator: std.mem.Allocator, payload: []const u8) wasmq.Error![]const u8 {
    const colon = std.mem.indexOfScalar(u8, payload, ':') orelse payload.len;
    const command = payload[0..colon];
    const arg = if (colon < payload.len) payload[colon + 1 ..] else "";
    const eql = std.mem.eql;
    // A slice of the payload: the SDK keeps the payload until the host has the result.
    if (eql(u8, command, "echo")) return arg;
    if (eql(u8, command, "big")) {
        const n = std.fmt.parseInt(usize, arg, 10) catch return error.BadSize;
        const out = try allocator.alloc(u8, n);
        for (out, 0..) |*b, i| b.* = @intCast(i % 251);
        return out;
    }
    if (eql(u8, command, "garbage")) {
        // Many allocations, most abandoned: the arena holds them until the task ends.
        var kept: []u8 = &.{};
        for (0..2000) |i| {
            const chunk = try allocator.alloc(u8, 4096);
            @memset(chunk, @intCast(i % 256));
            if (i == 1999) kept = chunk[0..16];
        }
        return kept;
    }
    if (eql(u8, command, "empty")) return "";
    if (eql(u8, command, "terminal")) return wasmq.fail(.terminal, "{s}", .{arg});
    if (eql(u8, command, "retry")) return wasmq.fail(.retryable, "{s}", .{arg});
    if (eql(u8, command, "error")) return error.UpstreamUnavailable;
    if (eql(u8, command, "progress")) {
        wasmq.progress(10, "started");
        wasmq.progress(42.5, "halfway");
        return "done";
    }
    if (eql(u8, command, "print")) {
        wasmq.print("printed {d}\n", .{arg.len});
        return "ok";
    }
    if (eql(u8, command, "json")) {
        const In = struct { a: i64, b: i64 };
        const in = try wasmq.parseJson(In, allocator, arg);
        return wasmq.toJson(allocator, .{ .sum = in.a + in.b });
    }
    return wasmq.fail(.terminal, "unknown command {s}", .{command});
}

comptime {
    wasmq.handle(handle);
}
"""


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def build(path: Path, cache: Path) -> wasmtime.Module:
    """``path`` compiled by its real adapter and checked against the task contract."""
    data = compiler.adapter_for(path, "go", cache).compile(path, timeout=600, output_limit=64 << 20)
    return compile_checked(get_engine(), data)


def build_source(
    name: str, text: str, cache: Path, factory: pytest.TempPathFactory
) -> tuple[str, wasmtime.Module]:
    path = factory.mktemp("sdk-probe") / name
    path.write_text(text)
    return name, build(path, cache)


def imports(module: wasmtime.Module) -> set[tuple[str, str]]:
    return {(i.module, i.name or "") for i in module.imports}


@pytest.fixture(scope="module")
def c_probe(
    toolchain_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, wasmtime.Module]:
    return build_source("probe.c", C_PROBE, toolchain_cache, tmp_path_factory)


@pytest.fixture(scope="module")
def zig_probe(
    toolchain_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, wasmtime.Module]:
    return build_source("probe.zig", ZIG_PROBE, toolchain_cache, tmp_path_factory)


@pytest.fixture(scope="module", params=["c", "zig"])
def probe(
    request: pytest.FixtureRequest,
) -> tuple[str, wasmtime.Module]:
    built: tuple[str, wasmtime.Module] = request.getfixturevalue(f"{request.param}_probe")
    return built


def run(sandbox: Sandbox, probe: tuple[str, wasmtime.Module], payload: bytes) -> Outcome:
    # The file name stands in for the digest: the sandbox caches by it.
    name, module = probe
    return sandbox.run(module, name, payload, LIMITS, task_name=name.replace(".", "_"))


def test_echo(sandbox: Sandbox, probe: tuple[str, wasmtime.Module]) -> None:
    outcome = run(sandbox, probe, b"echo:hello, \xffworld")
    assert outcome.ok, outcome.message
    assert outcome.result == b"hello, \xffworld"
    assert outcome.progress is None
    empty = run(sandbox, probe, b"empty")
    assert (empty.ok, empty.result) == (True, b"")


def test_large_payload_and_result_intact(
    sandbox: Sandbox, probe: tuple[str, wasmtime.Module]
) -> None:
    blob = pattern(MIB)
    echoed = run(sandbox, probe, b"echo:" + blob)
    assert echoed.ok, echoed.message
    assert echoed.result == blob
    big = run(sandbox, probe, f"big:{MIB}".encode())
    assert big.ok, big.message
    assert big.result == blob


def test_terminal_and_retryable_errors(
    sandbox: Sandbox, probe: tuple[str, wasmtime.Module]
) -> None:
    terminal = run(sandbox, probe, b"terminal:invalid request, giving up")
    assert (terminal.kind, terminal.retryable) == ("handler", False)
    assert terminal.message == "invalid request, giving up"
    assert terminal.result == b""
    retry = run(sandbox, probe, b"retry:upstream unavailable")
    assert (retry.kind, retry.retryable) == ("handler", True)
    assert retry.message == "upstream unavailable"
    unknown = run(sandbox, probe, b"nonsense")
    assert (unknown.kind, unknown.retryable) == ("handler", False)
    assert unknown.message == "unknown command nonsense"


def test_long_error_message_is_cut_whole(
    sandbox: Sandbox, probe: tuple[str, wasmtime.Module]
) -> None:
    # 1 + 600 two-byte characters: the host keeps 1024 bytes, which end mid-character.
    outcome = run(sandbox, probe, ("terminal:x" + "é" * 600).encode())
    assert (outcome.kind, outcome.retryable) == ("handler", False)
    assert outcome.message == "x" + "é" * 511 + "…"


def test_progress_keeps_the_last_report(
    sandbox: Sandbox, probe: tuple[str, wasmtime.Module]
) -> None:
    outcome = run(sandbox, probe, b"progress")
    assert outcome.ok, outcome.message
    assert outcome.result == b"done"
    assert outcome.progress == (42.5, "halfway")


def test_c_result_built_on_the_stack_comes_back_intact(
    sandbox: Sandbox, c_probe: tuple[str, wasmtime.Module]
) -> None:
    outcome = run(sandbox, c_probe, b"stack")
    assert outcome.ok, outcome.message
    assert outcome.result == bytes(ord("a") + i % 26 for i in range(8192))


def test_c_helpers(sandbox: Sandbox, c_probe: tuple[str, wasmtime.Module]) -> None:
    assert run(sandbox, c_probe, b"okf").result == b"answer=42"
    # The payload is followed by a NUL for string functions.
    assert run(sandbox, c_probe, b"nul").result == b"1"
    # A NaN progress value is refused with EINVAL, and the task goes on.
    nan = run(sandbox, c_probe, b"nan")
    assert (nan.ok, nan.result, nan.progress) == (True, b"28", None)
    formatted = run(sandbox, c_probe, b"retryf:down")
    assert (formatted.kind, formatted.retryable) == ("handler", True)
    assert formatted.message == "upstream down after 3 tries"


def test_zig_errors_json_and_output(
    sandbox: Sandbox, zig_probe: tuple[str, wasmtime.Module]
) -> None:
    # A plain Zig error is retryable, named by its error name.
    plain = run(sandbox, zig_probe, b"error")
    assert (plain.kind, plain.retryable, plain.message) == ("handler", True, "UpstreamUnavailable")
    summed = run(sandbox, zig_probe, b'json:{"a": 2, "b": 40, "c": "ignored"}')
    assert summed.ok, summed.message
    assert json.loads(summed.result) == {"sum": 42}
    bad = run(sandbox, zig_probe, b'json:{"a": 2,')
    assert (bad.kind, bad.retryable) == ("handler", False)
    assert bad.message == (
        "the payload is not the JSON this task takes: UnexpectedEndOfInput at line 1, column 9"
    )
    printed = run(sandbox, zig_probe, b"print:abc")
    assert (printed.result, printed.stdout) == (b"ok", b"printed 3\n")
    garbage = run(sandbox, zig_probe, b"garbage")
    assert garbage.ok, garbage.message
    assert garbage.result == bytes([1999 % 256]) * 16


def test_cpp_handler_uses_the_same_header(
    sandbox: Sandbox, toolchain_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cpp = build_source("probe.cpp", CPP_PROBE, toolchain_cache, tmp_path_factory)
    reversed_ = run(sandbox, cpp, b"stressed")
    assert reversed_.ok, reversed_.message
    assert (reversed_.result, reversed_.progress) == (b"desserts", (100.0, "reversed"))
    empty = run(sandbox, cpp, b"")
    assert (empty.kind, empty.retryable, empty.message) == ("handler", True, "nothing to reverse")


def test_imports_follow_what_the_handler_uses(
    toolchain_cache: Path, c_probe: tuple[str, wasmtime.Module]
) -> None:
    """A handler that cannot fail and reports no progress imports nothing from wasmq, so it
    also runs where the host functions are unknown."""
    assert {("wasmq", "fail"), ("wasmq", "progress")} <= imports(c_probe[1])
    echo = build(TASKS / "echo_c.c", toolchain_cache)
    assert not {module for module, _ in imports(echo)} & {"wasmq"}


def test_sdk_digest_is_part_of_the_compile_key() -> None:
    """Changing an SDK rebuilds its handlers: its digest is in the toolchain version."""
    assert ZigCAdapter().version().endswith(f"wasmq-sdk {sdk.digest('c')}")
    assert ZigCppAdapter().version().endswith(f"wasmq-sdk {sdk.digest('c')}")
    assert ZigAdapter().version().endswith(f"wasmq-sdk {sdk.digest('zig')}")
    assert sdk.digest("c") != sdk.digest("zig")


def test_word_count_example_through_the_registry(
    settings: Settings,
    redis_client: redis.Redis,
    toolchain_cache: Path,
    sandbox: Sandbox,
) -> None:
    forget_memory()
    registry = Registry(settings, redis_client, toolchain_cache=toolchain_cache)
    record = registry.register(TASKS / "word_count.zig").record
    assert (record.name, record.language, record.toolchain) == ("word_count", "zig", "zig")
    assert record.toolchain_version.endswith(f"wasmq-sdk {sdk.digest('zig')}")
    module = registry.load_module(record.digest)

    def count(payload: bytes) -> Outcome:
        return sandbox.run(module, record.digest, payload, LIMITS, task_name=record.name)

    text = "one two  three\nfour\n\nfive six"
    outcome = count(json.dumps({"text": text}).encode())
    assert outcome.ok, outcome.message
    assert json.loads(outcome.result) == {"words": 6, "lines": 4}
    assert outcome.progress == (100.0, "counted")
    # Long enough for progress reports along the way; the last one is the end.
    long = count(json.dumps({"text": "word " * 100_000}).encode())
    assert json.loads(long.result) == {"words": 100_000, "lines": 1}
    assert long.progress == (100.0, "counted")
    bad = count(b'{"text": ')
    assert (bad.kind, bad.retryable) == ("handler", False)
    assert bad.message.startswith("the payload is not the JSON this task takes: ")
    missing = count(b'{"name": "Ada"}')
    assert (missing.kind, missing.retryable) == ("handler", False)
    assert "MissingField" in missing.message
