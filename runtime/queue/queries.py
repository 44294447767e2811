"""The read side of the client: status, results, logs, listings and queue statistics.

:class:`Queries` is a mixin: :class:`runtime.client.Client` inherits it and provides
``self.redis`` (bytes responses) and ``self.settings``. Waiting for a result is
event-driven: subscribe to ``task_done:<id>``, then read the stage, then wait for the
message the ack script publishes, so the answer comes about a millisecond after the
task ends and no publish can slip between the check and the wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import redis

from runtime.clock import now_ms
from runtime.errors import InvalidTask, TaskFailed, TaskNotFinished, TaskNotFound
from runtime.output.chunks import LogChunk, read_logs, stream_number
from runtime.output.follow import follow as follow_output
from runtime.output.follow import subscribe_done, wait_message
from runtime.queue import keys
from runtime.queue.slots import scopes
from runtime.queue.task import (
    TERMINAL_STAGES,
    ErrorKind,
    Kind,
    OutcomeKind,
    Stage,
    Task,
    parse_time,
    stage_of,
)
from runtime.queue.throttles import LimitUsage, usage
from runtime.settings import Settings

#: Seconds summed for the completions rate in ``stats`` ("done in the last minute").
COMPLETIONS_WINDOW = 60
#: Most entries of ``task_set:scheduled`` that ``stats`` reads to split its count by queue
#: and by kind. The set is one for every queue (producers in other languages ZADD to
#: it), so a larger set is split by a random sample of this many and marked estimated.
STATS_SCHEDULED_SAMPLE = 1000
#: Default most ids a listing reads from each list and from the scheduled set before it
#: gives up looking for more matches of its filters (``wasmq list --scan``).
LIST_SCAN = 10_000
#: A waiter re-reads the stage this often (s) in case a terminal change was not announced.
WAIT_RECHECK = 2.0


@dataclass
class TaskStatus:
    """What is known about one task (``wasmq status``)."""

    id: str
    task_name: str
    stage: str
    queue: str
    kind: str
    attempts: int
    max_retries: int
    #: ``ok`` for a completed task, the error kind (``timeout``, ``trap``...) for a failed
    #: attempt, ``""`` while nothing has run.
    outcome: str
    error: str
    worker: str
    digest: str
    version: str
    enqueued_ms: int | None
    scheduled_ms: int | None
    started_ms: int | None
    finished_ms: int | None
    duration_ms: float | None
    cron_id: str
    cron_expr: str
    next_run_ms: int | None
    log_bytes: int
    log_dropped: int
    log_file: str
    #: Whether the last failed attempt could be retried (None: nothing failed).
    retryable: bool | None = None
    #: The handler's latest progress report (``wasmq.progress``): value and message,
    #: and when it was recorded.
    progress: float | None = None
    progress_message: str = ""
    progress_ms: int | None = None
    #: The time limit of each attempt (ms) and the memory limit the task asked for
    #: (bytes; None: the worker's default).
    timeout_ms: float | None = None
    memory_limit_bytes: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.stage in TERMINAL_STAGES

    @property
    def error_label(self) -> str:
        """The last error's kind in words: ``handler error (retryable)``, ``trap``, ..."""
        return error_label(self.outcome, self.retryable)

    def to_json(self) -> dict[str, object]:
        """The shape of every ``--json`` task object: absent text is null, sizes ``*_bytes``."""
        out = asdict(self)
        for name in _OPTIONAL_TEXT:
            out[name] = out[name] or None
        out["log_dropped_bytes"] = out.pop("log_dropped")
        return out

    @classmethod
    def from_task(cls, task: Task, compat: bool = False) -> TaskStatus:
        """``compat``: the record counts failed attempts (``WASMQ_REFERENCE_COMPAT``); the
        status counts runs in either mode, so a running or completed task's own run is
        added."""
        extra = dict(task.extra)
        if task.priority != keys.DEFAULT_PRIORITY:
            extra["priority"] = task.priority

        def number(name: str) -> int:
            try:
                return int(extra.pop(name, "0") or 0)
            except ValueError:
                return 0

        duration_text = extra.pop("duration_ms", "")
        try:
            duration = float(duration_text) if duration_text else None
        except ValueError:
            duration = None
        completed = task.stage == Stage.COMPLETED
        outcome = OutcomeKind.OK if completed else task.error_kind
        retryable_text = extra.pop("retryable", "")
        error, error_kind = task.error, task.error_kind
        if completed and error:
            # A reference worker's ack leaves an earlier attempt's error behind: it is
            # not how the task ended.
            extra["earlier_error"] = error
            error, error_kind = "", ""
        progress_text = extra.pop("progress", "")
        try:
            progress = float(progress_text) if progress_text else None
        except ValueError:
            progress = None
        progress_message = extra.pop("progress_message", "")
        return cls(
            id=task.id,
            task_name=task.task_name,
            stage=task.stage,
            queue=task.queue,
            kind=Kind(task.kind).name.lower(),
            attempts=task.attempts + (1 if compat and task.stage in _RAN else 0),
            max_retries=task.max_retries,
            outcome=outcome,
            error=error,
            worker=task.worker,
            digest=task.digest,
            version=task.version,
            enqueued_ms=task.created_ms or None,
            scheduled_ms=task.scheduled_ms,
            started_ms=task.started_ms,
            finished_ms=task.finished_ms,
            duration_ms=duration,
            cron_id=task.cron_id,
            cron_expr=task.cron_expr,
            next_run_ms=task.next_run_ms,
            log_bytes=number("log_bytes"),
            log_dropped=number("log_dropped"),
            log_file=extra.pop("log_file", ""),
            retryable=None if not error_kind else retryable_text == "1",
            progress=progress,
            progress_message=progress_message,
            progress_ms=number("progress_ms") or None,
            timeout_ms=task.timeout * 1000,
            memory_limit_bytes=task.limits.memory,
            extra={k: v for k, v in extra.items() if k not in _HIDDEN_EXTRA},
        )


