"""CLI commands: ``wasmq cron list|rm|pause|resume`` and ``wasmq scheduler``."""

from __future__ import annotations

import json
import signal
import threading
from types import FrameType

import typer

from runtime.cli.choices import complete_cron_ids
from runtime.cli.context import state
from runtime.queue.task import format_time
from runtime.scheduling import cron_entries
from runtime.scheduling.scheduler import Scheduler

#: The argument naming a cron entry (ids complete from Redis).
ENTRY = typer.Argument(..., help="Cron entry id.", autocompletion=complete_cron_ids)

cron_app = typer.Typer(
    help="Recurring tasks: list, remove, pause and resume cron entries.",
    no_args_is_help=True,
)


@cron_app.command("list")
def list_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="One JSON array instead of a table."),
    runs: int = typer.Option(3, "--runs", min=0, max=100, help="How many next runs to show."),
) -> None:
    """Show each cron entry with its next runs and its last run."""
    entries = cron_entries.list_entries(state(ctx).redis(), runs=runs)
    if as_json:
        typer.echo(json.dumps([e.to_json() for e in entries]))
        return
    if not entries:
        typer.echo("no cron entries")
        return
    for e in entries:
        status = "paused" if e.paused else "active"
        typer.echo(f"{e.id}  {e.task_name}  '{e.expr}'  tz={e.tz}  queue={e.queue}  {status}")
        nxt = ", ".join(format_time(ms) for ms in e.next_runs) or "-"
        typer.echo(f"  next: {nxt}")
        last = f"{e.last_run_id} ({e.last_run_stage})" if e.last_run_id else "-"
        typer.echo(
            f"  last: {last}  runs={e.run_count} skipped={e.skipped_runs} missed={e.missed_runs}"
        )
        if e.error:
            typer.echo(f"  error: {e.error}")


@cron_app.command("rm")
def rm_cmd(ctx: typer.Context, entry: str = ENTRY) -> None:
    """Remove a cron entry; the runs it already made keep their results and logs."""
    cron_entries.remove(state(ctx).redis(), entry)
    typer.echo(f"removed {entry}")


@cron_app.command("pause")
def pause_cmd(ctx: typer.Context, entry: str = ENTRY) -> None:
    """Stop an entry from firing until it is resumed."""
    app = state(ctx)
    changed = cron_entries.pause(app.redis(), entry, compat=app.settings().reference_compat)
    typer.echo(f"paused {entry}" if changed else f"{entry} was already paused")


@cron_app.command("resume")
def resume_cmd(ctx: typer.Context, entry: str = ENTRY) -> None:
    """Resume a paused entry at its next tick (missed ticks are not run)."""
    app = state(ctx)
    nxt = cron_entries.resume(app.redis(), entry, compat=app.settings().reference_compat)
    if nxt is None:
        typer.echo(f"{entry} was not paused")
    else:
        typer.echo(f"resumed {entry}; next run {format_time(nxt)}")


def scheduler_cmd(ctx: typer.Context) -> None:
    """Run the scheduler loop alone (workers run one too) until interrupted."""
    st = state(ctx)
    scheduler = Scheduler(st.redis(), st.settings())
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    scheduler.run(stop)


def install(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(cron_app, name="cron")
    app.command("scheduler")(scheduler_cmd)
