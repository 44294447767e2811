"""CLI commands that look at tasks: status, result, logs, list, stats."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

import typer

from runtime.cli.choices import choice_option, complete_queue_names, complete_task_names
from runtime.cli.context import state
from runtime.cli.limits import limits_table
from runtime.clock import now_ms
from runtime.errors import TaskNotFound
from runtime.output.chunks import STREAM_NAMES, chunk_json
from runtime.output.files import format_lines, truncation_marker
from runtime.queue import ceilings, keys
from runtime.queue.queries import LIST_SCAN
from runtime.queue.task import Stage, format_time
from runtime.units import format_size, human_age, human_duration, parse_duration

if TYPE_CHECKING:
    from runtime.client import Client
    from runtime.queue.queries import QueueStats, TaskStatus

JSON_HELP = "Machine-readable output."


def _client(ctx: typer.Context) -> Client:
    from runtime.client import Client

    st = state(ctx)
    return Client(settings=st.settings(), client=st.redis())


def _time(ms: int | None) -> str:
    return format_time(ms) if ms else "-"


def _ms(ms: float | None) -> str:
    return human_duration(None if ms is None else ms / 1000)


def status_cmd(
    ctx: typer.Context,
    task_id: str = typer.Argument(..., help="Task id."),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Print each change of stage or progress until it ends."
    ),
    wait_timeout: str | None = typer.Option(
        None, "--wait-timeout", help="With --follow: stop following after this long, e.g. 5m."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show a task's stage, attempts, progress, timings, outcome, error, worker and module."""
    client = _client(ctx)
    if follow:
        limit = parse_duration(wait_timeout) if wait_timeout else None
        if not client.redis.exists(keys.task(task_id)):
            from runtime.cli.workflows import follow_flow

            if follow_flow(client, task_id, limit, as_json):
                return
        last = None
        for last in client.watch(task_id, timeout=limit):
            if as_json:
                typer.echo(json.dumps(last.to_json()))
            elif not last.terminal:
                typer.echo(_change_line(last))
        if as_json or last is None:
            return
        st = last
    else:
        try:
            st = client.status(task_id)
        except TaskNotFound:
            from runtime.cli.workflows import show_flow

            if show_flow(client, task_id, as_json):
                return
            raise
        if as_json:
            typer.echo(json.dumps(st.to_json()))
            return
    for label, value in status_rows(st):
        typer.echo(f"{label:<12} {value}")


def _progress_text(st: TaskStatus) -> str:
    if st.progress is None:
        return ""
    value = f"{st.progress:g}"
    text = f"{value}%" if 0 <= st.progress <= 100 else value
    if st.progress_message:
        text += f" {st.progress_message}"
    return text


def _change_line(st: TaskStatus) -> str:
    """One line of ``status --follow``: time, stage, attempt and progress."""
    line = f"{format_time(now_ms())[11:23]}  {st.stage:<11} attempt {st.attempts}"
    progress = _progress_text(st)
    if progress:
        line += f"  {progress}"
    if st.error and st.stage != "in_progress":
        line += f"  ({st.error_label}: {st.error})"
    return line


def status_rows(st: TaskStatus) -> list[tuple[str, str]]:
    """The (label, value) lines of ``wasmq status``; the dashboard shows the same."""
    rows = [
        ("id", st.id),
        ("task", f"{st.task_name} v{st.version}" if st.version else st.task_name),
        ("queue", st.queue),
        ("kind", st.kind),
        ("stage", st.stage),
        ("attempts", f"{st.attempts} (max retries {st.max_retries})"),
        ("outcome", st.error_label or "-"),
    ]
    progress = _progress_text(st)
    if progress:
        when = f" ({human_age((now_ms() - st.progress_ms) / 1000)})" if st.progress_ms else ""
        rows.append(("progress", progress + when))
    if st.error:
        rows.append(("error", st.error))
    rows += [
        ("enqueued", _time(st.enqueued_ms)),
        ("started", _time(st.started_ms)),
        ("finished", _time(st.finished_ms)),
        ("duration", _ms(st.duration_ms)),
        ("timeout", _ms(st.timeout_ms)),
        ("memory", format_size(st.memory_limit_bytes) if st.memory_limit_bytes else "default"),
        ("worker", st.worker or "-"),
        ("digest", st.digest or "-"),
    ]
    if st.extra.get("priority"):
        rows.append(("priority", st.extra["priority"]))
    if st.extra.get("earlier_error"):
        rows.append(("earlier error", st.extra["earlier_error"]))
    if st.scheduled_ms:
        rows.append(("scheduled", _time(st.scheduled_ms)))
    if st.cron_expr:
        rows.append(("cron", st.cron_expr))
    if st.next_run_ms:
        rows.append(("next run", _time(st.next_run_ms)))
    if st.cron_id:
        rows.append(("cron entry", st.cron_id))
    logs = format_size(st.log_bytes)
    if st.log_dropped:
        logs += f", {format_size(st.log_dropped)} dropped"
    rows.append(("logs", logs))
    if st.log_file:
        rows.append(("log file", st.log_file))
    return rows