def error_label(kind: str, retryable: bool | None) -> str:
    """An error kind as people read it; a handler's own error says which kind it was."""
    if kind == ErrorKind.HANDLER:
        return "handler error (retryable)" if retryable else "handler error (terminal)"
    return kind


# Text fields of a task that are empty until something sets them: null in JSON.
_OPTIONAL_TEXT = (
    "outcome",
    "error",
    "worker",
    "digest",
    "version",
    "cron_id",
    "cron_expr",
    "log_file",
    "progress_message",
)

# Stages whose current or last run a failure count leaves out.
_RAN = frozenset({Stage.IN_PROGRESS, Stage.COMPLETED})

# Hash fields that are internal bookkeeping or shown elsewhere.
_HIDDEN_EXTRA = frozenset({"paused", "attempt_id", "lease"})


@dataclass
class QueueStats:
    """Counts for one queue (``wasmq stats``)."""

    queue: str
    pending: int
    in_progress: int
    scheduled: int
    retrying: int
    cron: int
    finished: int
    dlq: int
    completed_last_minute: int
    oldest_pending_age_ms: int | None
    #: ``scheduled``, ``retrying`` and ``cron`` are scaled from a random sample of
    #: ``task_set:scheduled`` (see :data:`STATS_SCHEDULED_SAMPLE`), not counted.
    scheduled_estimated: bool = False

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class StatsReport:
    """``wasmq stats``: the per-queue rows and how the scheduled set was counted."""

    queues: list[QueueStats]
    #: Entries of ``task_set:scheduled`` (every queue's scheduled, retrying and cron); exact.
    scheduled_total: int
    #: Entries read to split that total by queue and kind (all of them when it is small).
    scheduled_sampled: int
    #: Each rate or concurrency limit with what it holds now (empty when none is set).
    limits: list[LimitUsage] = field(default_factory=list)

    @property
    def scheduled_estimated(self) -> bool:
        return self.scheduled_sampled < self.scheduled_total


@dataclass
class TaskPage:
    """One ``wasmq list`` page and whether the search behind it was exhaustive."""

    tasks: list[TaskStatus]
    #: Most ids read from each list and from the scheduled set.
    scan: int
    #: False when some list or the scheduled set held more ids than ``scan`` and the
    #: page is short of matches there: older tasks may match the filters too.
    complete: bool = True


@dataclass
class TaskBrowse:
    """One page of :meth:`Queries.browse`."""

    tasks: list[TaskStatus]
    #: Pass as ``cursor`` for the next page; None on the last one.
    next_cursor: str | None
    #: Index entries read for this page.
    scanned: int
    #: The page stopped at its scan budget with fewer matches than asked: older tasks may
    #: still match (the cursor continues the search).
    budget_spent: bool


