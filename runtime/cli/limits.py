"""CLI commands: ``wasmq limit set|list|rm``, rate and concurrency limits per task or queue."""

from __future__ import annotations

import json
from typing import Optional  # noqa: F401 - typer reads Optional[...] at runtime

import typer

from runtime.cli.context import state
from runtime.queue import throttles as limits

limit_app = typer.Typer(
    help="Rate and concurrency limits per task name or queue, across every worker.",
    no_args_is_help=True,
)

TASK = typer.Option(None, "--task", help="Limit the tasks of this name.")
QUEUE = typer.Option(None, "--queue", help="Limit the tasks of this queue.")


@limit_app.command("set")
def set_cmd(
    ctx: typer.Context,
    task: str | None = TASK,
    queue: str | None = QUEUE,
    concurrency: int | None = typer.Option(
        None, "--concurrency", help="Most tasks of the scope running at once."
    ),
    rate: str | None = typer.Option(
        None, "--rate", help="Most task starts per period: 100/m, 5/s, 1000/h, 20/10s."
    ),
) -> None:
    """Set (replace) the limit of a task name or a queue; workers apply it at once."""
    limit = limits.make_limit(limits.scope(task=task, queue=queue), concurrency, rate)
    limits.set_limit(state(ctx).redis(), limit)
    typer.echo(f"{limit.scope}: {_describe(limit)}")


@limit_app.command("list")
def list_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="One JSON array instead of a table."),
) -> None:
    """Show every limit with its slots in use, its window's claims and its waiting tasks."""
    rows = limits.usage(state(ctx).redis())
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in rows]))
        return
    if not rows:
        typer.echo("no limits (set one with: wasmq limit set --task NAME --concurrency N)")
        return
    typer.echo(limits_table(rows))


@limit_app.command("rm")
def rm_cmd(ctx: typer.Context, task: str | None = TASK, queue: str | None = QUEUE) -> None:
    """Remove the limit of a task name or a queue; the tasks it held back run."""
    name = limits.scope(task=task, queue=queue)
    if limits.remove_limit(state(ctx).redis(), name):
        typer.echo(f"removed the limit of {name}")
    else:
        typer.echo(f"{name} had no limit")


def limits_table(rows: list[limits.LimitUsage]) -> str:
    """The table ``limit list`` and ``stats`` print: running/limit, starts in the window
    of the rate (``3 of 100/m``), waiting."""
    lines = [f"{'LIMIT':<28} {'RUNNING':>12} {'STARTED':>18} {'WAITING':>8}"]
    for r in rows:
        lim = r.limit
        running = f"{r.running}/{lim.concurrency}" if lim.concurrency is not None else "-"
        used = f"{r.used} of {lim.rate_text}" if lim.rate_text is not None else "-"
        lines.append(f"{lim.scope:<28} {running:>12} {used:>18} {r.waiting:>8}")
    return "\n".join(lines)


def _describe(limit: limits.Limit) -> str:
    parts = []
    if limit.concurrency is not None:
        parts.append(f"concurrency {limit.concurrency}")
    if limit.rate_text is not None:
        parts.append(f"rate {limit.rate_text}")
    return ", ".join(parts)


def install(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(limit_app, name="limit")
