"""CLI commands: enqueue, worker, workers, cancel, dlq, reaper."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from runtime.cli.choices import choice_option, complete_queue_names, complete_task_names
from runtime.cli.context import state
from runtime.cli.options import max_retries_option, queue_option, timeout_option
from runtime.clock import now_ms
from runtime.errors import InvalidTask, WasmqError
from runtime.queue import ceilings, keys
from runtime.queue.task import Task
from runtime.units import human_age

if TYPE_CHECKING:
    from runtime.client import Client

#: How long ``cancel`` waits for a running task's worker to confirm it stopped it (s).
CANCEL_WAIT = 2.0

#: Most worker processes of one pool (``worker -c``): each holds its own engine, module
#: cache and Redis connections, so more than this is a typo rather than a machine.
MAX_CONCURRENCY = 256

dlq_app = typer.Typer(help="Dead-lettered tasks: list, redrive, purge.", no_args_is_help=True)


def _client(ctx: typer.Context) -> Client:
    from runtime.client import Client

    st = state(ctx)
    return Client(settings=st.settings(), client=st.redis())


def read_payload(value: str) -> bytes:
    """``--payload``: the text itself, ``@FILE`` for a file's bytes, ``@-`` for stdin."""
    if value.startswith("@"):
        name = value[1:]
        if name == "-":
            return sys.stdin.buffer.read()
        try:
            return Path(name).read_bytes()
        except OSError as exc:
            raise InvalidTask(f"cannot read payload file {name}: {exc.strerror}") from None
    return value.encode()


def enqueue(
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., help="Registered task name.", autocompletion=complete_task_names
    ),
    payload: str = typer.Option("", "--payload", "-p", help="Payload text, @FILE or @- (stdin)."),
    queue: str | None = queue_option(),
    max_retries: int | None = max_retries_option(),
    timeout: str | None = timeout_option(),
    task_id: str | None = typer.Option(None, "--id", help="Task id; makes enqueue idempotent."),
    at: str | None = typer.Option(None, "--at", help="Run once at this RFC3339 time."),
    delay: str | None = typer.Option(None, "--in", help="Run once after this delay, e.g. 30s."),
    cron: str | None = typer.Option(None, "--cron", help="Cron expression of a recurring task."),
    tz: str = typer.Option("UTC", "--tz", help="Time zone of --cron."),
    memory: str | None = typer.Option(None, "--memory", help="Memory limit, e.g. 64MiB."),
    keep_result: str | None = typer.Option(
        None, "--keep-result", help="Keep result and record this long, e.g. 7d (WASMQ_RESULT_TTL)."
    ),
    keep_payload: bool = typer.Option(
        False, "--keep-payload", help="Keep the payload after success (dropped by default)."
    ),
    priority: str | None = choice_option(
        None, "--priority", values=keys.PRIORITIES, help="Level within the queue (normal)."
    ),
    unique_key: str | None = typer.Option(
        None, "--unique-key", help="Unique key: while its task has not ended, return that task."
    ),
    unique: bool = typer.Option(
        False, "--unique", help="Unique by task name, queue and payload (a derived key)."
    ),
    unique_for: str | None = typer.Option(
        None, "--unique-for", help="Longest time the unique key is held (1h)."
    ),
    then: list[str] | None = typer.Option(
        None, "--then", help="Chain: NAME[=PAYLOAD] run next with the result; repeatable."
    ),
    wait: bool = typer.Option(False, "--wait", help="Wait for the result and print it."),
    wait_timeout: str | None = typer.Option(None, "--wait-timeout", help="Longest wait."),
    raw: bool = typer.Option(
        False, "--raw", help="With --wait: the result's exact bytes (no newline added)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the task as JSON."),
) -> None:
    """Enqueue a task (now, at a time, after a delay, or on a cron schedule)."""
    client = _client(ctx)
    if sum(x is not None for x in (at, delay, cron)) > 1:
        raise InvalidTask("give at most one of --at, --in and --cron")
    if wait and cron:
        raise InvalidTask("--wait cannot wait for a cron entry; wait for one of its runs")
    options: dict[str, Any] = {
        "queue": queue,
        "max_retries": max_retries,
        "timeout": timeout,
        "id": task_id,
        "memory": memory,
        "keep_result": keep_result,
        "keep_payload": keep_payload,
        "priority": priority,
    }
    if unique_key is not None or unique or unique_for is not None:
        options.update(unique_key=unique_key, unique=unique, unique_for=unique_for)
    body = read_payload(payload)
    if then:
        _enqueue_chain(client, name, body, then, options, (at, delay, cron, wait, as_json))
        return
    if cron is not None:
        task = client.cron(name, cron, body, tz=tz, **options)
        created = True
    elif at is not None or delay is not None:
        task = client.schedule(name, body, at=at, delay=delay, **options)
        created = True
    else:
        task, created = client.submit(client.task(name, body, **options))
    if not created and task.unique_key and task.id != task_id:
        typer.echo(
            f"task {task.id} holds unique key {task.unique_key} ({task.stage}); nothing enqueued",
            err=True,
        )
    elif not created:
        typer.echo(f"task {task.id} exists already ({task.stage}); nothing enqueued", err=True)
    if as_json:
        _print_json(client, task, wait_timeout, wait)
        return
    if wait:
        # stdout carries only the result, so `wasmq enqueue ... --wait > out` is the result.
        typer.echo(f"enqueued {task.id}", err=True)
    else:
        typer.echo(task.id)
    if wait:
        from runtime.cli.waiting import wait_result, write_result
        from runtime.units import parse_duration

        limit = parse_duration(wait_timeout) if wait_timeout else None
        write_result(wait_result(client, task.id, limit), raw)