def result_cmd(
    ctx: typer.Context,
    task_id: str = typer.Argument(..., help="Task id."),
    wait: bool = typer.Option(False, "--wait", help="Wait until the task ends."),
    timeout: str | None = typer.Option(
        None, "--wait-timeout", "--timeout", help="Longest wait, e.g. 30s."
    ),
    raw: bool = typer.Option(False, "--raw", help="The exact bytes (no newline added)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print a task's result (a failed task's error goes to stderr, exit 1).

    Text that does not end with a newline gets one; other bytes are written as they are."""
    from runtime.cli.waiting import wait_result, write_result

    limit = parse_duration(timeout) if timeout else None
    client = _client(ctx)
    value = wait_result(client, task_id, limit) if wait else client.result(task_id)
    if as_json:
        typer.echo(json.dumps({"id": task_id, **result_json(value)}))
        return
    write_result(value, raw)


def result_json(value: bytes) -> dict[str, object]:
    """A result in JSON: its text, or base64 when it is not UTF-8, and its size."""
    try:
        text, encoding = value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(value).decode(), "base64"
    return {"result_bytes": len(value), "encoding": encoding, "result": text}


def logs_cmd(
    ctx: typer.Context,
    task_id: str = typer.Argument(..., help="Task id."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the task ends."),
    stream: str | None = choice_option(
        None, "--stream", values=STREAM_NAMES.values(), help="Only this stream (default both)."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " (JSON Lines with --follow)"),
) -> None:
    """Print a task's captured stdout and stderr, with stream and time per line."""
    client = _client(ctx)
    chunks = client.logs(task_id, follow=follow, stream=stream)
    # --json: one array of chunk objects, or with --follow the same objects as JSON Lines.
    rows: list[dict[str, object]] = []
    for chunk in chunks:
        if as_json:
            row = {"id": task_id, **chunk_json(chunk)}
            if follow:
                typer.echo(json.dumps(row))
            else:
                rows.append(row)
        else:
            for line in format_lines([chunk]):
                typer.echo(line)
    try:
        dropped = client.status(task_id).log_dropped
    except TaskNotFound:
        dropped = 0
    if as_json:
        marker = {"id": task_id, "truncated": True, "dropped_bytes": dropped}
        if dropped and follow:
            typer.echo(json.dumps(marker))
        elif not follow:
            typer.echo(json.dumps([*rows, marker] if dropped else rows))
    elif dropped:
        typer.echo(truncation_marker(dropped))


def list_cmd(
    ctx: typer.Context,
    queue: str | None = typer.Option(
        None, "--queue", "-q", help="Only this queue.", autocompletion=complete_queue_names
    ),
    stage: str | None = choice_option(None, "--stage", values=Stage, help="Only this stage."),
    task: str | None = typer.Option(
        None, "--task", help="Only tasks with this name.", autocompletion=complete_task_names
    ),
    limit: int = typer.Option(
        50, "--limit", "-n", min=1, max=ceilings.LIST_LIMIT, help="Most tasks shown."
    ),
    scan: int = typer.Option(
        LIST_SCAN,
        "--scan",
        min=1,
        max=ceilings.LIST_SCAN,
        help="Most ids read from each list for the filters.",
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List tasks, newest first (scheduled ones: the soonest due)."""
    page = _client(ctx).list_page(queue=queue, stage=stage, task=task, limit=limit, scan=scan)
    rows = page.tasks
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in rows]))
    elif not rows:
        typer.echo("no tasks", err=True)
    else:
        typer.echo(f"{'ID':<36}  {'TASK':<16} {'QUEUE':<10} {'STAGE':<11} {'TRIES':>5}  ENQUEUED")
        for r in rows:
            typer.echo(
                f"{r.id:<36}  {r.task_name:<16} {r.queue:<10} {r.stage:<11} {r.attempts:>5}"
                f"  {_time(r.enqueued_ms)}"
            )
    if not page.complete:
        typer.echo(
            f"note: read the newest {page.scan} ids of each list (and the {page.scan} soonest"
            " due scheduled tasks) for the filters; older tasks may match too (--scan N)",
            err=True,
        )


def stats_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Per queue: tasks by stage, completions in the last minute, oldest pending wait."""
    report = _client(ctx).stats_report()
    if as_json:
        scheduled = {
            "total": report.scheduled_total,
            "sampled": report.scheduled_sampled,
            "estimated": report.scheduled_estimated,
        }
        rows = [r.to_json() for r in report.queues]
        limits = [u.to_json() for u in report.limits]
        typer.echo(
            json.dumps(
                {"now_ms": now_ms(), "queues": rows, "scheduled": scheduled, "limits": limits}
            )
        )
        return
    typer.echo(_stats_header())
    for r in report.queues:
        typer.echo(_stats_row(r))
    if report.limits:
        typer.echo("")
        typer.echo(limits_table(report.limits))
    if report.scheduled_estimated:
        where = "the queues' scheduled sets" if keys.tagged() else keys.scheduled()
        typer.echo(
            f"~ estimated: split from {report.scheduled_sampled} random entries of the"
            f" {report.scheduled_total} in {where}",
            err=True,
        )


def _stats_header() -> str:
    return (
        f"{'QUEUE':<16} {'PENDING':>8} {'RUNNING':>8} {'SCHED':>8} {'RETRY':>8} {'CRON':>6}"
        f" {'FINISHED':>9} {'DLQ':>6} {'DONE/MIN':>9}  OLDEST PENDING"
    )


def _stats_row(r: QueueStats) -> str:
    mark = "~" if r.scheduled_estimated else ""
    sched, retry, cron = (f"{mark}{n}" for n in (r.scheduled, r.retrying, r.cron))
    return (
        f"{r.queue:<16} {r.pending:>8} {r.in_progress:>8} {sched:>8} {retry:>8}"
        f" {cron:>6} {r.finished:>9} {r.dlq:>6} {r.completed_last_minute:>9}"
        f"  {_ms(r.oldest_pending_age_ms)}"
    )


def install(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("status")(status_cmd)
    app.command("result")(result_cmd)
    app.command("logs")(logs_cmd)
    app.command("list")(list_cmd)
    app.command("stats")(stats_cmd)
