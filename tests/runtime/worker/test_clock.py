"""Handlers see the real clock: a busy-wait on WASI ``clock_time_get`` for 200 ms (what
``time.Since`` in Go and ``clock_gettime`` in C compile to) really takes about 200 ms.

Bounds are generous (150 ms to 2 s) so a loaded machine does not make them flaky.
"""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path

import pytest
import redis

import compiler
from runtime.errors import ToolchainMissing
from runtime.modules.registry import Registry
from runtime.queue.broker import Broker
from runtime.queue.task import Task
from runtime.sandbox import Sandbox, TaskLimits
from runtime.settings import Settings
from runtime.worker.loop import Worker

# Payload: u32 milliseconds, u32 clock id (0 realtime, 1 monotonic). Result: u64 of the
# nanoseconds the guest saw pass, then u64 of its first clock reading.
SPIN_WAT = """
(module
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock_time_get (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func $now (param $clock i32) (result i64)
    (if (call $clock_time_get (local.get $clock) (i64.const 1) (i32.const 0))
      (then (unreachable)))
    (i64.load (i32.const 0)))
  (func (export "execute") (param $p i32) (param $l i32) (result i64)
    (local $clock i32) (local $wait i64) (local $start i64) (local $elapsed i64)
    (local.set $wait (i64.mul (i64.extend_i32_u (i32.load (local.get $p))) (i64.const 1000000)))
    (local.set $clock (i32.load offset=4 (local.get $p)))
    (local.set $start (call $now (local.get $clock)))
    (block $done
      (loop $spin
        (local.set $elapsed (i64.sub (call $now (local.get $clock)) (local.get $start)))
        (br_if $done (i64.ge_u (local.get $elapsed) (local.get $wait)))
        (br $spin)))
    (i64.store (i32.const 16) (local.get $elapsed))
    (i64.store (i32.const 24) (local.get $start))
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 16))))
"""

C_SPIN = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint8_t out[8];

__attribute__((export_name("alloc"))) uint32_t alloc(uint32_t size) {
    return (uint32_t)(uintptr_t)malloc(size ? size : 1);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

__attribute__((export_name("execute"))) uint64_t execute(uint32_t ptr, uint32_t len) {
    uint32_t ms = 0;
    memcpy(&ms, (void *)(uintptr_t)ptr, len < 4 ? len : 4);
    int64_t start = now_ns(), elapsed = 0;
    while ((elapsed = now_ns() - start) < (int64_t)ms * 1000000) {
    }
    memcpy(out, &elapsed, 8);
    return ((uint64_t)(uintptr_t)out << 32) | 8;
}
"""


def limits() -> TaskLimits:
    return TaskLimits(timeout=10.0, memory=64 << 20, result=1024, logs=1024)


@pytest.fixture
def registry(
    settings: Settings, redis_client: redis.Redis, tmp_path_factory: pytest.TempPathFactory
) -> Registry:
    # The session-wide toolchain cache test_registry.py uses: zig builds its libc once.
    cache = tmp_path_factory.getbasetemp() / "toolchain-cache"
    cache.mkdir(exist_ok=True)
    return Registry(settings, redis_client, toolchain_cache=cache)


@pytest.mark.parametrize("clock", [0, 1], ids=["realtime", "monotonic"])
def test_busy_wait_takes_real_time(
    registry: Registry, settings: Settings, tmp_path: Path, clock: int
) -> None:
    source = tmp_path / "spin.wat"
    source.write_text(SPIN_WAT)
    record = registry.register(source).record
    module = registry.load_module(record.digest)
    sandbox = Sandbox(settings)
    try:
        before_ns = time.time_ns()
        started = time.monotonic()
        outcome = sandbox.run(
            module, record.digest, struct.pack("<II", 200, clock), limits(), task_name="spin"
        )
        wall = time.monotonic() - started
    finally:
        sandbox.close()
    assert outcome.ok, outcome.message
    seen_ns, first_reading = struct.unpack("<QQ", outcome.result)
    assert 0.15 <= wall <= 2.0, wall
    assert 200e6 <= seen_ns <= 2e9, seen_ns
    if clock == 0:
        # The realtime clock is the host's wall clock, not a clock starting at zero.
        assert abs(first_reading - before_ns) < 2e9


def test_worker_reports_the_real_duration(
    registry: Registry, settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    source = tmp_path / "spin.wat"
    source.write_text(SPIN_WAT)
    registry.register(source)
    broker = Broker(redis_client, settings)
    broker.enqueue(Task(id="clock", task_name="spin", payload=struct.pack("<II", 200, 1)))
    worker = Worker(settings, ["default"], client=redis_client, burst=True)
    thread = threading.Thread(target=worker.run, args=(threading.Event(),), daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert worker.stats.done == 1
    duration = float(redis_client.hget("task_metadata:clock", "duration_ms") or 0)
    assert 150 <= duration <= 2000, duration


@pytest.mark.toolchain
def test_c_clock_gettime_busy_wait(registry: Registry, settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "spin_c.c"
    source.write_text(C_SPIN)
    try:
        compiler.adapter_for(source)
    except ToolchainMissing as exc:
        pytest.skip(f"the C handler needs zig (the zig extra): {exc}")
    record = registry.register(source).record
    module = registry.load_module(record.digest)
    sandbox = Sandbox(settings)
    try:
        started = time.monotonic()
        outcome = sandbox.run(
            module, record.digest, struct.pack("<I", 200), limits(), task_name="spin_c"
        )
        wall = time.monotonic() - started
    finally:
        sandbox.close()
    assert outcome.ok, outcome.message
    (seen_ns,) = struct.unpack("<q", outcome.result)
    assert 0.15 <= wall <= 2.0, wall
    assert 200e6 <= seen_ns <= 2e9, seen_ns
