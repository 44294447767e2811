"""The task index: every task wasmq creates, by enqueue time, per queue and per task name.

The enqueue, cron and flow scripts add each new id to ``wasmq:index:queue:<queue>`` and
``wasmq:index:task:<name>`` (sorted sets scored by enqueue ms; ``index_task`` in the Lua
prelude; on a Redis Cluster the name index is per queue,
``wasmq:index:task:{<queue>}:<name>``). :func:`browse` pages through them newest first:
one index when the filters name a queue or a task, a lazy merge of every queue's index
otherwise (and of every queue's index of the name, on a cluster). A page costs a rank
lookup and ranged reads of the index (``O(log N + page)``) plus one pipelined read of
the records it shows, at any index size; filters the index cannot answer (stage, or the
queue when the task name chose the index) read only the three fields they compare, and
at most ``scan`` entries per page: a page that ran out of budget says so and its cursor
continues where it stopped.

Records expire (retention) and are deleted (``WASMQ_COMPLETED_MAX``) without touching
the index, so :func:`trim` (run by the reaper) drops entries older than twice their
queue's retention and keeps each index to ``WASMQ_INDEX_MAX`` entries; an entry whose
record is gone in between is skipped by :func:`browse`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import redis

from runtime.errors import InvalidTask
from runtime.queue import keys
from runtime.queue.task import Stage, Task, stage_of
from runtime.settings import Settings

#: Index entries read per round trip while a page is filled.
CHUNK = 200
#: Default most index entries one page reads to find matches of filters the index cannot
#: answer.
BROWSE_SCAN = 5_000
#: Fields a stage or queue filter compares, read before any whole record.
_FILTER_FIELDS = ("queue", "task_stage", "wasmq_stage")


@dataclass
class BrowsePage:
    """One page of :func:`browse`: records newest first, and where the next page starts."""

    records: list[Task] = field(default_factory=list)
    #: Continue from here (``cursor=``); None when the index holds nothing further.
    next_cursor: str | None = None
    #: Index entries read for this page.
    scanned: int = 0
    #: True when the page stopped at its scan budget with fewer matches than asked.
    budget_spent: bool = False


@dataclass(frozen=True)
class Cursor:
    """Just after the entry ``(ms, task_id)`` in newest-first order."""

    ms: int
    task_id: str

    def encode(self) -> str:
        return f"{self.ms}:{self.task_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        ms, sep, task_id = text.partition(":")
        if not sep or not ms.isdigit() or not task_id:
            raise InvalidTask(f"cursor {text!r} is not MS:ID: use the next_cursor of a page")
        return cls(int(ms), task_id)


@dataclass(frozen=True)
class TaskFilter:
    """What a page of :func:`browse` keeps: each given field must match (times in ms,
    ``since_ms`` inclusive, ``until_ms`` inclusive)."""

    queue: str | None = None
    task: str | None = None
    stage: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


def browse(
    client: redis.Redis,
    queues: Sequence[str],
    where: TaskFilter,
    cursor: str | None = None,
    limit: int = 50,
    scan: int = BROWSE_SCAN,
) -> BrowsePage:
    """Up to ``limit`` tasks matching ``where``, newest enqueue first; ``queues`` are the
    queues to merge when ``where`` names neither a queue nor a task. ``cursor`` is a
    previous page's ``next_cursor``."""
    queue, task, stage = where.queue, where.task, where.stage
    since_ms, until_ms = where.since_ms, where.until_ms
    if limit < 1:
        raise InvalidTask(f"limit {limit} is below 1: ask for at least one task")
    after = Cursor.decode(cursor) if cursor else None
    if task is not None and keys.tagged():
        # A Redis Cluster keeps a name index per queue (each in its queue's slot).
        index_keys = [keys.index_name(task, q) for q in ([queue] if queue else queues)]
    elif task is not None:
        index_keys = [keys.index_name(task)]
    elif queue is not None:
        index_keys = [keys.index_queue(queue)]
    else:
        index_keys = [keys.index_queue(q) for q in queues]
    streams = [_entries(client, key, after, until_ms, since_ms) for key in index_keys]
    merged = heapq.merge(*streams, key=lambda e: (e[0], e[1]), reverse=True)
    by_queue = keys.tagged() or task is None
    need_fields = stage is not None or (queue is not None and not by_queue)
    page = BrowsePage()
    budget = max(scan, limit)
    last: tuple[int, str] | None = None
    chunk: list[tuple[int, str]] = []
    for entry in merged:
        chunk.append(entry)
        page.scanned += 1
        if len(chunk) >= CHUNK or page.scanned >= budget:
            last = _take(client, chunk, page, limit, queue, stage, need_fields)
            chunk = []
            if len(page.records) >= limit or page.scanned >= budget:
                break
    else:
        if chunk:
            last = _take(client, chunk, page, limit, queue, stage, need_fields)
        if len(page.records) < limit:
            return page  # the index is exhausted: no next page
    page.budget_spent = len(page.records) < limit
    if last is not None:
        page.next_cursor = Cursor(*last).encode()
    return page


