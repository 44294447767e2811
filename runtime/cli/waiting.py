"""``--wait`` of ``enqueue`` and ``result``: a status line while waiting, a hint when no
worker serves the queue, and the result written the same way by both."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import typer

from runtime.cli.progress import Status
from runtime.errors import TaskNotFinished, TaskNotFound
from runtime.queue.task import TERMINAL_STAGES, Stage

if TYPE_CHECKING:
    from runtime.client import Client

#: Seconds of each wait between two looks at the task's stage (for the status line).
SLICE = 1.0


def warn_if_unserved(client: Client, queue: str) -> None:
    """One warning line on stderr when no live worker serves ``queue``: the wait would
    otherwise sit there with nothing saying why."""
    if any(w.alive and queue in w.queues for w in client.workers()):
        return
    typer.echo(
        f"warning: no live worker serves queue '{queue}'; start one with:"
        f" wasmq worker --queue {queue}",
        err=True,
    )


def wait_result(client: Client, task_id: str, limit: float | None) -> bytes:
    """The task's result once it ends (raises as :meth:`Client.result` does), with a
    status line while it waits; ``limit`` seconds at most, ``None`` for no limit."""
    try:
        status = client.status(task_id)
    except TaskNotFound:
        # A later chain step or a chord's callback is created when its turn comes.
        if not client.flow_member_to_come(task_id):
            raise
        stage = "waiting"
    else:
        if status.stage not in TERMINAL_STAGES and status.stage != Stage.IN_PROGRESS:
            warn_if_unserved(client, status.queue)
        stage = str(status.stage)
    deadline = None if limit is None else time.monotonic() + limit
    with Status(f"waiting for {task_id} ({stage})") as line:
        while True:
            remaining = SLICE if deadline is None else min(SLICE, deadline - time.monotonic())
            if remaining <= 0:
                raise TaskNotFinished(
                    f"task {task_id} is still {stage} after {limit:g}s;"
                    " wait longer with --wait-timeout"
                )
            try:
                return client.wait_result(task_id, remaining)
            except TaskNotFinished:
                stage = _stage(client, task_id)
                line.update(f"waiting for {task_id} ({stage})")


def _stage(client: Client, task_id: str) -> str:
    try:
        return str(client.status(task_id).stage)
    except TaskNotFound:
        if not client.flow_member_to_come(task_id):
            raise
        return "waiting"


def write_result(value: bytes, raw: bool = False) -> None:
    """The result bytes on stdout, ended with a newline when they are text that lacks one.

    Bytes that are not UTF-8 text are written as they are, so ``> out.png`` keeps an
    image intact; ``raw`` writes text exactly too."""
    out = sys.stdout.buffer
    out.write(value)
    if not raw and value and not value.endswith(b"\n") and _is_text(value):
        out.write(b"\n")
    out.flush()


def _is_text(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\0" not in value
