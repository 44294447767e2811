"""The initializer runs inside a task's limits: every way it can fail or misbehave ends,
within its deadline and memory limit, as NotSnapshotted; and the snapshot knows whether
the state it keeps came from random bytes or the clock."""

from __future__ import annotations

import hashlib
import struct
import time
from dataclasses import replace

import pytest
import wasmtime

from runtime.sandbox import Sandbox, TaskLimits
from runtime.sandbox.engine import get_engine
from runtime.snapshot import NotSnapshotted, take
from runtime.snapshot.initialize import REALTIME_START
from tests.runtime.snapshot.conftest import LIMITS, RunTask, Snap, Wat

IMPORTS = """
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (import "wasmq" "fail" (func $fail (param i32 i32 i32) (result i32)))
"""


def task(initialize: str, extra: str = "", execute: str = "(i64.const 0)") -> str:
    return f"""(module
  {IMPORTS}
  (memory (export "memory") 1)
  (global $g (mut i64) (i64.const 0))
  (data (i32.const 16) "hello\\n")
  {extra}
  (func (export "_initialize") {initialize})
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64) {execute}))"""


def refused(data: bytes, limits: TaskLimits = LIMITS, max_size: int = 0) -> str:
    with pytest.raises(NotSnapshotted) as caught:
        take(data, hashlib.sha256(data).hexdigest(), "t", limits, max_size)
    message = str(caught.value)
    assert "\n" not in message
    return message


WRITE = """
  (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 6))
  (drop (call $fd_write (i32.const {fd}) (i32.const 0) (i32.const 1) (i32.const 8)))"""


@pytest.mark.parametrize(
    ("initialize", "extra", "expected"),
    [
        ("unreachable", "", "its initialization failed: "),
        ("(call $deep)", "(func $deep (call $deep))", "its initialization failed: "),
        ("(drop (i32.load (i32.const 65534)))", "", "its initialization failed: "),
        ("(call $proc_exit (i32.const 3))", "", "its initialization exited with code 3"),
        ("(call $proc_exit (i32.const 0))", "", "its initialization exited with code 0"),
        (
            "(drop (call $fail (i32.const 0) (i32.const 16) (i32.const 5)))",
            "",
            "its initialization reported an error (wasmq.fail)",
        ),
        (WRITE.format(fd=1), "", "its initialization writes output, which a snapshot would"),
        (WRITE.format(fd=2), "", "its initialization writes output, which a snapshot would"),
        ("", "(func $s unreachable) (start $s)", "its initialization failed: "),
    ],
    ids=[
        "trap",
        "stack-overflow",
        "out-of-bounds",
        "exit-3",
        "exit-0",
        "wasmq-fail",
        "stdout",
        "stderr",
        "start-function-trap",
    ],
)
def test_an_initializer_that_fails_is_refused(
    wat: Wat, initialize: str, extra: str, expected: str
) -> None:
    assert refused(wat(task(initialize, extra))).startswith(expected)


def test_a_nan_left_in_a_float_global_is_refused(wat: Wat) -> None:
    extra = "(global $nan (mut f64) (f64.const 0))"
    message = refused(wat(task("(global.set $nan (f64.const nan))", extra)))
    assert message == "global 1 holds NaN after its initialization"


SHORT = replace(LIMITS, timeout=0.5)

ENDLESS = {
    "loop": "(loop $l (br $l))",
    "clock-calls": "(loop $l (drop (call $clock (i32.const 1) (i64.const 0) (i32.const 0))) (br $l))",
    "random-calls": "(loop $l (drop (call $random (i32.const 0) (i32.const 65536))) (br $l))",
    "yield-calls": "(loop $l (drop (call $yield)) (br $l))",
    # one hour's sleep: a clock subscription at 64 (relative), its event at 128
    "sleep": """
      (i32.store8 (i32.const 72) (i32.const 0))
      (i32.store (i32.const 80) (i32.const 1))
      (i64.store (i32.const 88) (i64.const 3600000000000))
      (drop (call $poll (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 192)))""",
}


@pytest.mark.parametrize("initialize", ENDLESS.values(), ids=ENDLESS.keys())
def test_an_endless_initializer_ends_at_its_deadline(wat: Wat, initialize: str) -> None:
    data = wat(task(initialize))
    started = time.monotonic()
    message = refused(data, SHORT)
    assert time.monotonic() - started < 10
    assert message == "its initialization ran past the task time limit (0.5 s)"


def test_an_endless_start_function_ends_at_its_deadline(wat: Wat) -> None:
    data = wat(task("", "(func $s (loop $l (br $l))) (start $s)"))
    started = time.monotonic()
    message = refused(data, SHORT)
    assert time.monotonic() - started < 10
    assert message == "its initialization ran past the task time limit (0.5 s)"


def test_an_initializer_that_loops_only_on_a_later_clock_still_ends(wat: Wat) -> None:
    """The third run shifts the clocks by a day: each run has its own deadline."""
    later = REALTIME_START + 3600 * 10**9
    initialize = f"""
      (drop (call $clock (i32.const 0) (i64.const 0) (i32.const 0)))
      (if (i64.gt_u (i64.load (i32.const 0)) (i64.const {later}))
        (then (loop $l (br $l))))"""
    started = time.monotonic()
    message = refused(wat(task(initialize)), SHORT)
    assert time.monotonic() - started < 10
    assert message == "its initialization ran past the task time limit (0.5 s)"