def _enqueue_chain(
    client: Client,
    name: str,
    body: bytes,
    then: list[str],
    options: dict[str, Any],
    refused: tuple[object, ...],
) -> None:
    from runtime.cli.workflows import enqueue_chain

    if any(refused):
        raise InvalidTask(
            "--then makes a chain that runs now: drop --at, --in, --cron, --wait and --json"
        )
    flow_id = options.pop("id")
    typer.echo(enqueue_chain(client, (name, body), then, options, flow_id))


def _print_json(client: Client, task: Task, wait_timeout: str | None, wait: bool) -> None:
    """The task as ``wasmq status --json`` shows it; with ``--wait``, once it has ended,
    with its result, so stdout stays one JSON object."""
    from runtime.cli.inspect import result_json
    from runtime.queue.queries import TaskStatus

    if not wait:
        typer.echo(json.dumps(TaskStatus.from_task(task).to_json()))
        return
    from runtime.cli.waiting import wait_result
    from runtime.units import parse_duration

    limit = parse_duration(wait_timeout) if wait_timeout else None
    result = wait_result(client, task.id, limit)
    typer.echo(json.dumps({**client.status(task.id).to_json(), **result_json(result)}))


def worker(
    ctx: typer.Context,
    queue: list[str] | None = typer.Option(
        None,
        "--queue",
        "-q",
        help="Queue to serve; repeat for several (earlier first), NAME:WEIGHT for weighted.",
        autocompletion=complete_queue_names,
    ),
    strict: bool = typer.Option(
        False, "--strict", help="With weights: heaviest queue first on every claim."
    ),
    concurrency: int | None = typer.Option(
        None,
        "--concurrency",
        "-c",
        min=1,
        max=MAX_CONCURRENCY,
        help="Worker processes (default: one per core).",
    ),
    burst: bool = typer.Option(False, "--burst", help="Exit when the queues are empty."),
    registry: Path | None = typer.Option(
        None, "--registry", help="Register every task source in DIR first."
    ),
    no_scheduler: bool = typer.Option(
        False, "--no-scheduler", help="Do not run the scheduler loop."
    ),
    no_reaper: bool = typer.Option(False, "--no-reaper", help="Do not run the reaper loop."),
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve Prometheus metrics of the workers at http://HOST:PORT/metrics.",
    ),
    metrics_host: str = typer.Option(
        "127.0.0.1", "--metrics-host", help="Address of --metrics-port (0.0.0.0: every one)."
    ),
) -> None:
    """Run a pool of worker processes (plus the scheduler and reaper loops)."""
    from runtime.worker.pool import Pool

    st = state(ctx)
    settings = st.settings()
    if registry is not None:
        _register_dir(ctx, registry)
    from runtime.worker.queue_order import QueueOrder

    try:
        order = QueueOrder.parse(list(queue or [settings.queue]), strict=strict)
    except ValueError as exc:
        raise InvalidTask(str(exc)) from None
    st.redis()  # fail fast with one line when Redis is unreachable
    code = Pool(
        settings,
        list(order.queues),
        order=order,
        concurrency=concurrency,
        burst=burst,
        scheduler=not no_scheduler,
        reaper=not no_reaper,
        metrics=None if metrics_port is None else (metrics_host, metrics_port),
    ).run()
    raise typer.Exit(code)


