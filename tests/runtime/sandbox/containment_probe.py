"""Runs hostile modules in a fresh process and reports each run's outcome and peak RSS.

Used by the containment tests: the worker's own memory during one task must stay under
its baseline + memory limit + log limit + result limit + a small constant, which only a
process of its own can measure. Usage:

    python -m tests.runtime.sandbox.containment_probe [--public] [--thread-ticker] \
        NAME[:TIMEOUT[:MEMORY_MIB]] ...

``--public`` runs on wasmtime-py's public API backend, ``--thread-ticker`` on the
Python-thread epoch ticker (the fallbacks of the fast paths), ``--capabilities`` on
wasmtime's WASI (what tasks granted capabilities use).

prints one JSON object per module: kind, message, seconds, log bytes kept and dropped,
chunks, and ``peak`` (peak RSS growth over the warmed-up baseline, in bytes).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import wasmtime

from runtime.sandbox import Capabilities, Sandbox, TaskLimits
from runtime.sandbox.engine import get_engine
from runtime.settings import Settings
from tests.support.paths import WAT


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    # "5" resets VmHWM to the current RSS (Linux 4.0+).
    Path("/proc/self/clear_refs").write_text("5")


def main(args: list[str]) -> None:
    api = "auto"
    if "--public" in args:
        args.remove("--public")
        api = "public"
    if "--thread-ticker" in args:
        args.remove("--thread-ticker")
        from runtime.sandbox import ticker

        ticker._native_supported = lambda: False  # type: ignore[assignment]
    capabilities = None
    if "--capabilities" in args:
        args.remove("--capabilities")
        capabilities = Capabilities(env={"GRANTED": "1"})
    box = Sandbox(Settings.load({"sandbox_api": api}, environ={}, env_file=None))
    echo = wasmtime.Module(get_engine(), (WAT / "echo.wat").read_text())
    warm = TaskLimits(timeout=5.0, memory=16 << 20, result=1 << 20, logs=1 << 20)
    for _ in range(50):
        box.run(echo, "echo", b"warm", warm, task_name="echo")
    for spec in args:
        name, _, rest = spec.partition(":")
        timeout_text, _, memory_text = rest.partition(":")
        limits = TaskLimits(
            timeout=float(timeout_text or 1.0),
            memory=int(memory_text or 128) << 20,
            result=1 << 20,
            logs=1 << 20,
        )
        module = wasmtime.Module(get_engine(), (WAT / "hostile" / f"{name}.wat").read_text())
        _reset_peak()
        baseline = _status("VmRSS")
        started = time.monotonic()
        outcome = box.run(module, name, b"", limits, task_name=name, capabilities=capabilities)
        seconds = time.monotonic() - started
        peak = _status("VmHWM") - baseline
        chunks = len(outcome.logs)
        after = box.run(echo, "echo", b"next", warm, task_name="echo")
        report = {
            "name": name,
            "kind": outcome.kind,
            "message": outcome.message,
            "seconds": seconds,
            "log_bytes": outcome.log_bytes,
            "log_dropped": outcome.log_dropped,
            "chunks": chunks,
            "backend": box.backend.name,
            "peak": peak,
            "next_ok": after.ok and after.result == b"next",
        }
        print(json.dumps(report), flush=True)
    box.close()


if __name__ == "__main__":
    main(sys.argv[1:])
