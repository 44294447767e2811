"""CLI commands: bench."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from runtime.cli.context import state
from runtime.cli.progress import Status
from runtime.units import format_size, human_duration

if TYPE_CHECKING:
    from runtime.bench import Progress

#: Most tasks of any bench phase (``-n`` and the other counts): ten million already
#: takes the better part of an hour and gigabytes of Redis memory.
MAX_TASKS = 10_000_000
#: Most worker processes of a bench phase, as for ``wasmq worker -c``.
MAX_WORKERS = 256


def _progress() -> Progress:
    """A one-line progress bar on stderr (only the final line when it is not a terminal)."""
    last: dict[str, Any] = {"label": "", "at": 0.0}
    tty = sys.stderr.isatty()

    def show(label: str, done: int, total: int) -> None:
        now = time.monotonic()
        final = done >= total
        if label == last["label"] and not final and now - last["at"] < 0.1:
            return
        last["label"], last["at"] = label, now
        width = 30
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "-" * (width - filled)
        line = f"{label:<20} [{bar}] {done}/{total}"
        if tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        elif final:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return show


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"expected numbers such as 1,2,4, got {text!r}") from None
    if any(c < 1 for c in counts):
        raise typer.BadParameter("worker counts start at 1")
    return counts


def _size(text: str) -> int:
    from runtime.units import parse_size

    try:
        size = parse_size(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if size < 1:
        raise typer.BadParameter("the payload size must be at least 1 byte")
    return size


def _us(value: float | None) -> str:
    return human_duration(None if value is None else value / 1e6)


def _ms(value: float | None) -> str:
    return human_duration(None if value is None else value / 1000)


def _per_task(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _commands(rows: list[dict[str, Any]]) -> list[str]:
    return [
        f"  {row['command']:<18} {row['calls_per_task']:>6.2f} calls/task "
        f"{_us(row['per_call_us']):>9}/call {_us(row['per_task_us']):>9}/task"
        for row in rows
    ]


def _how(result: dict[str, Any]) -> str:
    """How the module ran: its size and whether from a snapshot."""
    size = format_size(result.get("module_bytes") or 0)
    snap = result.get("snapshot")
    if snap is None:
        return f"{size}, no _initialize to snapshot"
    if snap.get("taken"):
        return f"{size}, from a snapshot: _initialize ran once, {snap['init_ms']:.1f} ms"
    return f"{size}, as built: {snap.get('reason') or 'not snapshotted'}"


def render(result: dict[str, Any]) -> str:
    """The text report of one ``wasmq bench`` result."""
    cores = result["cores"] or os.cpu_count()
    lines = [
        f"module        {result['module']} ({_how(result)})  "
        f"payload {format_size(result['payload_bytes'])}",
        f"machine       {cores} cores, {result['workers']} worker processes",
        f"enqueue       {result['enqueue_rate']:,.0f}/s bulk, "
        f"{result['enqueue_one_rate']:,.0f}/s one by one "
        f"(Valkey CPU {_us(result['enqueue_server_cpu_per_task_us'])} per task in bulk)",
        f"processing    {result['process_rate']:,.0f} tasks/s "
        f"({_us(result['cost_per_task_us'])} of worker wall time per task)",
        f"drain CPU     Valkey {_us(result['server_cpu_per_task_us'])}, workers "
        f"{_us(result['workers_cpu_per_task_us'])} per task; "
        f"{_per_task(result['claims_per_task'])} claims per task",
    ]
    if result["server_commands"]:
        # Commands a script or MULTI/EXEC runs are counted on their own line too.
        lines.append("Valkey busiest commands over the drain (nested ones counted twice):")
        lines += _commands(result["server_commands"])
    for p in result["idle_latency"]:
        label = f"{p['workers']} worker" + ("s" if p["workers"] != 1 else "")
        lines.append(
            f"latency idle  p50 {_ms(p['p50_ms'])}  p90 {_ms(p['p90_ms'])}"
            f"  p99 {_ms(p['p99_ms'])}  ({label})"
        )
    lines.append(
        f"latency load  p50 {_ms(result['load_latency_p50_ms'])}"
        f"  p90 {_ms(result['load_latency_p90_ms'])}  p99 {_ms(result['load_latency_p99_ms'])}"
    )
    trickle = result.get("trickle")
    if trickle:
        lines.append(
            f"trickle       {trickle['rate']:,.0f} tasks/s x {trickle['tasks']} tasks, "
            f"{trickle['workers']} workers: {_per_task(trickle['claims_per_task'])} claims "
            f"per task ({_per_task(trickle['empty_claims_per_task'])} empty)"
        )
        lines.append(
            f"trickle CPU   {_us(trickle['cpu_per_task_us'])} per task (Valkey "
            f"{_us(trickle['server_cpu_per_task_us'])}, workers "
            f"{_us(trickle['workers_cpu_per_task_us'])}); latency p50 "
            f"{_ms(trickle['latency_p50_ms'])}  p99 {_ms(trickle['latency_p99_ms'])}"
        )
        if trickle["incomplete"]:
            lines.append(f"incomplete    {trickle['incomplete']} trickle tasks did not complete")
    large = result.get("large")
    if large:
        lines.append(
            f"large         {format_size(large['payload_bytes'])} payloads: "
            f"{large['process_rate']:,.0f} "
            f"tasks/s processing, {large['enqueue_rate']:,.0f}/s bulk enqueue"
        )
        lines.append(
            f"large CPU     Valkey {_us(large['server_cpu_per_task_us'])}, workers "
            f"{_us(large['workers_cpu_per_task_us'])} per task over the drain"
        )
        if large["incomplete"]:
            lines.append(f"incomplete    {large['incomplete']} large tasks did not complete")
    if result["incomplete"]:
        lines.append(f"incomplete    {result['incomplete']} tasks did not complete")
    return "\n".join(lines)


def bench(
    ctx: typer.Context,
    tasks: int = typer.Option(
        10_000, "--tasks", "-n", min=1, max=MAX_TASKS, help="Tasks to drain."
    ),
    workers: int = typer.Option(
        2, "--workers", "-w", min=1, max=MAX_WORKERS, help="Worker processes."
    ),
    module: Path | None = typer.Option(
        None, "--module", help="Task source or module (default: the WAT echo)."
    ),
    payload_size: int = typer.Option(64, "--payload-size", min=1, help="Payload bytes."),
    idle_samples: int = typer.Option(
        200,
        "--idle-samples",
        min=1,
        max=MAX_TASKS,
        help="Tasks timed one at a time on an idle pool.",
    ),
    idle_workers: str = typer.Option(
        "1,2,4",
        "--idle-workers",
        help="Pool sizes whose idle latency is also measured (comma-separated; '' for none).",
    ),
    one_by_one: int = typer.Option(
        1000,
        "--one-by-one",
        min=1,
        max=MAX_TASKS,
        help="Tasks enqueued one at a time for that rate.",
    ),
    trickle_seconds: float = typer.Option(
        3.0, "--trickle-seconds", min=0, help="Length of the trickle phase (0 skips it)."
    ),
    trickle_rate: float = typer.Option(
        100.0, "--trickle-rate", min=1, help="Tasks per second of the trickle phase."
    ),
    trickle_workers: int = typer.Option(
        4,
        "--trickle-workers",
        min=1,
        max=MAX_WORKERS,
        help="Worker processes of the trickle phase.",
    ),
    large: bool = typer.Option(
        False, "--large", help="Also stream large payloads through the pool."
    ),
    large_tasks: int = typer.Option(
        300,
        "--large-tasks",
        min=1,
        max=MAX_TASKS,
        help="Tasks of the large-payload phase.",
    ),
    large_size: str = typer.Option(
        "1MiB", "--large-size", help="Payload size of the large-payload phase."
    ),
    snapshot: bool = typer.Option(
        True,
        "--snapshot/--no-snapshot",
        help="Run the module pre-initialized (a snapshot), or as built.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Enqueue and drain tasks on a private queue; print rates, latencies and CPU costs."""
    from runtime.bench import BenchOptions, run

    options = BenchOptions(
        tasks=tasks,
        workers=workers,
        module=module,
        payload_size=payload_size,
        idle_samples=idle_samples,
        idle_workers=_counts(idle_workers),
        one_by_one=one_by_one,
        trickle_seconds=trickle_seconds,
        trickle_rate=trickle_rate,
        trickle_workers=trickle_workers,
        large_tasks=large_tasks if large else 0,
        large_size=_size(large_size),
        snapshot=snapshot,
    )
    st = state(ctx)
    settings = st.settings()
    st.redis()  # fail fast with one line when Redis is unreachable
    # Until the first phase reports: the module's compile (seconds for a Go source).
    preparing = Status("preparing the bench (module, queue)").__enter__()
    bars = _progress()

    def show(label: str, done: int, total: int) -> None:
        preparing.close()
        bars(label, done, total)

    try:
        result = run(settings, options, show)
    finally:
        preparing.close()
    typer.echo(json.dumps(result) if as_json else render(result))


def install(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("bench")(bench)
