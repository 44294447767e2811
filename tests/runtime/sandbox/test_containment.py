"""Containment: a hostile handler cannot exceed its limits through the host.

Each module in ``wat/hostile/`` attacks one class of host work (huge or many buffers,
huge random fills, many subscriptions, tight host-call loops, tables, memories, floods
of tiny writes). The heavy ones run in a process of their own so its peak RSS can be
measured (:mod:`tests.runtime.sandbox.containment_probe`). Every run must end in a recorded
outcome within ``bound(limit)`` of its start, grow the process by no more than the
task's limits allow, and leave the sandbox able to run the next task.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import wasmtime

from runtime.client import Client
from runtime.errors import RegistryError
from runtime.modules.contract import compile_checked
from runtime.modules.registry import Registry
from runtime.queue import keys
from runtime.sandbox import Capabilities, Sandbox, TaskLimits, capture
from runtime.sandbox.engine import get_engine
from runtime.sandbox.wasi import EINVAL
from runtime.settings import Settings
from runtime.worker.loop import Worker
from tests.support.paths import ROOT, WAT

HOSTILE = WAT / "hostile"
MIB = 1 << 20
#: What the probe's tasks may keep: log limit + result limit (1 MiB each).
KEPT = 2 * MIB
#: Host memory a task may cost beyond its limits: stores, instance, bookkeeping.
SLACK = 24 * MIB


def bound(limit: float) -> float:
    """The latest a task with time limit ``limit`` may end: max(10 %, 100 ms) after it."""
    return limit + max(0.1 * limit, 0.1)


def probe(*specs: str, flags: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.runtime.sandbox.containment_probe", *flags, *specs],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == len(specs), proc.stdout + proc.stderr[-3000:]
    return {r["name"]: r for r in reports}


# name: (time limit s, memory limit MiB, expected kind)
CASES: dict[str, tuple[float, int, str]] = {
    "iovecs_million": (2.0, 128, "ok"),
    "iovecs_whole_memory": (1.5, 128, "timeout"),
    "random_huge": (0.5, 600, "timeout"),
    "poll_million": (2.0, 128, "ok"),
    "poll_loop": (1.5, 128, "timeout"),
    "clock_loop": (1.5, 128, "timeout"),
    "guest_abi_loop": (1.5, 128, "timeout"),
    "empty_writes": (20.0, 128, "ok"),
    "alternating_bytes": (20.0, 128, "ok"),
    "table_grow": (2.0, 128, "ok"),
    "table_huge": (2.0, 128, "instantiate"),
    "tables_many": (2.0, 128, "instantiate"),
}

FLAVOURS = {
    "fast": (),
    "public-api+thread-ticker": ("--public", "--thread-ticker"),
    "capabilities": ("--capabilities",),
}


@pytest.fixture(scope="module", params=list(FLAVOURS))
def probed(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    specs = [f"{name}:{t}:{m}" for name, (t, m, _) in CASES.items()]
    return probe(*specs, flags=FLAVOURS[request.param])


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.processes
@pytest.mark.slow
def test_hostile_module_ends_within_its_limits(
    probed: dict[str, dict[str, Any]], name: str
) -> None:
    timeout, memory_mib, kind = CASES[name]
    report = probed[name]
    assert report["kind"] == kind, report
    assert report["seconds"] <= bound(timeout), report
    assert report["peak"] <= memory_mib * MIB + KEPT + SLACK, report
    assert report["next_ok"], report


@pytest.mark.processes
def test_probe_flavours_ran_what_they_say() -> None:
    reports = probe("table_grow:1:16", flags=("--public",))
    assert reports["table_grow"]["backend"] == "public"
    assert probe("table_grow:1:16")["table_grow"]["backend"] == "fast"


@pytest.mark.processes
@pytest.mark.slow
def test_host_copies_only_what_is_kept(probed: dict[str, dict[str, Any]]) -> None:
    # 64 MiB buffers, 1024 per call, for 1.5 s: only the log limit is ever copied.
    report = probed["iovecs_whole_memory"]
    assert report["log_bytes"] == MIB
    assert report["log_dropped"] > 64 * MIB
    assert report["peak"] < 128 * MIB


@pytest.mark.processes
@pytest.mark.slow
def test_buffer_and_subscription_counts_are_capped(probed: dict[str, dict[str, Any]]) -> None:
    # A million of either answers EINVAL (as IOV_MAX and RLIMIT_NOFILE do) at once, without
    # reading the arrays (reading them took 0.4-0.7 s and 100-370 MiB).
    for name in ("iovecs_million", "poll_million"):
        assert probed[name]["seconds"] < 0.1, probed[name]
        assert probed[name]["peak"] < 16 * MIB, probed[name]


@pytest.mark.processes
@pytest.mark.slow
def test_logs_are_bounded_in_entries(probed: dict[str, dict[str, Any]]) -> None:
    empty = probed["empty_writes"]
    assert empty["chunks"] == 0 and empty["log_bytes"] == 0
    alternating = probed["alternating_bytes"]
    assert alternating["chunks"] <= capture.MAX_CHUNKS
    assert alternating["log_bytes"] + alternating["log_dropped"] == 100_000
    assert alternating["log_dropped"] > 0


@pytest.mark.processes
@pytest.mark.slow
def test_tables_are_bounded(probed: dict[str, dict[str, Any]]) -> None:
    assert "table" in probed["table_huge"]["message"]
    assert "table count" in probed["tables_many"]["message"]


# -- in-process: results, threads, capabilities ------------------------------------------------


def load(name: str) -> wasmtime.Module:
    path = HOSTILE / f"{name}.wat" if (HOSTILE / f"{name}.wat").exists() else WAT / f"{name}.wat"
    return wasmtime.Module(get_engine(), path.read_text())


def limits(timeout: float = 2.0, memory: int = 64 * MIB) -> TaskLimits:
    return TaskLimits(timeout=timeout, memory=memory, result=MIB, logs=MIB)


def test_capped_calls_answer_einval(sandbox: Sandbox) -> None:
    # Too many buffers or subscriptions, or more bytes than the written count can say.
    for name in ("iovecs_million", "poll_million", "iovecs_overflow"):
        outcome = sandbox.run(load(name), name, b"", limits(memory=128 * MIB), task_name=name)
        assert outcome.ok, outcome.message
        assert int.from_bytes(outcome.result, "little") == EINVAL


def test_table_grow_is_refused_not_allocated(sandbox: Sandbox) -> None:
    outcome = sandbox.run(load("table_grow"), "table_grow", b"", limits(), task_name="t")
    assert outcome.ok, outcome.message
    assert outcome.result == b"\xff\xff\xff\xff"  # table.grow answered -1


@pytest.mark.slow
def test_host_call_loop_cannot_delay_another_tasks_deadline(sandbox: Sandbox) -> None:
    """Tasks hammering the host hold the GIL most of the time; a pure-wasm task on another
    thread still stops on time (the epoch ticker needs no GIL), and so do they. With a
    Python ticker thread starved of the GIL, these ran 10-25 % over their limits."""
    took: dict[str, tuple[str, float]] = {}

    def run(key: str, name: str, timeout: float) -> None:
        t0 = time.monotonic()
        outcome = sandbox.run(load(name), name, b"", limits(timeout), task_name=name)
        took[key] = (outcome.kind, time.monotonic() - t0)

    threads = [threading.Thread(target=run, args=(f"hog{i}", "clock_loop", 4.0)) for i in range(3)]
    threads.append(threading.Thread(target=run, args=("spin", "loop_execute", 2.0)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert took["spin"][0] == "timeout"
    assert took["spin"][1] <= bound(2.0), took
    for i in range(3):
        assert took[f"hog{i}"][0] == "timeout"
        assert took[f"hog{i}"][1] <= bound(4.0), took


@pytest.mark.parametrize("name", ["sleep", "random_huge", "clock_loop"])
def test_capability_tasks_keep_their_deadline(sandbox: Sandbox, name: str, tmp_path: Path) -> None:
    """Tasks granted a directory run on wasmtime's WASI, whose sleeps and random fills
    know nothing of deadlines: ours stand in for those."""
    caps = Capabilities(dirs=[(str(tmp_path), "/data", True)])
    memory = 600 * MIB if name == "random_huge" else 64 * MIB
    payload = struct.pack("<I", 60_000) if name == "sleep" else b""  # a minute's sleep
    t0 = time.monotonic()
    outcome = sandbox.run(
        load(name), name, payload, limits(0.5, memory), task_name=name, capabilities=caps
    )
    assert outcome.kind == "timeout", outcome.message
    assert time.monotonic() - t0 <= bound(0.5)


# -- registration refuses what can never run ------------------------------------------------

NEVER_RUN = {
    "wrong_signature": "import `wasi_snapshot_preview1.fd_write` has type (i32) -> i32",
    "shared_memory": "a shared memory (threads)",
    "two_memories": "more than one memory",
    "imported_memory": "only functions may be imported",
    "gc_array": "GC types",
    "table_huge": "a table of 100000000 elements",
    "tables_many": "defines 8 tables",
    "memory_start_huge": "over the largest memory limit",
}


@pytest.mark.parametrize("name", list(NEVER_RUN))
def test_registration_refuses_what_can_never_run(name: str) -> None:
    data = wasmtime.wat2wasm((HOSTILE / f"{name}.wat").read_text())
    with pytest.raises(RegistryError) as info:
        compile_checked(get_engine(False), data, memory_ceiling=1 << 30)
    assert NEVER_RUN[name] in str(info.value)
    assert "\n" not in str(info.value)


def test_refused_registration_records_nothing(
    settings: Settings, redis_client: redis.Redis
) -> None:
    registry = Registry(settings, redis_client)
    with pytest.raises(RegistryError, match="WASI preview 1 defines it as"):
        registry.register(HOSTILE / "wrong_signature.wat")
    assert redis_client.hget(keys.TASK_REGISTRY, "wrong_signature") is None


def test_the_sandbox_refuses_a_cached_module_that_breaks_the_contract(
    sandbox: Sandbox,
) -> None:
    # A module cached before a rule existed never reaches instantiation.
    outcome = sandbox.run(load("wrong_signature"), "ws", b"", limits(), task_name="ws")
    assert outcome.kind == "instantiate"
    assert "fd_write" in outcome.message


# -- a slow task cannot cost the tasks behind it their attempt --------------------------------


@pytest.mark.slow
def test_tasks_behind_a_slow_task_run_elsewhere_uncharged(
    settings: Settings, redis_client: redis.Redis
) -> None:
    settings = dataclasses.replace(settings, lease_grace=0.3)
    registry = Registry(settings, redis_client)
    registry.register(HOSTILE / "clock_loop.wat")
    registry.register(WAT / "echo.wat")
    stop_a, stop_b = threading.Event(), threading.Event()
    worker_a = Worker(settings, [settings.queue])
    thread_a = threading.Thread(target=worker_a.run, args=(stop_a,), daemon=True)
    thread_a.start()
    with Client(settings=settings) as client:
        # Quick tasks first: a worker claims one task at a time until it has timed its
        # tasks, and batches only once they proved fast.
        warm = [client.enqueue("echo", b"warm") for _ in range(30)]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            redis_client.hget(keys.task(t.id), "task_stage") != b"completed" for t in warm
        ):
            time.sleep(0.01)
        slow, quick = (
            task
            for task, _ in client.broker.enqueue_many(
                [
                    client.task("clock_loop", b"", timeout=4.0, max_retries=0),
                    client.task("echo", b"hi", timeout=0.5, max_retries=0),
                ]
            )
        )
    deadline = time.monotonic() + 10
    while redis_client.llen(keys.pending(settings.queue)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert redis_client.llen(keys.pending(settings.queue)) == 0, "worker A claimed nothing"
    worker_b = Worker(settings, [settings.queue])
    thread_b = threading.Thread(target=worker_b.run, args=(stop_b,), daemon=True)
    thread_b.start()
    try:
        finished: dict[str, bytes] = {}
        deadline = time.monotonic() + 20
        while len(finished) < 2 and time.monotonic() < deadline:
            for task_id in (slow.id, quick.id):
                stage = redis_client.hget(keys.task(task_id), "task_stage")
                if task_id not in finished and stage in (b"completed", b"failed"):
                    finished[task_id] = stage
            time.sleep(0.02)
        assert finished == {slow.id: b"failed", quick.id: b"completed"}
        quick_record = redis_client.hgetall(keys.task(quick.id))
        slow_record = redis_client.hgetall(keys.task(slow.id))
        assert quick_record[b"attempts"] == b"1", quick_record
        assert b"error" not in quick_record, quick_record
        assert slow_record[b"error_kind"] == b"timeout", slow_record
        # The quick task ran elsewhere, without waiting for the slow one to end.
        assert int(quick_record[b"finished_ms"]) < int(slow_record[b"finished_ms"])
    finally:
        stop_a.set()
        stop_b.set()
        thread_a.join(10)
        thread_b.join(10)


def test_capability_tasks_write_granted_files_through_wasmtime(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """fd_write is ours for stdout/stderr and wasmtime's for the files it opened."""
    caps = Capabilities(dirs=[(str(tmp_path), "/data", False)])
    outcome = sandbox.run(
        load("write_file"),
        "write_file",
        b"payload\n",
        limits(),
        task_name="w",
        capabilities=caps,
    )
    assert outcome.ok, outcome.message
    assert outcome.result == b"\x00\x00\x00"
    assert (tmp_path / "out.txt").read_bytes() == b"payload\n"
    assert outcome.stdout == b"payload\n"


# -- the fast path checks what it relies on ------------------------------------------------------


def test_fast_path_names_a_missing_private_symbol(monkeypatch: pytest.MonkeyPatch) -> None:
    from wasmtime import _ffi

    from runtime.sandbox import raw

    assert raw._fast_problem() == ""
    monkeypatch.delattr(_ffi, "wasmtime_func_call_unchecked")
    assert "wasmtime_func_call_unchecked" in raw._fast_problem()
    monkeypatch.delattr(wasmtime.Store, "_context")
    assert "Store._context" in raw._fast_problem()


def test_fast_path_problem_falls_back_to_the_public_api(monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.sandbox import raw

    monkeypatch.setattr(raw, "FAST_PROBLEM", "wasmtime-py lacks something")
    monkeypatch.setattr(raw, "_warned", False)
    box = Sandbox(Settings.load({}, environ={}, env_file=None))
    try:
        assert box.backend.name == "public"
        outcome = box.run(load("echo"), "echo", b"hi", limits(), task_name="echo")
        assert outcome.ok and outcome.result == b"hi"
    finally:
        box.close()