def _take(
    client: redis.Redis,
    chunk: list[tuple[int, str]],
    page: BrowsePage,
    limit: int,
    queue: str | None,
    stage: str | None,
    need_fields: bool,
) -> tuple[int, str] | None:
    """Add the matching records of ``chunk`` to ``page``; the last entry looked at."""
    ids = [task_id for _, task_id in chunk]
    if need_fields:
        pipe = client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(keys.task(task_id), _FILTER_FIELDS)
        wanted = []
        for task_id, (queue_raw, stage_raw, fine_raw) in zip(ids, pipe.execute(), strict=True):
            if queue_raw is None and stage_raw is None:
                continue  # the record is gone
            if queue is not None and _text(queue_raw, keys.DEFAULT_QUEUE) != queue:
                continue
            if (
                stage is not None
                and stage_of(_text(stage_raw, Stage.PENDING), _text(fine_raw, "")) != stage
            ):
                continue
            wanted.append(task_id)
    else:
        wanted = ids
    # Only as many records as the page still needs; the cursor stops at the last one read.
    wanted = wanted[: limit - len(page.records)]
    pipe = client.pipeline(transaction=False)
    for task_id in wanted:
        pipe.hgetall(keys.task(task_id))
    for task_id, raw in zip(wanted, pipe.execute() if wanted else [], strict=True):
        if not raw:
            continue
        try:
            record = Task.from_hash(raw)
        except InvalidTask:
            continue
        record.id = record.id or task_id
        page.records.append(record)
    if len(page.records) >= limit and wanted:
        stop = wanted[-1]
        return next(e for e in chunk if e[1] == stop)
    return chunk[-1]


def _entries(
    client: redis.Redis,
    key: str,
    after: Cursor | None,
    until_ms: int | None,
    since_ms: int | None,
) -> Iterator[tuple[int, str]]:
    """``(ms, id)`` of one index newest first, from just after ``after`` (or from
    ``until_ms``) down to ``since_ms``, read ``CHUNK`` at a time by rank."""
    start = _start_rank(client, key, after, until_ms)
    floor = since_ms if since_ms is not None else -math.inf
    while True:
        rows = client.zrevrange(key, start, start + CHUNK - 1, withscores=True)
        for member, score in rows:
            ms = int(score)
            if ms < floor:
                return
            task_id = member.decode()
            # Equal scores come in descending id order; skip those already shown.
            if after is not None and (ms, task_id) >= (after.ms, after.task_id):
                continue
            yield ms, task_id
        if len(rows) < CHUNK:
            return
        start += len(rows)


def _start_rank(client: redis.Redis, key: str, after: Cursor | None, until_ms: int | None) -> int:
    if after is not None:
        rank = client.zrevrank(key, after.task_id)
        if rank is not None:
            return int(rank) + 1
        # Trimmed away since: start at its time (ties are skipped by id).
        return int(client.zcount(key, f"({after.ms}", "+inf"))
    if until_ms is not None:
        return int(client.zcount(key, f"({until_ms}", "+inf"))
    return 0


def _text(raw: bytes | None, default: str) -> str:
    return raw.decode("utf-8", "replace") if raw else default


def trim(client: redis.Redis, settings: Settings, now: int) -> int:
    """Drop index entries older than twice their queue's retention (a task-name index:
    the longest queue retention) and keep each index to ``settings.index_max``;
    returns how many entries went."""
    queues = {m.decode() for m in client.smembers(keys.QUEUES)} | {keys.DEFAULT_QUEUE}
    names = [n.decode() for n in client.hkeys(keys.registry())]
    ages = {q: 2 * settings.retention(q) for q in queues}
    longest = max(ages.values())
    pipe = client.pipeline(transaction=False)
    targets = [(keys.index_queue(q), ages[q]) for q in sorted(queues)]
    if keys.tagged():
        targets += [(keys.index_name(n, q), ages[q]) for q in sorted(queues) for n in names]
    else:
        targets += [(keys.index_name(n), longest) for n in names]
    for key, age in targets:
        pipe.zremrangebyscore(key, "-inf", f"({now - int(age * 1000)}")
        if settings.index_max > 0:
            pipe.zremrangebyrank(key, 0, -(settings.index_max + 1))
    return sum(int(n) for n in pipe.execute())