def _register_dir(ctx: typer.Context, directory: Path) -> None:
    from compiler import SUPPORTED_EXTENSIONS
    from runtime.modules.registry import Registry

    if not directory.is_dir():
        raise InvalidTask(f"--registry {directory} is not a directory")
    st = state(ctx)
    reg = Registry(st.settings(), st.redis())
    files = sorted(p for p in directory.iterdir() if p.suffix in SUPPORTED_EXTENSIONS)
    for path in files:
        # The registry logs each one ("task registered", at info), in the log format.
        reg.register(path)


def workers(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List worker processes: id, host, pid, queues, current task, counts, heartbeat."""
    client = _client(ctx)
    rows = client.workers()
    if as_json:
        typer.echo(json.dumps([w.to_json() for w in rows]))
        return
    if not rows:
        typer.echo("no workers")
        return
    header = ("ID", "HOST", "PID", "QUEUES", "CURRENT", "DONE", "FAILED", "HEARTBEAT", "ALIVE")
    now = now_ms()
    table = [header] + [
        (
            w.id,
            w.host,
            str(w.pid),
            ",".join(w.queues),
            w.current_task or "-",
            str(w.done),
            str(w.failed),
            human_age((now - w.heartbeat_ms) / 1000),
            "yes" if w.alive else "no",
        )
        for w in rows
    ]
    _print_table(table)


def _print_table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def cancel(ctx: typer.Context, task_id: str = typer.Argument(..., help="Task id.")) -> None:
    """Cancel a task: a waiting one leaves its queue, a running one is stopped."""
    client = _client(ctx)
    from runtime.cli.workflows import cancel_flow

    if (line := cancel_flow(client, task_id)) is not None:
        typer.echo(line)
        return
    status = client.cancel(task_id, wait=CANCEL_WAIT)
    messages = {
        "cancelled": f"cancelled {task_id}",
        "stopped": f"stopped {task_id} (it was running); its output so far is kept:"
        f" wasmq logs {task_id}",
        "marked": f"task {task_id} is running: marked cancelled; its worker stops it and"
        " discards any result",
        "final": f"task {task_id} had already ended; nothing to cancel",
    }
    typer.echo(messages.get(status, status))


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    queue: str | None = typer.Option(
        None, "--queue", "-q", help="Only this queue.", autocompletion=complete_queue_names
    ),
    limit: int = typer.Option(
        100, "--limit", min=1, max=ceilings.DLQ_LIMIT, help="Most tasks to show."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List dead-lettered tasks, newest first, with their last error and its kind."""
    from runtime.queue.broker import BadTask
    from runtime.queue.queries import error_label

    client = _client(ctx)
    items = client.dlq_list(queue, limit)
    rows: list[dict[str, object]] = []
    for item in items:
        if isinstance(item, BadTask):
            rows.append(
                {
                    "id": item.id,
                    "task_name": None,
                    "queue": item.queue,
                    "attempts": None,
                    "error_kind": "invalid",
                    "retryable": False,
                    "error": item.error,
                    "failed_ms": None,
                }
            )
        else:
            failed = item.finished_ms
            rows.append(
                {
                    "id": item.id,
                    "task_name": item.task_name,
                    "queue": item.queue,
                    "attempts": item.attempts,
                    "error_kind": item.error_kind,
                    "retryable": item.extra.get("retryable") == "1",
                    "error": item.error,
                    "failed_ms": failed or None,
                }
            )
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("dead-letter list is empty")
        return
    table = [("ID", "TASK", "QUEUE", "ATTEMPTS", "FAILED", "KIND", "ERROR")]
    now = now_ms()
    for r in rows:
        table.append(
            (
                str(r["id"]),
                str(r["task_name"] or "-"),
                str(r["queue"]),
                str(r["attempts"] or "-"),
                _failed_ago(r["failed_ms"], now),
                error_label(str(r["error_kind"] or ""), bool(r["retryable"])) or "-",
                str(r["error"] or "")[:100],
            )
        )
    _print_table(table)


def _failed_ago(ms: object, now: int) -> str:
    return human_age((now - ms) / 1000) if isinstance(ms, int) else "-"


def _versions_note(client: Client, moved: Sequence[str]) -> str:
    """Which version of each task the redriven tasks run: " (task_1 v2; v3 is current:
    --latest runs v3)", or "" when none moved."""
    parts = []
    for name, version, current in client.versions_to_run(moved):
        part = f"{name} v{version}" if version else name
        if current and current != version:
            part += f"; v{current} is current: --latest runs v{current}"
        parts.append(part)
    return f" ({'; '.join(parts)})" if parts else ""


@dlq_app.command("redrive")
def dlq_redrive(
    ctx: typer.Context,
    ids: list[str] | None = typer.Argument(None, help="Task ids to redrive."),
    all_: bool = typer.Option(False, "--all", help="Redrive every dead letter."),
    queue: str | None = typer.Option(None, "--queue", "-q", help="Only this queue."),
    latest: bool = typer.Option(
        False, "--latest", help="Run the task's current registered version."
    ),
) -> None:
    """Move dead-lettered tasks back to pending with fresh attempts."""
    if bool(ids) == all_:
        raise InvalidTask("give task ids or --all")
    client = _client(ctx)
    moved = client.dlq_redrive(None if all_ else ids, queue=queue, latest=latest)
    missing = sorted(set(ids or []) - set(moved))
    typer.echo(f"redrove {len(moved)} task(s){_versions_note(client, moved)}")
    if missing:
        raise WasmqError(f"not in the dead-letter list: {', '.join(missing)}")


@dlq_app.command("purge")
def dlq_purge(
    ctx: typer.Context,
    older_than: str | None = typer.Option(
        None, "--older-than", help="Only tasks that failed longer ago, e.g. 7d."
    ),
    queue: str | None = typer.Option(None, "--queue", "-q", help="Only this queue."),
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Purge every dead letter without asking (no filter)."
    ),
) -> None:
    """Delete dead-lettered tasks with their results and logs."""
    from runtime.units import parse_duration

    client = _client(ctx)
    try:
        seconds = parse_duration(older_than) if older_than is not None else None
    except ValueError as exc:
        raise InvalidTask(f"invalid --older-than: {exc}") from None
    if older_than is None and queue is None and not yes:
        # Everything, everywhere, for good: a script must say so, a person is asked.
        if not sys.stdin.isatty():
            raise InvalidTask(
                "dlq purge without --older-than or --queue deletes every dead letter;"
                " pass --yes to confirm"
            )
        if not typer.confirm("Delete every dead letter of every queue?", default=False):
            raise typer.Exit(1)
    typer.echo(f"purged {client.dlq_purge(seconds, queue=queue)} task(s)")


def reaper(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="Recover once and exit."),
) -> None:
    """Run the reaper alone: recover tasks whose worker died (expired leases)."""
    from runtime.queue.broker import Broker
    from runtime.queue.reaper import Reaper

    st = state(ctx)
    reap = Reaper(Broker(st.redis(), st.settings()), st.settings())
    if once:
        recovered = reap.run_once()
        typer.echo(f"recovered {len(recovered)} task(s)")
        return
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=reap.run, args=(stop,), daemon=True)
    thread.start()
    while thread.is_alive():
        time.sleep(0.2)


def install(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("enqueue")(enqueue)
    app.command("worker")(worker)
    app.command("workers")(workers)
    app.command("cancel")(cancel)
    app.command("reaper")(reaper)
    app.add_typer(dlq_app, name="dlq")