#: Where tasks of a stage wait, so that a stage filter reads only those places. The
#: scheduled set can hold ``pending`` tasks: the reference producer ZADDs them so.
#: Other stages (cancelled, paused, a producer's own) are looked for everywhere.
_STAGE_HOMES: dict[str, frozenset[str]] = {
    Stage.PENDING: frozenset({"pending", "scheduled"}),
    Stage.IN_PROGRESS: frozenset({"processing"}),
    Stage.COMPLETED: frozenset({"finished"}),
    Stage.FAILED: frozenset({"dlq"}),
    Stage.SCHEDULED: frozenset({"scheduled"}),
    Stage.RETRYING: frozenset({"scheduled"}),
}
_EVERYWHERE = frozenset({*keys.STAGES, "scheduled"})
#: Fields a filter needs: read first, so that non-matching records are never read whole.
_FILTER_FIELDS = ["queue", "task_stage", "task_name", "wasmq_stage"]


class _Source(NamedTuple):
    """A queue list or the scheduled set: ``read(start, stop)`` ids by rank, ``length()``."""

    read: Callable[[int, int], list[bytes]]
    length: Callable[[], int]


class Queries:
    """Read-only queries about tasks; mixed into :class:`runtime.client.Client`."""

    redis: redis.Redis
    settings: Settings

    # -- one task -----------------------------------------------------------------

    def status(self, task_id: str) -> TaskStatus:
        """The task's record; raises :class:`TaskNotFound` for an unknown id."""
        raw = self.redis.hgetall(keys.task(task_id))
        if not raw:
            raise TaskNotFound(task_id)
        task = Task.from_hash(raw)
        task.id = task.id or task_id
        return TaskStatus.from_task(task, self.settings.reference_compat)

    def watch(
        self, task_id: str, interval: float = 0.25, timeout: float | None = None
    ) -> Iterator[TaskStatus]:
        """The task's status now, then again each time its stage, attempt or progress
        changes, until it ends (the last one yielded is terminal) or ``timeout`` passes.

        Progress is written at most every quarter second, so polling at ``interval``
        misses no report worth showing."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: tuple[object, ...] | None = None
        while True:
            st = self.status(task_id)
            key = (st.stage, st.attempts, st.progress, st.progress_message, st.error)
            if key != seen:
                seen = key
                yield st
            if st.terminal or (deadline is not None and time.monotonic() >= deadline):
                return
            time.sleep(interval)

    def result(self, task_id: str, wait: bool = False, timeout: float | None = None) -> bytes:
        """The task's result bytes.

        With ``wait``, block until the task ends (``timeout`` seconds at most, ``None``
        for no limit). Raises :class:`TaskNotFound`, :class:`TaskFailed` (failed or
        cancelled; carries the task's error) or :class:`TaskNotFinished`.
        """
        if wait:
            return self.wait_result(task_id, timeout)
        return self._final_result(task_id, self._stage(task_id))

    def wait_result(self, task_id: str, timeout: float | None = None) -> bytes:
        """Block until the task ends and return its result (see :meth:`result`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pubsub = subscribe_done(self.redis, task_id, 5.0 if timeout is None else timeout)
        try:
            while True:
                stage = self._stage(task_id)
                if stage in TERMINAL_STAGES:
                    return self._final_result(task_id, stage)
                remaining = WAIT_RECHECK
                if deadline is not None:
                    remaining = min(remaining, deadline - time.monotonic())
                    if remaining <= 0:
                        raise TaskNotFinished(
                            f"task {task_id} is still {stage} after {timeout:g}s;"
                            " wait longer with --timeout"
                        )
                wait_message(pubsub, remaining)
        finally:
            pubsub.close()

    def logs(
        self, task_id: str, follow: bool = False, stream: str | int | None = None
    ) -> Iterator[LogChunk]:
        """The task's output chunks, oldest first; with ``follow``, live until it ends.

        ``stream`` is ``"stdout"``, ``"stderr"`` or ``None`` for both. Raises
        :class:`TaskNotFound` at once (not on first iteration) for an unknown id.
        """
        stream_number(stream)
        if not self.redis.exists(keys.task(task_id)):
            raise TaskNotFound(task_id)
        if follow:
            return follow_output(self.redis, task_id, stream)
        return iter(read_logs(self.redis, task_id, stream))

    # -- many tasks ---------------------------------------------------------------

    def queues(self) -> list[str]:
        """Every queue that ever received a task (the default queue always)."""
        names = {m.decode() for m in self.redis.smembers(keys.QUEUES)}
        names.add(keys.DEFAULT_QUEUE)
        return sorted(names)

    def list_tasks(
        self,
        queue: str | None = None,
        stage: str | None = None,
        task: str | None = None,
        limit: int = 50,
    ) -> list[TaskStatus]:
        """Tasks in the queue lists and the scheduled set, newest first (see :meth:`list_page`)."""
        return self.list_page(queue, stage, task, limit).tasks

    def list_page(
        self,
        queue: str | None = None,
        stage: str | None = None,
        task: str | None = None,
        limit: int = 50,
        scan: int = LIST_SCAN,
    ) -> TaskPage:
        """Up to ``limit`` tasks matching the filters, newest (by enqueue time) first.

        Each queue list is read from its newest end and the scheduled set from its
        soonest-due end, page by page, until it has given ``limit`` matches or ``scan``
        ids (at least ``limit``): the cost is bounded by the page and ``scan``, never by
        how many tasks exist. A stage filter reads only where that stage waits (failed:
        the dead-letter lists, completed: the finished lists...). When a place held more
        ids than were read and gave fewer than ``limit`` matches, the page says
        ``complete=False``.
        """
        budget = max(scan, limit)
        page = TaskPage([], budget)
        if limit <= 0:
            return page
        homes = _STAGE_HOMES.get(stage, _EVERYWHERE) if stage else _EVERYWHERE
        sources = [
            self._list_source(key)
            for name in ([queue] if queue else self.queues())
            for part in keys.STAGES
            if part in homes
            for key in _part_lists(name, part)
        ]
        if "scheduled" in homes:
            # One scheduled set for all queues, or one per queue on a Redis Cluster.
            for scope in [queue] if queue and keys.tagged() else scopes(self.redis):
                sources.append(self._scheduled_source(scope))
        filters = (queue, stage, task)
        found: dict[str, TaskStatus] = {}
        for source in sources:
            if not self._scan(source, found, filters, limit, budget):
                page.complete = page.complete and source.length() <= budget
        ordered = sorted(found.values(), key=lambda s: (s.enqueued_ms or 0, s.id), reverse=True)
        page.tasks = ordered[:limit]
        return page

    def stats(self) -> list[QueueStats]:
        """Per queue: tasks by stage, completions in the last minute, oldest wait."""
        return self.stats_report().queues

    def stats_report(self, sample: int = STATS_SCHEDULED_SAMPLE) -> StatsReport:
        """:meth:`stats` with how the scheduled set was counted.

        Every figure but the scheduled-set split is an O(1) read per queue. The scheduled
        set (one for all queues) is counted exactly by ZCARD and split by queue and kind
        from at most ``sample`` of its entries: all of them when it holds no more, else a
        uniform random sample whose counts are scaled to the total (``scheduled_estimated``).
        """
        now = now_ms()
        now_s = now // 1000
        names = self.queues()
        total, split, sampled = self._scheduled_split(sample)
        pipe = self.redis.pipeline(transaction=False)
        levels = len(keys.PRIORITIES)
        for name in names:
            for key in keys.pending_lists(name):
                pipe.llen(key)
                pipe.lindex(key, -1)
            pipe.llen(keys.processing(name))
            pipe.llen(keys.finished(name))
            pipe.llen(keys.dlq(name))
            pipe.hgetall(keys.throughput(name))
        replies = pipe.execute()
        rows = []
        stale: dict[str, list[bytes]] = {}
        per_queue = 2 * levels + 4
        for i, name in enumerate(names):
            row = replies[i * per_queue : (i + 1) * per_queue]
            pending = sum(row[0 : 2 * levels : 2])
            processing, finished, dlq, seconds = row[2 * levels :]
            completed, old = _completions(seconds, now_s)
            if old:
                stale[name] = old
            counts = split.get(name, {})
            rows.append(
                QueueStats(
                    queue=name,
                    pending=pending,
                    in_progress=processing,
                    scheduled=counts.get(Stage.SCHEDULED, 0),
                    retrying=counts.get(Stage.RETRYING, 0),
                    cron=counts.get("cron", 0),
                    finished=finished,
                    dlq=dlq,
                    completed_last_minute=completed,
                    oldest_pending_age_ms=self._oldest_wait(row[1 : 2 * levels : 2], now),
                    scheduled_estimated=sampled < total,
                )
            )
        if stale:
            # The ack side only adds fields; whoever reads drops the seconds past the
            # window, so a busy queue's hash stays at about a window's worth of fields.
            pipe = self.redis.pipeline(transaction=False)
            for name, fields in stale.items():
                pipe.hdel(keys.throughput(name), *fields)
            pipe.execute()
        return StatsReport(rows, total, sampled, usage(self.redis, now))

    # -- helpers ------------------------------------------------------------------

    def _stage(self, task_id: str) -> str:
        raw, fine = self.redis.hmget(keys.task(task_id), ["task_stage", "wasmq_stage"])
        if raw is None:
            if not self.redis.exists(keys.task(task_id)):
                if self.flow_member_to_come(task_id):
                    return "waiting"
                raise TaskNotFound(task_id)
            return Stage.PENDING
        return stage_of(_text(raw, ""), _text(fine, ""))

    def flow_member_to_come(self, task_id: str) -> bool:
        """Whether ``task_id`` is a member of a running flow that has not been created yet
        (a later chain step, a chord's callback): waiting for its result is waiting for it."""
        flow_id, dot, _ = task_id.rpartition(".")
        if not dot or not flow_id:
            return False
        state = self.redis.hget(keys.flow(flow_id), "state")
        return state in (b"running", b"failed")

    def _final_result(self, task_id: str, stage: str) -> bytes:
        if stage == Stage.COMPLETED:
            value = self.redis.get(keys.result(task_id))
            if value is None:
                raise TaskNotFinished(
                    f"task {task_id} completed but its result has expired"
                    " (kept for WASMQ_RESULT_TTL)"
                )
            return bytes(value)
        if stage in (Stage.FAILED, Stage.CANCELLED):
            fields = self.redis.hmget(keys.task(task_id), ["error", "error_kind", "retryable"])
            error, kind, retryable = (f.decode("utf-8", "replace") if f else "" for f in fields)
            raise TaskFailed(task_id, stage, error, kind, retryable == "1" if kind else None)
        raise TaskNotFinished(f"task {task_id} is {stage}; wait for it with --wait")

    def _list_source(self, key: str) -> _Source:
        # Pushes go to the head (LPUSH), so index 0 is the newest end.
        return _Source(
            lambda start, stop: self.redis.lrange(key, start, stop),
            lambda: int(self.redis.llen(key)),
        )

    def _scheduled_source(self, queue: str | None = None) -> _Source:
        # Ranked by due time: enqueue order is not kept anywhere a range can read.
        key = keys.scheduled(queue)
        return _Source(
            lambda start, stop: self.redis.zrange(key, start, stop),
            lambda: int(self.redis.zcard(key)),
        )

    def _scan(
        self,
        source: _Source,
        found: dict[str, TaskStatus],
        filters: tuple[str | None, str | None, str | None],
        limit: int,
        budget: int,
    ) -> bool:
        """Read ids page by page into ``found``; False when stopped by ``budget`` alone."""
        filtered = any(f is not None for f in filters)
        matches = 0
        start = 0
        while matches < limit:
            if start >= budget:
                return False
            # A filter may need many ids per match; without one the first ids are the page.
            size = min(budget - start, max(limit, 500) if filtered else limit)
            ids = [i.decode() for i in source.read(start, start + size - 1)]
            start += len(ids)
            new = [i for i in dict.fromkeys(ids) if i not in found]
            if filtered:
                new = self._prefilter(new, filters)
            for status in self._load(new):
                # In read order, so a place gives its newest (soonest due) matches.
                if matches < limit and _matches(status, *filters):
                    found[status.id] = status
                    matches += 1
            if len(ids) < size:
                return True
        return True

    def _prefilter(
        self, ids: list[str], filters: tuple[str | None, str | None, str | None]
    ) -> list[str]:
        queue, stage, task = filters
        pipe = self.redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(keys.task(task_id), _FILTER_FIELDS)
        out = []
        replies = pipe.execute()
        for task_id, (queue_raw, stage_raw, name_raw, fine_raw) in zip(ids, replies, strict=True):
            if name_raw is None:
                continue  # expired record still listed (or one _load would refuse)
            # Missing fields take the defaults Task.from_hash gives them.
            if (
                (queue is None or _text(queue_raw, keys.DEFAULT_QUEUE) == queue)
                and (
                    stage is None
                    or stage_of(_text(stage_raw, Stage.PENDING), _text(fine_raw, "")) == stage
                )
                and (task is None or name_raw.decode("utf-8", "replace") == task)
            ):
                out.append(task_id)
        return out

    def _load(self, ids: list[str]) -> list[TaskStatus]:
        pipe = self.redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(keys.task(task_id))
        out = []
        for task_id, raw in zip(ids, pipe.execute() if ids else [], strict=True):
            if not raw:
                continue  # expired record still listed
            try:
                parsed = Task.from_hash(raw)
            except InvalidTask:
                continue
            parsed.id = parsed.id or task_id
            out.append(TaskStatus.from_task(parsed, self.settings.reference_compat))
        return out

    def _scheduled_split(self, sample: int) -> tuple[int, dict[str, dict[str, int]], int]:
        """(entries, queue -> kind -> count, entries read) of the scheduled set."""
        total, ids = 0, list[bytes]()
        # One scheduled set, or one per queue on a Redis Cluster (each sampled alike).
        for scope in scopes(self.redis):
            pipe = self.redis.pipeline(transaction=True)
            pipe.zcard(keys.scheduled(scope))
            # With a positive count ZRANDMEMBER returns distinct members, every one of
            # them when the set holds no more than ``sample``: then the split is exact.
            pipe.zrandmember(keys.scheduled(scope), max(sample, 1))
            count, got = pipe.execute()
            total += count
            ids += got or []
        pipe = self.redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(
                keys.task(task_id.decode()), ["queue", "task_stage", "task_kind", "wasmq_stage"]
            )
        counts: dict[str, dict[str, int]] = {}
        for queue_raw, stage_raw, kind_raw, fine_raw in pipe.execute() if ids else []:
            queue = _text(queue_raw, keys.DEFAULT_QUEUE)
            retrying = stage_of(_text(stage_raw, ""), _text(fine_raw, "")) == Stage.RETRYING
            stage: str = Stage.RETRYING if retrying else Stage.SCHEDULED
            if kind_raw == b"2":
                stage = "cron"
            per_queue = counts.setdefault(queue, {})
            per_queue[stage] = per_queue.get(stage, 0) + 1
        if len(ids) < total:
            scale = total / len(ids)
            counts = {q: {k: round(n * scale) for k, n in per.items()} for q, per in counts.items()}
        return int(total), counts, len(ids)

    def _oldest_wait(self, heads: list[bytes | None], now: int) -> int | None:
        """The longest wait of the next tasks to claim at each priority level."""
        waits = [w for w in (self._waiting_since(head, now) for head in heads) if w is not None]
        return max(waits) if waits else None

    def _waiting_since(self, oldest_id: bytes | None, now: int) -> int | None:
        if oldest_id is None:
            return None
        fields = self.redis.hmget(keys.task(oldest_id.decode()), ["enqueued_ms", "scheduled_at"])
        try:
            since = int(fields[0]) if fields[0] else None
            # A promoted scheduled task has waited since it came due, not since enqueue.
            if fields[1]:
                since = max(since or 0, parse_time(fields[1].decode()))
        except ValueError:
            return None
        if since is None:
            return None
        return max(now - since, 0)


def _part_lists(name: str, part: str) -> tuple[str, ...]:
    """The lists of one stage of queue ``name``: every priority level's when pending."""
    return keys.pending_lists(name) if part == "pending" else (keys.queue(name, part),)


def _matches(status: TaskStatus, queue: str | None, stage: str | None, task: str | None) -> bool:
    return (
        (queue is None or status.queue == queue)
        and (stage is None or status.stage == stage)
        and (task is None or status.task_name == task)
    )


def _text(raw: bytes | None, default: str) -> str:
    return raw.decode("utf-8", "replace") if raw else default


def _completions(seconds: dict[bytes, bytes], now_s: int) -> tuple[int, list[bytes]]:
    """Completions in the last :data:`COMPLETIONS_WINDOW` seconds of a throughput hash, and
    its fields to delete: seconds older than :data:`keys.THROUGHPUT_WINDOW`, and fields
    that are not a second (nothing counts them)."""
    recent = 0
    stale = []
    for field_raw, value in seconds.items():
        try:
            second, count = int(field_raw), int(value)
        except ValueError:
            stale.append(field_raw)
            continue
        if second <= now_s - keys.THROUGHPUT_WINDOW:
            stale.append(field_raw)
        elif second > now_s - COMPLETIONS_WINDOW:
            # Later than now too: a worker's clock may run ahead of this one.
            recent += count
    return recent, stale
