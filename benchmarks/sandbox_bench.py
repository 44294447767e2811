"""Per-task cost of the sandbox against the bare wasmtime-py floor, measured in one run.

For each module (the WAT echo of ``tasks/``, the C, Zig and Go reference tasks), and for
each that exports ``_initialize`` also its snapshot (row ``<name>+snap``: the module as
registration pre-initializes it, :func:`runtime.snapshot.take`):

- floor:      wasmtime-py's cheapest public path: a fresh Store with wasmtime's WASI and no
              output configured, InstancePre.instantiate, alloc/write/execute/read through
              the public API; no limits, no capture;
- sandbox:    ``Sandbox.run``: fresh store, memory limit, epoch deadline, capture of
              stdout/stderr with timestamps and a byte cap, bounds-checked result;
- minflt:     minor page faults per task over the sandbox measurement (``ru_minflt``);
- snap x:     on a ``+snap`` row, the module's sandbox cost over its snapshot's;
- wt-capture: the floor plus wasmtime's own output capture (stdout_custom/stderr_custom
              callbacks);
- wt-files:   the floor plus wasmtime's file capture (stdout/stderr to temp files, read
              back after each task).

Then, for each module of ``--phases`` (default go), where a sandboxed task's time goes,
with and without the snapshot: the steps of ``Sandbox.run`` timed one by one (fresh store,
instantiate, _initialize, alloc+copy, execute, drop), with the minor page faults of each.

``--cow off`` runs everything on an engine with ``memory_init_cow`` off, so that a
snapshot's memory is copied into each instance instead of mapped copy-on-write.
``--pooling MIB`` runs it on wasmtime's pooling allocator (not what wasmq runs), which
keeps MIB of each memory slot resident between instances: no page faults on reuse.

Usage: python benchmarks/sandbox_bench.py [--seconds 1.0] [--only wat,c,zig,go]
[--phases go] [--cow on|off] [--pooling MIB]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import hashlib
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime

import compiler
from runtime import snapshot
from runtime.sandbox import Sandbox, TaskLimits, capture, engine, ticker
from runtime.sandbox.capture import TaskIO
from runtime.sandbox.engine import get_engine, wasmtime_version
from runtime.sandbox.exports import ALLOC, EXECUTE, INITIALIZE
from runtime.sandbox.limits import MAX_TABLES, TABLE_ELEMENTS
from runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    "wat": ROOT / "tasks" / "echo.wat",
    "c": ROOT / "tasks" / "task_1_c.c",
    "zig": ROOT / "tasks" / "task_1_zig.zig",
    "go": ROOT / "tasks" / "task_1.go",
}
PAYLOAD = b'{"name": "bench"}'
M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
LIMITS = TaskLimits(timeout=30.0, memory=128 << 20, result=16 << 20, logs=1 << 20)
#: The issue's target for a Go task in the sandbox, from its snapshot (µs).
TARGET_GO_US = 400.0
#: Instance slots of the pooling allocator (``--pooling``): the bench runs one at a time.
POOL_SLOTS = 32
PHASES = ("fresh store", "instantiate", "_initialize", "alloc+copy", "execute", "drop")


@dataclass
class Cell:
    us: float
    minflt: float


@dataclass
class Variant:
    """One row: a module as built or its snapshot."""

    name: str
    data: bytes
    module: wasmtime.Module
    digest: str
    #: The row this one is the snapshot of ("" for a module as built).
    base: str = ""


def build(source: Path, cache: Path) -> bytes:
    if source.suffix == ".wat":
        return bytes(wasmtime.wat2wasm(source.read_text()))
    adapter = compiler.adapter_for(source, "go", cache)
    return adapter.compile(source, timeout=600, output_limit=1 << 28)


def variants(name: str, data: bytes) -> list[Variant]:
    """The module, and its snapshot when it exports ``_initialize``."""
    digest = hashlib.sha256(data).hexdigest()
    out = [Variant(name, data, wasmtime.Module(get_engine(), data), digest)]
    if snapshot.has_initializer(data):
        snap = snapshot.take(data, digest, name, LIMITS).data
        snap_digest = hashlib.sha256(snap).hexdigest()
        module = wasmtime.Module(get_engine(), snap)
        out.append(Variant(f"{name}+snap", snap, module, snap_digest, base=name))
    return out


def wasmtime_runner(module: wasmtime.Module, output: str) -> Callable[[], bytes]:
    """One task through wasmtime-py's public API, with ``output`` none/custom/files."""
    eng = get_engine()
    linker = wasmtime.Linker(eng)
    linker.define_wasi()
    pre = linker.instantiate_pre(module)
    has_init = any(e.name == INITIALIZE.name for e in module.exports)
    tmp = Path(tempfile.mkdtemp(prefix="wasmq-bench-"))
    out_path, err_path = str(tmp / "out"), str(tmp / "err")
    sink: list[bytes] = []

    def once() -> bytes:
        store = wasmtime.Store(eng)
        store.set_epoch_deadline(1 << 40)
        config = wasmtime.WasiConfig()
        if output == "custom":
            config.stdout_custom = sink.append
            config.stderr_custom = sink.append
        elif output == "files":
            config.stdout_file = out_path
            config.stderr_file = err_path
        store.set_wasi(config)
        exports: Any = pre.instantiate(store).exports(store)
        if has_init:
            exports[INITIALIZE.name](store)
        memory = exports["memory"]
        ptr = exports[ALLOC.name](store, len(PAYLOAD))
        memory.write(store, PAYLOAD, ptr)
        packed = exports[EXECUTE.name](store, ptr, len(PAYLOAD)) & M64
        start, length = packed >> 32, packed & M32
        result = bytes(memory.read(store, start, start + length))
        if output == "files":
            del store  # flushes and closes the files
            Path(out_path).read_bytes()
            Path(err_path).read_bytes()
        sink.clear()
        return result

    return once


def minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def per_task(func: Callable[[], object], seconds: float) -> Cell:
    # Stores of the cell before may still await the cycle collector, each holding a
    # mapped memory: collect them so they do not cost this cell.
    gc.collect()
    for _ in range(20):
        func()
    count, faults, started = 0, minflt(), time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(10):
            func()
        count += 10
        now = time.perf_counter()
        if now >= deadline:
            return Cell((now - started) / count * 1e6, (minflt() - faults) / count)


def phases(sandbox: Sandbox, v: Variant, seconds: float) -> dict[str, Cell]:
    """The steps of ``Sandbox.run`` on the isolated path, timed apart: µs and minor
    faults per task for each (the getrusage calls fall outside the timed spans)."""
    prepared = sandbox.prepare(v.module, v.digest, False, False)
    assert prepared.pre is not None, prepared.problem
    pre = prepared.pre
    ns = dict.fromkeys(PHASES, 0)
    faults = dict.fromkeys(PHASES, 0)
    #: (when a span ended, faults so far, when the next began): getrusage is left out.
    marks: list[tuple[int, int, int]] = []

    def mark() -> None:
        ended = time.perf_counter_ns()
        faults = minflt()
        marks.append((ended, faults, time.perf_counter_ns()))

    def once() -> None:
        io = TaskIO(v.name, LIMITS.logs, time.monotonic() + LIMITS.timeout, None, sandbox.backend)
        capture.enter(io)
        ticker.begin()
        try:
            marks.clear()
            mark()
            store = wasmtime.Store(get_engine(False))
            store.set_limits(
                memory_size=LIMITS.memory,
                table_elements=TABLE_ELEMENTS,
                instances=1,
                tables=MAX_TABLES,
                memories=1,
            )
            store.set_epoch_deadline(ticker.deadline_ticks(LIMITS.timeout))
            mark()
            instance = sandbox.backend.instantiate(pre, store)
            memory = instance.memory()
            mark()
            if prepared.has_initialize:
                instance.call(instance.func(INITIALIZE.symbol))
            mark()
            ptr = instance.call(instance.func(ALLOC.symbol), len(PAYLOAD))[0].i32 & M32
            base, _ = instance.memory_span(memory)
            ctypes.memmove(base + ptr, PAYLOAD, len(PAYLOAD))
            mark()
            packed = instance.call(instance.func(EXECUTE.symbol), ptr, len(PAYLOAD))[0].i64 & M64
            base, _ = instance.memory_span(memory)
            ctypes.string_at(base + (packed >> 32), packed & M32)
            mark()
            del instance, memory, store
            mark()
        finally:
            ticker.end()
            capture.enter(None)
        for i, phase in enumerate(PHASES):
            (_, f0, t0), (t1, f1, _) = marks[i], marks[i + 1]
            ns[phase] += t1 - t0
            faults[phase] += f1 - f0

    for _ in range(20):
        once()
    for phase in PHASES:
        ns[phase] = faults[phase] = 0
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        once()
        count += 1
    return {p: Cell(ns[p] / count / 1000, faults[p] / count) for p in PHASES}


def print_phases(rows: list[tuple[str, dict[str, Cell]]]) -> None:
    print("\nwhere a sandboxed task's time goes (µs per task / minor faults per task)")
    print(f"{'phase':<12}" + "".join(f" {name:>20}" for name, _ in rows))
    for phase in (*PHASES, "total"):
        cells = []
        for _, cells_of in rows:
            if phase == "total":
                us = sum(c.us for c in cells_of.values())
                flt = sum(c.minflt for c in cells_of.values())
            else:
                us, flt = cells_of[phase].us, cells_of[phase].minflt
            cells.append(f"{us:>11.1f} / {flt:>6.1f}")
        print(f"{phase:<12}" + "".join(f" {c:>20}" for c in cells))


