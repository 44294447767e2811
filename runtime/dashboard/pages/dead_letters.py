"""``/dlq``: dead-lettered tasks, with redrive (one, selected, all) and purge.

Every action goes through :class:`runtime.client.Client`, as ``wasmq dlq`` does, so the
dashboard moves tasks exactly as the CLI would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from runtime.dashboard.app import dash
from runtime.errors import InvalidTask
from runtime.queue import ceilings
from runtime.queue.broker import BadTask
from runtime.queue.names import check_queue_name, check_task_id
from runtime.queue.queries import error_label
from runtime.queue.task import Task
from runtime.units import parse_duration

#: Rows shown unless ``?limit=`` asks for another count.
DEFAULT_LIMIT = 100


@dataclass
class Row:
    id: str
    task_name: str
    queue: str
    attempts: int | None
    error: str
    kind: str
    failed_ms: int | None
    version: str


def _row(item: Task | BadTask) -> Row:
    if isinstance(item, BadTask):
        return Row(item.id, "", item.queue, None, item.error, "invalid", None, "")
    retryable = item.extra.get("retryable") == "1"
    return Row(
        id=item.id,
        task_name=item.task_name,
        queue=item.queue,
        attempts=item.attempts,
        error=item.error,
        kind=error_label(item.error_kind, retryable),
        failed_ms=item.finished_ms or None,
        version=item.version,
    )


def _queue(text: str | None) -> str | None:
    """The queue filter: ``None`` (every queue) or a valid queue name."""
    if not text:
        return None
    try:
        return check_queue_name(text)
    except ValueError as exc:
        raise InvalidTask(str(exc)) from None


def _limit(text: str | None) -> int:
    if not text:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= ceilings.DLQ_LIMIT:
        raise InvalidTask(
            f"invalid limit {text!r}: give a whole number from 1 to {ceilings.DLQ_LIMIT}"
        )
    return limit


def page(request: Request) -> Response:
    d = dash(request)
    queue = _queue(request.query_params.get("queue"))
    limit = _limit(request.query_params.get("limit"))
    rows = [_row(item) for item in d.client.dlq_list(queue, limit)]
    return d.render(
        request,
        "dead_letters.html",
        {
            "title": "Dead letters",
            "rows": rows,
            "queue": queue or "",
            "queues": d.client.queues(),
            "limit": limit,
        },
    )


def _versions_note(versions: Sequence[tuple[str, str, str]]) -> str:
    """Which version the redriven tasks run, and which is current when that differs."""
    parts = []
    for name, version, current in versions:
        part = f"{name} v{version}" if version else name
        if current and current != version:
            part += f"; v{current} is current"
        parts.append(part)
    return f" ({'; '.join(parts)})" if parts else ""


def _back(queue: str | None) -> str:
    return f"/dlq?queue={queue}" if queue else "/dlq"


async def redrive(request: Request) -> Response:
    """``one`` (a row's button), else ``all=1`` (every dead letter of the shown queue
    filter), else the checked ``id`` boxes; ``latest`` runs the current version."""
    d = dash(request)
    form = await d.action(request)
    queue = _queue(str(form.get("queue") or ""))
    latest = form.get("latest") in ("1", "on")
    one = str(form.get("one") or "")
    ids: list[str] | None
    if one:
        ids = [check_task_id(one)]
    elif form.get("all") == "1":
        ids = None
    else:
        ids = [check_task_id(str(i)) for i in form.getlist("id")]
        if not ids:
            return d.done(request, _back(queue), "no dead letters selected: tick some first")
    moved: list[str] = await d.call(d.client.dlq_redrive, ids, queue=queue, latest=latest)
    versions = await d.call(d.client.versions_to_run, moved) if moved else []
    message = f"redrove {len(moved)} task{'' if len(moved) == 1 else 's'}"
    message += _versions_note(versions)
    missing = sorted(set(ids or []) - set(moved))
    if missing:
        message += f"; not in the dead-letter list: {', '.join(missing)}"
    return d.done(request, _back(queue), message)


async def purge(request: Request) -> Response:
    """Every dead letter of the shown queue filter, or only those that failed longer
    ago than ``older_than``."""
    d = dash(request)
    form = await d.action(request)
    queue = _queue(str(form.get("queue") or ""))
    older_text = str(form.get("older_than") or "").strip()
    try:
        older = parse_duration(older_text) if older_text else None
    except ValueError as exc:
        raise InvalidTask(f"invalid older than {older_text!r}: {exc} (e.g. 7d, 12h)") from None
    count: int = await d.call(d.client.dlq_purge, older, queue=queue)
    scope = f" older than {older_text}" if older_text else ""
    return d.done(
        request, _back(queue), f"purged {count} dead letter{'' if count == 1 else 's'}{scope}"
    )


routes: list[BaseRoute] = [
    Route("/dlq", page, methods=["GET"]),
    Route("/dlq/redrive", redrive, methods=["POST"]),
    Route("/dlq/purge", purge, methods=["POST"]),
]
