"""The sandbox running real Go, C and Zig modules built by the real toolchains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import wasmtime

import compiler
from runtime.errors import ToolchainMissing
from runtime.sandbox import Outcome, Sandbox, TaskLimits
from runtime.sandbox.engine import get_engine
from tests.support.paths import ROOT

pytestmark = pytest.mark.toolchain

TASKS = ROOT / "tasks"
LIMITS = TaskLimits(timeout=20.0, memory=128 << 20, result=1 << 20, logs=1 << 20)

# Probes of sandbox behaviour from inside real language runtimes.
GO_PROBE = r"""
package main

import (
	"fmt"
	"os"
	"time"
	"unsafe"
)

var live = map[uintptr][]byte{}

func keep(buf []byte) uint32 {
	if len(buf) == 0 {
		buf = make([]byte, 1)
	}
	ptr := uintptr(unsafe.Pointer(&buf[0]))
	live[ptr] = buf
	return uint32(ptr)
}

//go:wasmexport alloc
func alloc(size uint32) uint32 { return keep(make([]byte, size)) }

var hoard [][]byte

//go:wasmexport execute
func execute(ptr, size uint32) uint64 {
	mode := string(unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), size))
	out := "ok"
	switch mode {
	case "sleep":
		start := time.Now()
		time.Sleep(30 * time.Millisecond)
		out = fmt.Sprintf("slept %v", time.Since(start) >= 30*time.Millisecond)
	case "panic":
		panic("boom")
	case "oom":
		for {
			hoard = append(hoard, make([]byte, 1<<20))
		}
	case "env":
		_, err := os.ReadFile("/etc/passwd")
		out = fmt.Sprintf("env=%d args=%q open=%v", len(os.Environ()), os.Args, err != nil)
	}
	fmt.Println(out)
	buf := []byte(out)
	return uint64(keep(buf))<<32 | uint64(len(buf))
}

func main() {}
"""

C_PROBE = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define EXPORT(name) __attribute__((export_name(name)))

EXPORT("alloc") uint32_t alloc(uint32_t size) { return (uint32_t)(uintptr_t)malloc(size ? size : 1); }

static char out[256];
static char *volatile sink;  /* keeps the compiler from eliding the allocations */

EXPORT("execute") uint64_t execute(uint32_t ptr, uint32_t len) {
    const char *mode = (const char *)(uintptr_t)ptr;
    int n = 0;
    if (len == 5 && memcmp(mode, "abort", 5) == 0) {
        fprintf(stderr, "about to abort\n");
        abort();
    } else if (len == 3 && memcmp(mode, "oom", 3) == 0) {
        for (;;) {
            char *p = malloc(1 << 20);
            if (!p) { fprintf(stderr, "malloc failed\n"); abort(); }
            memset(p, 1, 1 << 20);
            sink = p;
        }
    } else {
        FILE *f = fopen("/etc/passwd", "r");
        const char *home = getenv("HOME");
        n = snprintf(out, sizeof out, "open=%s home=%s", f ? "yes" : "no", home ? home : "none");
    }
    return ((uint64_t)(uintptr_t)out << 32) | (uint32_t)n;
}
"""


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> object:
    cache = tmp_path_factory.getbasetemp() / "toolchain-cache"
    cache.mkdir(exist_ok=True)
    built: dict[Path, wasmtime.Module] = {}

    def _build(source: Path) -> wasmtime.Module:
        if source not in built:
            try:
                adapter = compiler.adapter_for(source, "go", cache)
            except ToolchainMissing as exc:
                pytest.skip(f"toolchain missing: {exc}")
            data = adapter.compile(source, timeout=600, output_limit=64 << 20)
            built[source] = wasmtime.Module(get_engine(), data)
        return built[source]

    return _build


def run(sandbox: Sandbox, build: object, source: Path, payload: bytes) -> Outcome:
    module = build(source)  # type: ignore[operator]
    return sandbox.run(module, str(source), payload, LIMITS, task_name=source.stem)


@pytest.mark.parametrize(
    ("source", "language"),
    [("task_1.go", "Go"), ("task_1_c.c", "C"), ("task_1_zig.zig", "Zig")],
)
def test_reference_task(sandbox: Sandbox, build: object, source: str, language: str) -> None:
    outcome = run(sandbox, build, TASKS / source, b'{"name": "Ada"}')
    assert outcome.ok, outcome.message
    assert json.loads(outcome.result) == {"message": "Hello, Ada!"}
    assert outcome.stdout == f"Hello, Ada! (from task_1 in {language})\n".encode()
    again = run(sandbox, build, TASKS / source, b"{}")
    assert json.loads(again.result) == {"message": "Hello, World!"}


@pytest.mark.parametrize("source", ["flaky.go", "flaky_c.c"])
def test_retry_convention_examples(sandbox: Sandbox, build: object, source: str) -> None:
    path = TASKS / source
    ok = run(sandbox, build, path, b'{"mode": "ok", "name": "n"}')
    assert ok.ok, ok.message
    assert json.loads(ok.result)["ok"] is True
    # The SDKs report errors through wasmq.fail: retryable unless marked terminal.
    retry = run(sandbox, build, path, b'{"mode": "retry"}')
    assert (retry.kind, retry.retryable) == ("handler", True)
    assert retry.message == "upstream unavailable, asking for a retry"
    fail = run(sandbox, build, path, b'{"mode": "fail"}')
    assert (fail.kind, fail.retryable) == ("handler", False)
    assert fail.message == "invalid request, giving up"


def test_go_runtime_behaviour(sandbox: Sandbox, build: object, tmp_path: Path) -> None:
    source = tmp_path / "probe.go"
    source.write_text(GO_PROBE)
    slept = run(sandbox, build, source, b"sleep")
    assert slept.ok, slept.message
    assert slept.result == b"slept true"
    env = run(sandbox, build, source, b"env")
    assert env.result == b'env=0 args=["probe"] open=true'
    # A panic in a //go:wasmexport function traps (after printing it): retried.
    panic = run(sandbox, build, source, b"panic")
    assert (panic.kind, panic.trap_code, panic.retryable) == ("trap", "unreachable", True)
    assert "panic: boom" in panic.message
    oom = sandbox.run(
        build(source),  # type: ignore[operator]
        "probe",
        b"oom",
        TaskLimits(timeout=20.0, memory=32 << 20, result=1 << 20, logs=1 << 20),
        task_name="probe",
    )
    assert oom.kind == "memory_limit", oom.message
    assert run(sandbox, build, source, b"plain").result == b"ok"


def test_c_runtime_behaviour(sandbox: Sandbox, build: object, tmp_path: Path) -> None:
    source = tmp_path / "probe.c"
    source.write_text(C_PROBE)
    plain = run(sandbox, build, source, b"plain")
    assert plain.result == b"open=no home=none"
    aborted = run(sandbox, build, source, b"abort")
    assert (aborted.kind, aborted.trap_code, aborted.retryable) == ("trap", "unreachable", True)
    assert "about to abort" in aborted.message
    oom = run(sandbox, build, source, b"oom")
    assert oom.kind == "memory_limit", oom.message
    assert run(sandbox, build, source, b"plain").ok