def test_a_memory_bomb_stays_within_the_memory_limit(wat: Wat, sandbox: Sandbox) -> None:
    """Grows a page at a time up to 4 GiB, then asks for all of it at once, then writes
    to the last byte it got: memory.grow fails at the limit, so the snapshot holds exactly
    the limit (refusing it would be as good; its memory must never exceed the limit)."""
    initialize = """
      (local $i i32)
      (loop $l
        (drop (memory.grow (i32.const 1)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 65536))))
      (drop (memory.grow (i32.const 65535)))
      (i32.store8 (i32.sub (i32.shl (memory.size) (i32.const 16)) (i32.const 1)) (i32.const 9))"""
    execute = "(i64.or (i64.shl (i64.const 8388607) (i64.const 32)) (i64.const 1))"
    data = wat(task(initialize, execute=execute))
    small = replace(LIMITS, memory=8 << 20)
    snapshot = take(data, hashlib.sha256(data).hexdigest(), "t", small)
    assert snapshot.memory_bytes == 8 << 20
    module = wasmtime.Module(get_engine(False), snapshot.data)
    memory = module.exports[0].type
    assert isinstance(memory, wasmtime.MemoryType)
    assert memory.limits.min * 65536 == snapshot.memory_bytes
    assert len(snapshot.data) < 4096  # the zeros are not written out
    outcome = sandbox.run(module, "bomb", b"", small, task_name="t")
    assert outcome.ok, outcome.message
    assert outcome.result == b"\x09"


def test_a_snapshot_over_the_size_limit_is_refused(wat: Wat) -> None:
    initialize = "(memory.fill (i32.const 0) (i32.const 7) (i32.const 20000))"
    data = wat(task(initialize))
    message = refused(data, LIMITS, max_size=10_000)
    assert message.startswith("its snapshot would be ")
    assert "over the largest module (10000 bytes, WASMQ_COMPILE_OUTPUT_LIMIT)" in message
    assert take(data, "d", "t", LIMITS, max_size=30_000).data


# -- what the kept state came from ---------------------------------------------------------

RANDOM_INTO_MEMORY = "(drop (call $random (i32.const 256) (i32.const 16)))"
CLOCK_INTO_MEMORY = "(drop (call $clock (i32.const 0) (i64.const 0) (i32.const 256)))"


@pytest.mark.parametrize(
    ("initialize", "kept"),
    [
        (RANDOM_INTO_MEMORY, ("random",)),
        (
            "(drop (call $random (i32.const 256) (i32.const 8)))"
            "(global.set $g (i64.load (i32.const 256)))"
            "(i64.store (i32.const 256) (i64.const 0))",
            ("random",),
        ),
        (CLOCK_INTO_MEMORY, ("clock",)),
        ("(drop (call $clock (i32.const 1) (i64.const 0) (i32.const 256)))", ("clock",)),
        (RANDOM_INTO_MEMORY + CLOCK_INTO_MEMORY, ("random", "clock")),
        ("(i32.store (i32.const 256) (i32.const 42)) (global.set $g (i64.const -1))", ()),
        # read, then thrown away: nothing kept came from them
        (
            RANDOM_INTO_MEMORY
            + CLOCK_INTO_MEMORY
            + "(memory.fill (i32.const 256) (i32.const 0) (i32.const 16))",
            (),
        ),
    ],
    ids=["random", "random-global", "clock", "monotonic", "both", "neither", "discarded"],
)
def test_kept_names_the_inputs_the_state_came_from(
    wat: Wat, snap: Snap, initialize: str, kept: tuple[str, ...]
) -> None:
    assert snap(wat(task(initialize))).kept == kept


def test_the_snapshots_monotonic_time_is_before_any_tasks(
    wat: Wat, snap: Snap, run_task: RunTask
) -> None:
    execute = """
      (drop (call $clock (i32.const 1) (i64.const 0) (i32.const 264)))
      (i64.or (i64.shl (i64.const 256) (i64.const 32)) (i64.const 16))"""
    initialize = "(drop (call $clock (i32.const 1) (i64.const 0) (i32.const 256)))"
    snapshot = snap(wat(task(initialize, execute=execute)))
    assert snapshot.kept == ("clock",)
    outcome = run_task(snapshot.data, b"")
    at_init, in_task = struct.unpack("<QQ", outcome.result)
    assert 0 < at_init < in_task
    assert in_task - at_init > 10**6  # not the virtual clock still ticking by microseconds


def test_random_bytes_are_fresh_in_every_task_on_a_snapshot(
    wat: Wat, snap: Snap, run_task: RunTask
) -> None:
    execute = """
      (drop (call $random (i32.const 512) (i32.const 16)))
      (i64.or (i64.shl (i64.const 256) (i64.const 32)) (i64.const 272))"""
    snapshot = snap(wat(task(RANDOM_INTO_MEMORY, execute=execute)))
    first, second = (run_task(snapshot.data, b"").result for _ in range(2))
    assert first[:16] == second[:16] != bytes(16)  # drawn once, by the initializer
    assert first[256:] != second[256:]  # drawn by each task
