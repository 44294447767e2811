"""Per-task cost of the sandbox against the bare wasmtime-py floor, measured in one run.

For each module (the WAT echo test module, the C, Zig and Go reference tasks):

- floor:      wasmtime-py's cheapest public path: a fresh Store with wasmtime's WASI and no
              output configured, InstancePre.instantiate, alloc/write/execute/read through
              the public API; no limits, no capture;
- sandbox:    ``Sandbox.run``: fresh store, memory limit, epoch deadline, capture of
              stdout/stderr with timestamps and a byte cap, bounds-checked result;
- wt-capture: the floor plus wasmtime's own output capture (stdout_custom/stderr_custom
              callbacks);
- wt-files:   the floor plus wasmtime's file capture (stdout/stderr to temp files, read
              back after each task).

Usage: python benchmarks/sandbox_bench.py [--seconds 1.0] [--only wat,c,zig,go]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime

import compiler
from runtime.sandbox import Sandbox, TaskLimits
from runtime.sandbox.engine import get_engine, wasmtime_version
from runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    "wat": ROOT / "tests" / "runtime" / "wat" / "echo.wat",
    "c": ROOT / "tasks" / "task_1_c.c",
    "zig": ROOT / "tasks" / "task_1_zig.zig",
    "go": ROOT / "tasks" / "task_1.go",
}
PAYLOAD = b'{"name": "bench"}'
M64 = 0xFFFFFFFFFFFFFFFF


def build(source: Path, cache: Path) -> wasmtime.Module:
    if source.suffix == ".wat":
        return wasmtime.Module(get_engine(), source.read_text())
    adapter = compiler.adapter_for(source, "go", cache)
    return wasmtime.Module(get_engine(), adapter.compile(source, timeout=600, output_limit=1 << 28))


def wasmtime_runner(module: wasmtime.Module, output: str) -> Callable[[], bytes]:
    """One task through wasmtime-py's public API, with ``output`` none/custom/files."""
    engine = get_engine()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    pre = linker.instantiate_pre(module)
    has_init = any(e.name == "_initialize" for e in module.exports)
    tmp = Path(tempfile.mkdtemp(prefix="wasmq-bench-"))
    out_path, err_path = str(tmp / "out"), str(tmp / "err")
    sink: list[bytes] = []

    def once() -> bytes:
        store = wasmtime.Store(engine)
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
            exports["_initialize"](store)
        memory = exports["memory"]
        ptr = exports["alloc"](store, len(PAYLOAD))
        memory.write(store, PAYLOAD, ptr)
        packed = exports["execute"](store, ptr, len(PAYLOAD)) & M64
        start, length = packed >> 32, packed & 0xFFFFFFFF
        result = bytes(memory.read(store, start, start + length))
        if output == "files":
            del store  # flushes and closes the files
            Path(out_path).read_bytes()
            Path(err_path).read_bytes()
        sink.clear()
        return result

    return once


def per_task_us(func: Callable[[], object], seconds: float) -> float:
    for _ in range(20):
        func()
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(10):
            func()
        count += 10
        now = time.perf_counter()
        if now >= deadline:
            return (now - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--only", default="wat,c,zig,go", help="modules to measure")
    args = parser.parse_args()
    settings = Settings.load({}, environ={}, env_file=None)
    sandbox = Sandbox(settings)
    limits = TaskLimits(timeout=30.0, memory=128 << 20, result=16 << 20, logs=1 << 20)
    cache = Path(tempfile.gettempdir()) / "wasmq-bench-toolchain-cache"
    cache.mkdir(exist_ok=True)
    print(f"wasmtime {wasmtime_version()}, {args.seconds}s per cell, µs per task")
    header = f"{'module':<6} {'floor':>9} {'sandbox':>9} {'vs floor':>9} {'wt-capture':>11} {'wt-files':>9}"
    print(header)
    for name in args.only.split(","):
        module = build(SOURCES[name], cache)

        def ours(module: wasmtime.Module = module, name: str = name) -> bytes:
            outcome = sandbox.run(module, name, PAYLOAD, limits, task_name=name)
            assert outcome.ok, outcome.message
            return outcome.result

        floor = wasmtime_runner(module, "none")
        assert floor() == ours(), name
        cells = [
            per_task_us(floor, args.seconds),
            per_task_us(ours, args.seconds),
            per_task_us(wasmtime_runner(module, "custom"), args.seconds),
            per_task_us(wasmtime_runner(module, "files"), args.seconds),
        ]
        change = (cells[1] / cells[0] - 1) * 100
        print(
            f"{name:<6} {cells[0]:>9.1f} {cells[1]:>9.1f} {change:>+8.0f}% "
            f"{cells[2]:>11.1f} {cells[3]:>9.1f}",
            flush=True,
        )
    sandbox.close()


if __name__ == "__main__":
    main()
