"""The wasmq entries: ``wasmq bench --json`` as a subprocess against the shared server.

Three handlers, as the issue asks: the WAT echo (the like-for-like comparison), the C echo
and the Go ``task_1``, each with the peers' 2 worker processes; the Go ``task_1`` twice,
from its snapshot (as registered by default) and as built (``--no-snapshot``: the Go
runtime starts in every task), so the report can set one against the other. Only the
phases the peers also go through run here (enqueue, drain, and the idle latency of that
pool); the trickle and the other pool sizes are ``wasmq bench``'s own (``make bench``).
Where ``wasmq bench`` cannot run, every entry is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODULES = {
    "wasmq-wat-echo": REPO / "tasks" / "echo.wat",
    "wasmq-c-echo": REPO / "tasks" / "echo_c.c",
    "wasmq-go-task_1": REPO / "tasks" / "task_1.go",
    "wasmq-go-task_1-nosnap": REPO / "tasks" / "task_1.go",
}
#: Entries registered as built rather than pre-initialized (``wasmq bench --no-snapshot``).
NO_SNAPSHOT = frozenset({"wasmq-go-task_1-nosnap"})
#: The snapshot entry and its as-built twin, whose processing rates the report compares.
SNAPSHOT_PAIR = ("wasmq-go-task_1", "wasmq-go-task_1-nosnap")
#: The entry the peers are compared with (same job: payload in, payload out).
REFERENCE = "wasmq-wat-echo"
REQUIRED = ("enqueue_rate", "process_rate")
WORKERS = 2


def wasmq() -> str:
    return str(Path(sys.executable).parent / "wasmq")


def environment(url: str, state: Path) -> dict[str, str]:
    env = dict(os.environ, REDIS_URL=url)
    env["WASMQ_STATE_DIR"] = str(state / "wasmq-state")
    env["WASMQ_MODULE_DIR"] = str(state / "wasmq-modules")
    return env


def unavailable(env: dict[str, str]) -> str | None:
    """Why ``wasmq bench`` cannot run here, or None when it can."""
    try:
        probe = subprocess.run(
            [wasmq(), "bench", "--help"], env=env, capture_output=True, text=True, timeout=60
        )
    except OSError as exc:
        return f"wasmq is not installed in this venv ({exc})"
    if probe.returncode != 0 or "--json" not in probe.stdout:
        return "`wasmq bench --json` is not implemented yet (runtime/cli/bench.py)"
    return None


def parse(stdout: str) -> dict[str, Any]:
    """The JSON object ``wasmq bench --json`` prints (the last line that is one)."""
    for line in reversed(stdout.strip().splitlines()):
        with_braces = line.strip()
        if with_braces.startswith("{"):
            data = json.loads(with_braces)
            if all(key in data for key in REQUIRED):
                return dict(data)
    return dict(json.loads(stdout))


def run_one(module: Path, tasks: int, env: dict[str, str], snapshot: bool = True) -> dict[str, Any]:
    command = [wasmq(), "bench", "--json", "--tasks", str(tasks), "--workers", str(WORKERS)]
    command += ["--idle-workers", "", "--trickle-seconds", "0"]
    if not snapshot:
        command.append("--no-snapshot")
    # Its own process group: on Ctrl-C or a time-out the pool it forks goes with it.
    proc = subprocess.Popen(
        [*command, "--module", str(module)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=max(600, tasks / 10))
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if proc.returncode != 0:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"wasmq bench exited {proc.returncode}: {last}")
    return normalise(parse(stdout))


def normalise(data: dict[str, Any]) -> dict[str, Any]:
    """Name the rates as the peers' are named. ``wasmq bench`` enqueues its tasks in bulk,
    so its ``enqueue_rate`` is the bulk rate; a one-by-one rate counts when it prints one."""
    out = dict(data)
    out["enqueue_bulk_rate"] = data.get("enqueue_bulk_rate", data["enqueue_rate"])
    one = data.get("enqueue_one_rate")
    if one is None:
        out.pop("enqueue_rate")
    else:
        out["enqueue_rate"] = one
    return out


def run_all(
    url: str, tasks: int, reps: int, state: Path, only: list[str], *, clear: Callable[[], None]
) -> dict[str, dict[str, Any]]:
    env = environment(url, state)
    wanted = {n: m for n, m in MODULES.items() if not only or n in only or "wasmq" in only}
    if not wanted:
        return {}
    reason = unavailable(env)
    results: dict[str, dict[str, Any]] = {}
    for name, module in wanted.items():
        entry: dict[str, Any] = {"kind": "wasmq", "module": module.name, "runs": []}
        snapshot = name not in NO_SNAPSHOT
        entry["workers"] = f"wasmq bench --workers {WORKERS}" + (
            "" if snapshot else " --no-snapshot"
        )
        if reason:
            print(f"{name}: skipped: {reason}", file=sys.stderr)
            results[name] = {**entry, "skipped": reason, "median": {}}
            continue
        try:
            for rep in range(reps):
                print(f"  {name}: repetition {rep + 1}/{reps}", file=sys.stderr, flush=True)
                clear()
                entry["runs"].append(run_one(module, tasks, env, snapshot))
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            entry["error"] = str(exc)
        entry["median"] = _medians(entry["runs"])
        if entry["runs"]:
            # How the module ran (a snapshot, or why not); None: no _initialize.
            entry["snapshot"] = entry["runs"][-1].get("snapshot")
        results[name] = entry
    return results


def _medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    if not runs:
        return {}
    numeric = {k for run in runs for k, v in run.items() if isinstance(v, (int, float))}
    numeric.discard("tasks")
    out: dict[str, float] = {}
    for key in sorted(numeric):
        # A cost the server did not report (None) in one run is left out of the median.
        values = [float(run[key]) for run in runs if isinstance(run.get(key), (int, float))]
        if values:
            out[key] = statistics.median(values)
    return out
