"""The read side of the client: status, results, logs, listings and queue statistics.

:class:`Queries` is a mixin: :class:`runtime.client.Client` inherits it and provides
``self.redis`` (bytes responses) and ``self.settings``. Waiting for a result is
event-driven: subscribe to ``task_done:<id>``, then read the stage, then wait for the
message the ack script publishes, so the answer comes about a millisecond after the
task ends and no publish can slip between the check and the wait.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import redis

from runtime import keys, task_logs
from runtime.errors import InvalidTask, TaskFailed, TaskNotFinished, TaskNotFound
from runtime.settings import Settings
from runtime.task import TERMINAL_STAGES, Kind, Stage, Task, now_ms, parse_time
from runtime.task_logs import LogChunk, read_logs, stream_number, subscribe_done, wait_message

#: Window of the completions rate in ``stats`` (ms); older entries are trimmed on read.
COMPLETIONS_WINDOW_MS = 60_000
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
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.stage in TERMINAL_STAGES

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_task(cls, task: Task) -> TaskStatus:
        extra = dict(task.extra)

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
        outcome = "ok" if task.stage == Stage.COMPLETED else task.error_kind
        return cls(
            id=task.id,
            task_name=task.task_name,
            stage=task.stage,
            queue=task.queue,
            kind=Kind(task.kind).name.lower(),
            attempts=task.attempts,
            max_retries=task.max_retries,
            outcome=outcome,
            error=task.error,
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
            extra={k: v for k, v in extra.items() if k not in _HIDDEN_EXTRA},
        )


# Hash fields that are internal bookkeeping or shown elsewhere.
_HIDDEN_EXTRA = frozenset({"retryable", "paused", "attempt_id", "lease"})


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

    def to_json(self) -> dict[str, object]:
        return asdict(self)


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
        return TaskStatus.from_task(task)

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
            return task_logs.follow(self.redis, task_id, stream)
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
        """Tasks in the queue lists and the scheduled set, newest (by enqueue time) first.

        Each list is read from its newest end, page by page, only until it has given
        ``limit`` matches, so a listing costs about ``limit`` records per list.
        """
        if limit <= 0:
            return []
        found: dict[str, TaskStatus] = {}
        for name in [queue] if queue else self.queues():
            for part in keys.STAGES:
                self._scan_list(keys.queue(name, part), found, queue, stage, task, limit)
        self._scan_scheduled(found, queue, stage, task)
        ordered = sorted(found.values(), key=lambda s: (s.enqueued_ms or 0, s.id), reverse=True)
        return ordered[:limit]

    def stats(self) -> list[QueueStats]:
        """Per queue: list lengths by stage, completions in the last minute, oldest wait."""
        now = now_ms()
        names = self.queues()
        scheduled = self._scheduled_counts()
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.llen(keys.pending(name))
            pipe.llen(keys.processing(name))
            pipe.llen(keys.finished(name))
            pipe.llen(keys.dlq(name))
            pipe.zremrangebyscore(keys.completions(name), "-inf", now - 2 * COMPLETIONS_WINDOW_MS)
            pipe.zcount(keys.completions(name), now - COMPLETIONS_WINDOW_MS, "+inf")
            pipe.lindex(keys.pending(name), -1)
        replies = pipe.execute()
        out = []
        for i, name in enumerate(names):
            pending, processing, finished, dlq, _, completed, oldest = replies[i * 7 : i * 7 + 7]
            counts = scheduled.get(name, {})
            out.append(
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
                    oldest_pending_age_ms=self._waiting_since(oldest, now),
                )
            )
        return out

    # -- helpers ------------------------------------------------------------------

    def _stage(self, task_id: str) -> str:
        raw = self.redis.hget(keys.task(task_id), "task_stage")
        if raw is None:
            if not self.redis.exists(keys.task(task_id)):
                raise TaskNotFound(task_id)
            return Stage.PENDING
        return raw.decode() if isinstance(raw, bytes) else str(raw)

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
            fields = self.redis.hmget(keys.task(task_id), ["error", "error_kind"])
            error, kind = (f.decode("utf-8", "replace") if f else "" for f in fields)
            raise TaskFailed(task_id, stage, error, kind)
        raise TaskNotFinished(f"task {task_id} is {stage}; wait for it with --wait")

    def _scan_list(
        self,
        key: str,
        found: dict[str, TaskStatus],
        queue: str | None,
        stage: str | None,
        task: str | None,
        limit: int,
    ) -> None:
        page = max(limit, 100)
        matches = 0
        start = 0
        while matches < limit:
            ids = self.redis.lrange(key, start, start + page - 1)
            if not ids:
                return
            for status in self._load([i.decode() for i in ids]):
                if status.id not in found and _matches(status, queue, stage, task):
                    found[status.id] = status
                    matches += 1
            start += page

    def _scan_scheduled(
        self, found: dict[str, TaskStatus], queue: str | None, stage: str | None, task: str | None
    ) -> None:
        ids = [i.decode() for i in self.redis.zrange(keys.SCHEDULED, 0, -1)]
        for status in self._load([i for i in ids if i not in found]):
            if _matches(status, queue, stage, task):
                found[status.id] = status

    def _load(self, ids: list[str]) -> list[TaskStatus]:
        pipe = self.redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(keys.task(task_id))
        out = []
        for task_id, raw in zip(ids, pipe.execute(), strict=True):
            if not raw:
                continue  # expired record still listed
            try:
                parsed = Task.from_hash(raw)
            except InvalidTask:
                continue
            parsed.id = parsed.id or task_id
            out.append(TaskStatus.from_task(parsed))
        return out

    def _scheduled_counts(self) -> dict[str, dict[str, int]]:
        ids = self.redis.zrange(keys.SCHEDULED, 0, -1)
        pipe = self.redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(keys.task(task_id.decode()), ["queue", "task_stage", "task_kind"])
        counts: dict[str, dict[str, int]] = {}
        for queue_raw, stage_raw, kind_raw in pipe.execute() if ids else []:
            queue = queue_raw.decode() if queue_raw else keys.DEFAULT_QUEUE
            stage = stage_raw.decode() if stage_raw else Stage.SCHEDULED
            if kind_raw == b"2":
                stage = "cron"
            per_queue = counts.setdefault(queue, {})
            per_queue[stage] = per_queue.get(stage, 0) + 1
        return counts

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


def _matches(status: TaskStatus, queue: str | None, stage: str | None, task: str | None) -> bool:
    return (
        (queue is None or status.queue == queue)
        and (stage is None or status.stage == stage)
        and (task is None or status.task_name == task)
    )
