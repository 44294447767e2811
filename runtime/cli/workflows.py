"""CLI for flows: ``group`` (a chord with ``--callback``), chains made by ``enqueue --then``,
and what ``status`` and ``cancel`` show for a flow id."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import typer

from runtime.cli.context import state
from runtime.cli.options import max_retries_option, queue_option, timeout_option
from runtime.errors import InvalidTask
from runtime.units import human_age

if TYPE_CHECKING:
    from runtime.client import Client, FlowStep
    from runtime.queue.flows import FlowStatus


def _client(ctx: typer.Context) -> Client:
    from runtime.client import Client

    st = state(ctx)
    return Client(settings=st.settings(), client=st.redis())


def parse_step(text: str) -> FlowStep:
    """``NAME`` or ``NAME=PAYLOAD`` (text, ``@FILE`` or ``@-``); task names hold no ``=``."""
    from runtime.cli.queue import read_payload

    name, sep, payload = text.partition("=")
    if not name:
        raise InvalidTask(f"invalid flow task {text!r}: write NAME or NAME=PAYLOAD")
    return (name, read_payload(payload)) if sep else name


def enqueue_chain(
    client: Client,
    first: tuple[str, bytes],
    then: list[str],
    options: dict[str, Any],
    flow_id: str | None,
) -> str:
    """``enqueue NAME --then NAME2 ...``: the chain's flow id."""
    steps: list[FlowStep] = [first, *(parse_step(step) for step in then)]
    return client.chain(*steps, id=flow_id, **options).id


def group(
    ctx: typer.Context,
    members: list[str] = typer.Argument(
        ..., help="Member tasks in order, each NAME or NAME=PAYLOAD (text, @FILE, @-)."
    ),
    callback: str | None = typer.Option(
        None, "--callback", help="Makes a chord: task run once every member has completed."
    ),
    queue: str | None = queue_option(),
    max_retries: int | None = max_retries_option(),
    timeout: str | None = timeout_option(),
    flow_id: str | None = typer.Option(None, "--id", help="Flow id; makes it idempotent."),
) -> None:
    """Enqueue tasks as one group (a chord with --callback); prints the flow id."""
    client = _client(ctx)
    options: dict[str, Any] = {"queue": queue, "max_retries": max_retries, "timeout": timeout}
    steps = [parse_step(member) for member in members]
    if callback is None:
        flow = client.group(steps, id=flow_id, **options)
    else:
        flow = client.chord(steps, callback, id=flow_id, **options)
    typer.echo(flow.id)


def show_flow(client: Client, flow_id: str, as_json: bool) -> bool:
    """``status`` of an id that is no task: the flow's, if there is one."""
    from runtime.errors import TaskNotFound

    try:
        st = client.flow(flow_id)
    except TaskNotFound:
        return False
    if as_json:
        typer.echo(json.dumps(st.to_json()))
        return True
    for label, value in _rows(st):
        typer.echo(f"{label:<12} {value}")
    return True


#: States after which a flow changes only by a redrive or a cancel.
ENDED = frozenset({"completed", "failed", "cancelled"})
#: How often ``status --follow`` of a flow looks again (s): a flow's members run on many
#: workers and change no key a subscriber could hear as one event.
FOLLOW_POLL = 0.25


def follow_flow(client: Client, flow_id: str, timeout: float | None, as_json: bool) -> bool:
    """``status --follow`` of an id that is no task: each change of the flow's state or
    counts, until it ends (or ``timeout`` s pass), then its status; False when there is
    no such flow."""
    from runtime.clock import now_ms
    from runtime.errors import TaskNotFound
    from runtime.queue.task import format_time

    deadline = None if timeout is None else time.monotonic() + timeout
    last: tuple[object, ...] | None = None
    while True:
        try:
            st = client.flow(flow_id)
        except TaskNotFound:
            if last is None:
                return False
            raise
        seen = (st.state, st.completed, st.failed, st.cancelled, sorted(st.stages.items()))
        if seen != last:
            last = seen
            if as_json:
                typer.echo(json.dumps(st.to_json()))
            else:
                stages = ", ".join(f"{n} {stage}" for stage, n in sorted(st.stages.items()))
                typer.echo(
                    f"{format_time(now_ms())[11:23]}  {st.state:<9} "
                    f"{st.completed}/{st.total} completed, {st.failed} failed"
                    + (f"  ({stages})" if stages else "")
                )
        if st.state in ENDED or (deadline is not None and time.monotonic() >= deadline):
            break
        time.sleep(FOLLOW_POLL)
    if not as_json:
        for label, value in _rows(st):
            typer.echo(f"{label:<12} {value}")
    return True


def _rows(st: FlowStatus) -> list[tuple[str, str]]:
    from runtime.clock import now_ms

    stages = ", ".join(f"{n} {stage}" for stage, n in sorted(st.stages.items()))
    rows = [
        ("flow", st.id),
        ("kind", st.kind),
        ("state", st.state),
        (
            "tasks",
            f"{st.total}: {st.completed} completed, {st.failed} failed, {st.cancelled} cancelled",
        ),
        ("stages", stages or "-"),
    ]
    if st.callback_id:
        rows.append(("callback", f"{st.callback_id} ({st.callback_stage})"))
    if st.created_ms:
        rows.append(("created", human_age((now_ms() - st.created_ms) / 1000)))
    shown = st.members[:20]
    for task_id, stage in shown:
        rows.append(("member", f"{task_id} {stage}"))
    if len(st.members) > len(shown):
        rows.append(("member", f"... {len(st.members) - len(shown)} more (--json lists all)"))
    return rows


def cancel_flow(client: Client, flow_id: str) -> str | None:
    """``cancel`` of an id that is no task but a flow: the line to print, else None."""
    from runtime.queue import keys

    if client.redis.exists(keys.task(flow_id)) or not client.redis.exists(keys.flow(flow_id)):
        return None
    status, waiting, running = client.cancel_flow(flow_id)
    if status == "final":
        return f"flow {flow_id} had already ended; nothing to cancel"
    return f"cancelled flow {flow_id}: {waiting} waiting task(s), {running} running stopped"


def install(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("group")(group)