def use_engine(cow: bool, keep_resident: int) -> None:
    """Give the sandbox an engine that maps (``cow``) or copies initial memory images and,
    when ``keep_resident`` (bytes) is set, takes instances from wasmtime's pooling
    allocator, which resets that much of a reused memory in place instead of unmapping
    it. Before the first module is compiled: a module runs only on the engine that
    compiled it."""
    if cow and not keep_resident:
        return
    config = engine._config(False)
    config.memory_init_cow = cow
    if keep_resident:
        # Not in wasmtime-py's Config: its C API (wasmtime._ffi) has it.
        from wasmtime import _ffi as ffi

        pool = ffi.wasmtime_pooling_allocation_config_new()
        for setter, value in (
            (ffi.wasmtime_pooling_allocation_config_total_memories_set, POOL_SLOTS),
            (ffi.wasmtime_pooling_allocation_config_total_core_instances_set, POOL_SLOTS),
            (ffi.wasmtime_pooling_allocation_config_total_tables_set, POOL_SLOTS * MAX_TABLES),
            (ffi.wasmtime_pooling_allocation_config_total_stacks_set, POOL_SLOTS),
            (ffi.wasmtime_pooling_allocation_config_max_memory_size_set, LIMITS.memory),
            (ffi.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set, keep_resident),
        ):
            setter(pool, value)
        ffi.wasmtime_pooling_allocation_strategy_set(config.ptr(), pool)
    engine._engines[False] = wasmtime.Engine(config)


def measure(sandbox: Sandbox, v: Variant, seconds: float) -> list[Cell]:
    def ours() -> bytes:
        outcome = sandbox.run(v.module, v.digest, PAYLOAD, LIMITS, task_name=v.name)
        assert outcome.ok, outcome.message
        return outcome.result

    floor = wasmtime_runner(v.module, "none")
    assert floor() == ours(), v.name
    return [
        per_task(floor, seconds),
        per_task(ours, seconds),
        per_task(wasmtime_runner(v.module, "custom"), seconds),
        per_task(wasmtime_runner(v.module, "files"), seconds),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--only", default="wat,c,zig,go", help="modules to measure")
    parser.add_argument("--phases", default="go", help="modules whose phases to show ('' none)")
    parser.add_argument("--cow", choices=("on", "off"), default="on", help="copy-on-write images")
    parser.add_argument(
        "--pooling",
        type=int,
        default=0,
        metavar="MIB",
        help="pooling allocator keeping MIB of each memory resident (0: off, as wasmq runs)",
    )
    args = parser.parse_args()
    use_engine(args.cow == "on", args.pooling << 20)
    settings = Settings.load({}, environ={}, env_file=None)
    sandbox = Sandbox(settings)
    cache = Path(tempfile.gettempdir()) / "wasmq-bench-toolchain-cache"
    cache.mkdir(exist_ok=True)
    pooling = f"pooling, {args.pooling} MiB resident" if args.pooling else "no pooling"
    print(
        f"wasmtime {wasmtime_version()}, copy-on-write {args.cow}, {pooling}, "
        f"{args.seconds}s per cell, µs per task"
    )
    header = f"{'module':<9} {'floor':>9} {'sandbox':>9} {'vs floor':>9} {'minflt':>7} "
    header += f"{'snap x':>7} {'wt-capture':>11} {'wt-files':>9}"
    print(header)
    sandbox_us: dict[str, float] = {}
    shown: list[tuple[str, dict[str, Cell]]] = []
    for name in args.only.split(","):
        for v in variants(name, build(SOURCES[name], cache)):
            cells = measure(sandbox, v, args.seconds)
            sandbox_us[v.name] = cells[1].us
            change = (cells[1].us / cells[0].us - 1) * 100
            ratio = f"{sandbox_us[v.base] / cells[1].us:.2f}" if v.base else "-"
            print(
                f"{v.name:<9} {cells[0].us:>9.1f} {cells[1].us:>9.1f} {change:>+8.0f}% "
                f"{cells[1].minflt:>7.1f} {ratio:>7} {cells[2].us:>11.1f} {cells[3].us:>9.1f}",
                flush=True,
            )
            if (v.base or v.name) in args.phases.split(","):
                shown.append((v.name, phases(sandbox, v, args.seconds)))
    if "go+snap" in sandbox_us:
        us = sandbox_us["go+snap"]
        verdict = "met" if us <= TARGET_GO_US else "NOT met"
        print(
            f"\ngo+snap in the sandbox: {us:.1f} µs per task; target <= {TARGET_GO_US:.0f}: {verdict}"
        )
    if shown:
        print_phases(shown)
    sandbox.close()


if __name__ == "__main__":
    main()
