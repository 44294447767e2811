"""``/schedules``: cron entries (pause, resume, remove) and the one-off tasks due soonest.

One-off tasks are read from ``task_set:scheduled`` a page at a time by rank, so the page
costs the same however many tasks wait there (on a Redis Cluster, from every queue's
scheduled set, merged by due time); cron entries share that set and are left out of the
second table (the first one lists them).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

import redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from runtime.clock import now_ms
from runtime.dashboard.app import dash
from runtime.errors import InvalidTask
from runtime.queue import keys
from runtime.queue.names import check_task_id
from runtime.queue.slots import scopes
from runtime.queue.task import Kind, Stage, format_time, score_to_ms, stage_of
from runtime.scheduling import cron_entries
from runtime.units import human_age

#: Members of ``task_set:scheduled`` read per page.
PAGE = 100
#: Next runs shown per cron entry.
RUNS = 3
FIELDS = ("task_kind", "task_name", "queue", "task_stage", "attempts", "wasmq_stage")


@dataclass
class Due:
    id: str
    task_name: str
    queue: str
    due_ms: int
    #: ``scheduled`` (a one-off waiting for its time) or ``retrying`` (a backoff).
    kind: str
    attempts: int
    due_in: str


def _text(value: bytes | None) -> str:
    return value.decode(errors="replace") if value else ""


def _ranked(client: redis.Redis, offset: int) -> tuple[list[tuple[bytes, float]], int]:
    """Members at ranks ``offset`` .. ``offset + PAGE`` by due time, and how many there
    are: of the one scheduled set, or of every queue's on a Redis Cluster, where the
    page is a merge of each set's first ``offset + PAGE`` (a deep page costs its depth)."""
    sets = [keys.scheduled(scope) for scope in scopes(client)]
    first, last = (offset, offset + PAGE - 1) if len(sets) == 1 else (0, offset + PAGE - 1)
    pipe = client.pipeline(transaction=False)
    for key in sets:
        pipe.zrange(key, first, last, withscores=True)
        pipe.zcard(key)
    replies = pipe.execute()
    total = sum(int(n) for n in replies[1::2])
    if len(sets) == 1:
        return replies[0], total
    merged = heapq.merge(*replies[::2], key=lambda member: (member[1], member[0]))
    return list(itertools.islice(merged, offset, offset + PAGE)), total


def scheduled_page(client: redis.Redis, offset: int, now: int) -> tuple[list[Due], int]:
    """The one-off tasks at ranks ``offset`` .. ``offset + PAGE`` of the scheduled set
    (cron entries skipped) and the size of the whole set."""
    members, total = _ranked(client, offset)
    if not members:
        return [], int(total)
    pipe = client.pipeline(transaction=False)
    for member, _score in members:
        pipe.hmget(keys.task(_text(member)), FIELDS)
    rows: list[Due] = []
    for (member, score), values in zip(members, pipe.execute(), strict=True):
        kind, name, queue, stage, attempts, fine = values
        if _text(kind) == str(int(Kind.CRON)):
            continue
        due = score_to_ms(score)
        rows.append(
            Due(
                id=_text(member),
                task_name=_text(name) or "-",
                queue=_text(queue) or keys.DEFAULT_QUEUE,
                due_ms=due,
                kind="retrying"
                if stage_of(_text(stage), _text(fine)) == Stage.RETRYING
                else "scheduled",
                attempts=int(attempts or 0),
                due_in=human_age((now - due) / 1000),
            )
        )
    return rows, int(total)


def _offset(text: str | None) -> int:
    if not text:
        return 0
    try:
        offset = int(text)
    except ValueError:
        offset = -1
    if offset < 0:
        raise InvalidTask(f"invalid offset {text!r}: give a whole number of 0 or more")
    return offset


def page(request: Request) -> Response:
    d = dash(request)
    offset = _offset(request.query_params.get("offset"))
    now = now_ms()
    entries = cron_entries.list_entries(d.client.redis, now=now, runs=RUNS)
    due, total = scheduled_page(d.client.redis, offset, now)
    return d.render(
        request,
        "schedules.html",
        {
            "title": "Cron & scheduled",
            "entries": entries,
            "due": due,
            "total": total,
            "offset": offset,
            "page_size": PAGE,
            "next_offset": offset + PAGE if offset + PAGE < total else None,
            "prev_offset": max(offset - PAGE, 0) if offset > 0 else None,
        },
    )


async def _entry(request: Request) -> str:
    form = await dash(request).action(request)
    return check_task_id(str(form.get("entry") or ""))


async def pause(request: Request) -> Response:
    d = dash(request)
    entry = await _entry(request)
    compat = d.client.settings.reference_compat
    changed = await d.call(cron_entries.pause, d.client.redis, entry, compat=compat)
    message = f"paused {entry}" if changed else f"{entry} was paused already"
    return d.done(request, "/schedules", message)


async def resume(request: Request) -> Response:
    d = dash(request)
    entry = await _entry(request)
    compat = d.client.settings.reference_compat
    nxt = await d.call(cron_entries.resume, d.client.redis, entry, compat=compat)
    message = f"resumed {entry}; next run {format_time(nxt)}" if nxt else f"{entry} was not paused"
    return d.done(request, "/schedules", message)


async def remove(request: Request) -> Response:
    d = dash(request)
    entry = await _entry(request)
    await d.call(cron_entries.remove, d.client.redis, entry)
    return d.done(request, "/schedules", f"removed cron entry {entry}; its past runs are kept")


routes: list[BaseRoute] = [
    Route("/schedules", page, methods=["GET"]),
    Route("/schedules/pause", pause, methods=["POST"]),
    Route("/schedules/resume", resume, methods=["POST"]),
    Route("/schedules/remove", remove, methods=["POST"]),
]
