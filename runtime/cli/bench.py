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

if TYPE_CHECKING:
    from runtime.bench import Progress


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


def bench(
    ctx: typer.Context,
    tasks: int = typer.Option(10_000, "--tasks", "-n", min=1, help="Tasks to drain."),
    workers: int = typer.Option(2, "--workers", "-w", min=1, help="Worker processes."),
    module: Path | None = typer.Option(
        None, "--module", help="Task source or module (default: the WAT echo)."
    ),
    payload_size: int = typer.Option(64, "--payload-size", min=1, help="Payload bytes."),
    idle_samples: int = typer.Option(
        200, "--idle-samples", min=1, help="Tasks timed one at a time on an idle pool."
    ),
    one_by_one: int = typer.Option(
        1000, "--one-by-one", min=1, help="Tasks enqueued one at a time for that rate."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Enqueue and drain tasks on a private queue; print rates and latencies."""
    from runtime.bench import BenchOptions, run

    st = state(ctx)
    settings = st.settings()
    st.redis()  # fail fast with one line when Redis is unreachable
    show = _progress()
    options = BenchOptions(
        tasks=tasks,
        workers=workers,
        module=module,
        payload_size=payload_size,
        idle_samples=idle_samples,
        one_by_one=one_by_one,
    )
    result = run(settings, options, show)
    if as_json:
        typer.echo(json.dumps(result))
        return
    cores = result["cores"] or os.cpu_count()
    lines = [
        f"module        {result['module']}  payload {result['payload_size']} B",
        f"machine       {cores} cores, {result['workers']} worker processes",
        f"enqueue       {result['enqueue_rate']:,.0f}/s bulk, "
        f"{result['enqueue_one_rate']:,.0f}/s one by one",
        f"processing    {result['process_rate']:,.0f} tasks/s "
        f"({result['cost_per_task_us']:,.0f} µs of worker time per task)",
        f"latency idle  p50 {result['latency_p50_ms']} ms  p90 {result['latency_p90_ms']} ms"
        f"  p99 {result['latency_p99_ms']} ms",
        f"latency load  p50 {result['load_latency_p50_ms']} ms"
        f"  p90 {result['load_latency_p90_ms']} ms  p99 {result['load_latency_p99_ms']} ms",
    ]
    if result["incomplete"]:
        lines.append(f"incomplete    {result['incomplete']} tasks did not complete")
    typer.echo("\n".join(lines))


def install(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("bench")(bench)
