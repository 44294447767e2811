"""The queue's state changes: enqueue, claim, ack, nack, leases, cancel and dead letters.

Every change that touches more than one key is one Lua script in ``runtime/queue/lua`` (the
script headers list their keys), so a crash can never leave a task half moved. This
module holds the policy the scripts do not: validation, retry delays, batching and
the parsing of what comes back. Calls that the worker makes per batch (claim, then
one ack for the whole batch) cost one round trip each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.exceptions import NoScriptError

from runtime.errors import InvalidTask, RegistryError, TaskNotFound
from runtime.logging_config import get_logger
from runtime.queue import keys
from runtime.queue.scripts import Scripts
from runtime.queue.task import Kind, Stage, Task, format_time
from runtime.settings import Settings

log = get_logger("broker")

#: Largest number of expired leases one reaper call recovers (the rest wait a round).
REAP_BATCH = 500
#: Enqueue calls sent per pipeline by ``enqueue_many``.
ENQUEUE_CHUNK = 500
#: Payloads larger than this are stored apart (``task_payload:<id>``) and written and
#: read with plain commands: bytes passed through Lua arguments and returns are copied
#: several times, which is what capped one server near 280 tasks/s with 1 MiB payloads.
#: Cron entries keep theirs in the record (every run copies it).
PAYLOAD_APART = 16 * 1024
#: An idle worker re-registers at least this often (its wait times out after a second
#: and it claims again); one registered earlier is taken for dead and never woken.
IDLE_LIVE_MS = 3000
#: Per-queue keys of claim.lua and recover.lua, in their scripts' order.
_CLAIM_PARTS = (keys.pending, keys.processing, keys.wake, keys.idle)
_RECOVER_PARTS = (keys.processing, keys.pending, keys.dlq, keys.wake)
#: Most tasks one claim takes (Lua's unpack of the lease and processing pushes).
CLAIM_MAX = 1000
#: The fields a claim returns, in this order (claim.lua reads the first five).
CLAIM_FIELDS = (
    "task_stage",
    "task_name",
    "timeout",
    "attempts",
    "payload_ref",
    "id",
    "payload",
    "digest",
    "task_version",
    "limits",
    "max_retries",
    "queue",
    "task_kind",
    "error",
    "keep_result",
    "keep_payload",
    "created_at",
    "enqueued_ms",
    "cron_id",
)


def clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class BadTask:
    """An id that was claimed but cannot run: its record is missing or damaged.

    ``kept`` says whether the task went to the dead-letter list (a damaged record) or was
    dropped (nothing to keep)."""

    id: str
    queue: str
    error: str
    kept: bool


@dataclass
class Report:
    """How one claimed task's attempt ended; what ``ack``/``nack`` record."""

    task: Task
    ok: bool
    result: bytes = b""
    error: str = ""
    error_kind: str = ""
    retryable: bool = False
    started_ms: int = 0
    duration_ms: float = 0.0
    logs: list[bytes] = field(default_factory=list)
    log_bytes: int = 0
    log_dropped: int = 0
    log_file: str = ""


Call = tuple[str, list[Any], list[Any]]
#: A plain command sent in the same MULTI as script calls, before them.
Plain = tuple[Any, ...]


class Claimed(list[Task | BadTask]):
    """What one claim took, plus ``left``: tasks still pending in the claimed queues."""

    left: int = 0


class Broker:
    """Redis side of the queue for producers, workers and reapers alike."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self.scripts = Scripts(client)

    # -- producing ---------------------------------------------------------------------

    def enqueue(self, task: Task) -> tuple[Task, bool]:
        """Store ``task`` and queue it (or schedule it); ``(task, created)``.

        An existing id is returned as it is stored and nothing changes; an unregistered
        task name raises :class:`RegistryError`; an oversized payload :class:`InvalidTask`.
        """
        _, call, plain = self._enqueue_call(task)
        reply = self._run([call], plain)[0]
        return self._enqueued(task, reply)

    def enqueue_many(self, tasks: Sequence[Task]) -> list[tuple[Task, bool]]:
        """Like :meth:`enqueue` for many tasks, pipelined; validation happens before any
        is sent, so a bad task refuses the whole batch."""
        prepared = [self._enqueue_call(task) for task in tasks]
        out: list[tuple[Task, bool]] = []
        for start in range(0, len(prepared), ENQUEUE_CHUNK):
            chunk = prepared[start : start + ENQUEUE_CHUNK]
            plain = [command for _, _, commands in chunk for command in commands]
            replies = self._run([call for _, call, _ in chunk], plain)
            for task, reply in zip(tasks[start : start + ENQUEUE_CHUNK], replies, strict=False):
                out.append(self._enqueued(task, reply))
        return out

    def _enqueue_call(self, task: Task) -> tuple[str, Call, list[Plain]]:
        limit = self.settings.payload_limit
        if len(task.payload) > limit:
            raise InvalidTask(
                f"payload of {len(task.payload)} bytes is over the limit of {limit} bytes; "
                "send a smaller payload or raise WASMQ_PAYLOAD_LIMIT"
            )
        now = clock_ms()
        if not task.created_ms:
            task.created_ms = now
        task.updated_ms = now
        if task.kind == Kind.IMMEDIATE:
            task.stage = Stage.PENDING
            due = ""
        else:
            task.stage = Stage.SCHEDULED
            when = task.scheduled_ms if task.kind == Kind.SCHEDULED else task.next_run_ms
            if when is None:
                raise InvalidTask(f"task {task.id} is scheduled but has no due time")
            due = str(when)
        fields = task.to_hash()
        payload = fields.pop("payload")
        # The script records the registered digest and version itself, and fields left
        # empty cost every task memory and the server time to store them.
        for name in ("digest", "task_version", "scheduled_at", "cron_expr", "next_run_at"):
            if name in ("digest", "task_version") or not fields.get(name):
                fields.pop(name, None)
        if fields.get("limits") == "{}":
            del fields["limits"]
        plain: list[Plain] = []
        apart = len(payload) > PAYLOAD_APART and task.kind != Kind.CRON
        if apart:
            # NX keeps an existing task's payload; PX makes a payload the script then
            # refuses (duplicate id, unknown task) disappear on its own.
            plain.append(("SET", keys.payload(task.id), payload, "NX", "PX", 60_000))
        args = [
            task.id,
            task.task_name,
            task.queue,
            due,
            "1" if apart else "",
            b"" if apart else payload,
            json.dumps(fields, separators=(",", ":")),
            now,
            IDLE_LIVE_MS,
        ]
        call_keys = [
            keys.task(task.id),
            keys.pending(task.queue),
            keys.SCHEDULED,
            keys.TASK_REGISTRY,
            keys.QUEUES,
            keys.SCHEDULER_WAKE,
            keys.wake(task.queue),
            keys.payload(task.id),
            keys.idle(task.queue),
        ]
        return task.task_name, ("enqueue", call_keys, args), plain

    def _enqueued(self, task: Task, reply: Any) -> tuple[Task, bool]:
        code = int(reply[0])
        if code == -1:
            raise RegistryError(
                f"unknown task {task.task_name!r}: register it first (wasmq register PATH)"
            )
        if code == 0:
            existing = _parse_hash(reply[1])
            stored = Task.from_hash(existing)
            stored.id = task.id
            return stored, False
        task.digest = _text(reply[1])
        task.version = _text(reply[2])
        return task, True

    # -- consuming ---------------------------------------------------------------------

    def claim(self, queues: Sequence[str], worker_id: str, count: int) -> Claimed:
        """Claim up to ``count`` tasks from ``queues`` (in that order of priority).

        Damaged records are dead-lettered here (or dropped when there is no record) and
        come back as :class:`BadTask`, so the caller only logs them. ``left`` on the
        result says how many tasks the queues still hold, so a worker knows whether to
        claim again or to wait for a wake token."""
        now = clock_ms()
        call_keys: list[Any] = [keys.TIMEOUT]
        for queue in queues:
            call_keys += [part(queue) for part in _CLAIM_PARTS]
        call_keys.append(keys.worker_wake(worker_id))
        s = self.settings
        args = [
            now,
            format_time(now),
            min(max(count, 1), CLAIM_MAX),
            int(s.lease_grace * 1000),
            worker_id,
            int(s.task_timeout * 1000),
            int(s.max_task_timeout * 1000),
            *CLAIM_FIELDS,
        ]
        items, left = self._run([("claim", call_keys, args)])[0]
        out = Claimed()
        out.left = int(left)
        apart: list[Task] = []
        for raw_id, index, values, payload in items:
            task_id = _text(raw_id)
            queue = queues[int(index) - 1]
            if not values:
                error = f"task {task_id} has no task record in Redis; its id was dropped"
                out.append(BadTask(task_id, queue, error, kept=False))
                continue
            fields: dict[bytes | str, bytes | str] = {
                k: v for k, v in zip(CLAIM_FIELDS, values, strict=True) if v is not None
            }
            try:
                task = Task.from_hash(fields)
            except InvalidTask as exc:
                error = f"task {task_id} has a damaged record: {exc}"
                self.bury(task_id, queue, error)
                out.append(BadTask(task_id, queue, error, kept=True))
                continue
            task.id = task_id
            task.queue = queue
            task.worker = worker_id
            task.started_ms = now
            if task.extra.pop("payload_ref", None) is not None:
                task.payload_apart = True
                if payload is None:
                    apart.append(task)
                else:
                    task.payload = payload
            out.append(task)
        if apart:
            # Too large to come back through Lua: one plain read for all of them.
            blobs = self.redis.mget([keys.payload(t.id) for t in apart])
            for task, blob in zip(apart, blobs, strict=True):  # type: ignore[arg-type]
                task.payload = blob or b""
        return out

    def bury(self, task_id: str, queue: str, error: str, kind: str = "invalid") -> str:
        """Dead-letter a claimed task at once (no retry), keeping ``error`` on it."""
        report = Report(
            task=Task(id=task_id, task_name="", queue=queue),
            ok=False,
            error=error,
            error_kind=kind,
            retryable=False,
        )
        return self.finish([report])[0]

    def finish(self, reports: Sequence[Report]) -> list[str]:
        """Ack the successes (one script call per queue) and nack the failures, all in one
        MULTI; returns each report's status in order (completed, retrying, failed,
        cancelled, duplicate, missing). Results are written with plain SETs in the same
        MULTI, so their bytes never pass through Lua."""
        calls: list[Call] = []
        plain: list[Plain] = []
        slots: list[tuple[int, int]] = []  # (call index, position within the call)
        by_queue: dict[str, int] = {}
        now = clock_ms()
        now_text = format_time(now)
        s = self.settings
        for report in reports:
            task = report.task
            ttl = int(s.retention(task.queue, task.keep_result) * 1000)
            if not report.ok:
                slots.append((len(calls), -1))
                calls.append(self._nack_call(report, now, now_text, ttl))
                continue
            index = by_queue.get(task.queue)
            if index is None:
                index = len(calls)
                by_queue[task.queue] = index
                header = [now, now_text, s.finished_max, s.completed_max, 0]
                calls.append(("ack", self._ack_keys(task.queue), header))
            args = calls[index][2]
            slots.append((index, args[4]))
            args[4] += 1
            flags = "k" if task.keep_payload or s.keep_payload else ""
            if task.error or task.attempts > 1:
                flags += "el"
            if task.payload_apart:
                flags += "p"
            inline = len(report.result) <= PAYLOAD_APART
            if inline:
                flags += "r"
            else:
                plain.append(("SET", keys.result(task.id), report.result, "PX", ttl))
            args += [
                task.id,
                ttl,
                _ms(report.duration_ms),
                report.log_bytes,
                report.log_dropped,
                report.log_file,
                report.started_ms,
                flags,
                len(report.logs),
                *([report.result] if inline else []),
                *report.logs,
            ]
        replies = self._run(calls, plain)
        return [_text(replies[i]) if pos < 0 else _text(replies[i][pos]) for i, pos in slots]

    def ack(self, reports: Sequence[Report]) -> list[str]:
        """Record successful attempts (see :meth:`finish`)."""
        return self.finish([r for r in reports if r.ok])

    def nack(self, report: Report) -> str:
        """Record a failed attempt: retry with backoff or dead-letter (see :meth:`finish`)."""
        report.ok = False
        return self.finish([report])[0]

    def _ack_keys(self, queue: str) -> list[Any]:
        return [
            keys.TIMEOUT,
            keys.processing(queue),
            keys.finished(queue),
            keys.pending(queue),
            keys.SCHEDULED,
            keys.throughput(queue),
        ]

    def _nack_call(self, report: Report, now: int, now_text: str, ttl: int) -> Call:
        task = report.task
        s = self.settings
        delay = task.next_retry_delay(s.retry_backoff, s.retry_backoff_max)
        call_keys = [
            keys.task(task.id),
            keys.processing(task.queue),
            keys.TIMEOUT,
            keys.SCHEDULED,
            keys.dlq(task.queue),
            keys.logs(task.id),
            keys.pending(task.queue),
            keys.SCHEDULER_WAKE,
        ]
        args = [
            task.id,
            now,
            now_text,
            report.error,
            report.error_kind,
            "1" if report.retryable else "0",
            int(delay * 1000),
            ttl,
            _ms(report.duration_ms),
            report.log_bytes,
            report.log_dropped,
            report.log_file,
            report.started_ms or now,
            *report.logs,
        ]
        return ("nack", call_keys, args)

    def release(self, tasks: Sequence[Task], worker_id: str) -> int:
        """Give claimed tasks that never started back to the front of their queue."""
        by_queue: dict[str, list[str]] = {}
        for task in tasks:
            by_queue.setdefault(task.queue, []).append(task.id)
        calls: list[Call] = []
        now_text = format_time(clock_ms())
        for queue, ids in by_queue.items():
            call_keys = [
                keys.TIMEOUT,
                keys.processing(queue),
                keys.pending(queue),
                keys.wake(queue),
            ]
            args = [now_text, worker_id, *ids]
            calls.append(("release", call_keys, args))
        return sum(int(n) for n in self._run(calls)) if calls else 0

    def renew_leases(self, deadlines: dict[str, int]) -> None:
        """Move the lease deadlines (ms) of held tasks; ids no longer leased are skipped."""
        if deadlines:
            self.redis.zadd(keys.TIMEOUT, deadlines, xx=True)  # type: ignore[arg-type]

    # -- recovery and administration -----------------------------------------------------

    def reap(self, now: int | None = None, limit: int = REAP_BATCH) -> list[tuple[str, str]]:
        """Recover expired leases; ``[(id, action)]`` with action requeued, failed or
        dropped. Safe to run in any number of processes at once."""
        now = clock_ms() if now is None else now
        reply = self._run([("reap", [keys.TIMEOUT], [now, format_time(now), limit])])[0]
        items = [_text(x) for x in reply]
        return list(zip(items[::2], items[1::2], strict=False))

    def recover_worker(
        self, worker_id: str, queues: Sequence[str], unstarted: Sequence[str], reason: str
    ) -> tuple[int, int, int]:
        """Recover the tasks of a worker process that died, now rather than at lease
        expiry: ``(released, requeued, failed)``. ``unstarted`` ids go back with their
        attempt uncounted; the running one counts as a lost attempt."""
        now = clock_ms()
        call_keys: list[Any] = [keys.TIMEOUT]
        for queue in queues:
            call_keys += [part(queue) for part in _RECOVER_PARTS]
        args = [now, format_time(now), worker_id, reason, *unstarted]
        released, requeued, failed = self._run([("recover", call_keys, args)])[0]
        return int(released), int(requeued), int(failed)

    def cancel(self, task_id: str) -> tuple[str, str]:
        """Cancel a task: ``(status, previous stage)``; status cancelled (it was waiting),
        marked (it is running: the result will be discarded) or final (it had ended).
        Raises :class:`TaskNotFound` for an unknown id."""
        now = clock_ms()
        call_keys = [keys.task(task_id), keys.SCHEDULED]
        args = [task_id, now, format_time(now), int(self.settings.result_ttl * 1000)]
        status, stage = (_text(x) for x in self._run([("cancel", call_keys, args)])[0])
        if status == "missing":
            raise TaskNotFound(task_id)
        return status, stage

    def queues(self) -> list[str]:
        """Every queue that ever received a task, the default one first."""
        names = sorted(_text(q) for q in self.redis.smembers(keys.QUEUES))  # type: ignore[union-attr]
        return [keys.DEFAULT_QUEUE, *(q for q in names if q != keys.DEFAULT_QUEUE)]

    def pending_count(self, queues: Iterable[str]) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(keys.pending(queue))
        return sum(int(n) for n in pipe.execute())

    def dlq_list(self, queue: str, limit: int = 100) -> list[Task | BadTask]:
        """Dead-lettered tasks of ``queue``, newest first."""
        ids = [_text(i) for i in self.redis.lrange(keys.dlq(queue), 0, max(limit, 1) - 1)]  # type: ignore[union-attr]
        pipe = self.redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(keys.task(task_id))
        out: list[Task | BadTask] = []
        for task_id, raw in zip(ids, pipe.execute(), strict=False):
            try:
                task = Task.from_hash(raw)
            except InvalidTask as exc:
                error = _text(raw.get(b"error", b"")) or str(exc)
                out.append(BadTask(task_id, queue, error, kept=bool(raw)))
                continue
            task.id = task_id
            out.append(task)
        return out

    def dlq_redrive(self, queue: str, ids: Sequence[str] | None = None) -> list[str]:
        """Move dead letters back to pending (all of them when ``ids`` is None)."""
        call_keys = [keys.dlq(queue), keys.pending(queue), keys.wake(queue)]
        args = [format_time(clock_ms()), *(ids or [])]
        if ids is not None and not ids:
            return []
        return [_text(i) for i in self._run([("dlq_redrive", call_keys, args)])[0]]

    def dlq_purge(self, queue: str, older_than: float | None = None) -> int:
        """Delete dead letters of ``queue`` (those that failed more than ``older_than``
        seconds ago, or all)."""
        cutoff = 0 if older_than is None else max(clock_ms() - int(older_than * 1000), 1)
        return int(self._run([("dlq_purge", [keys.dlq(queue)], [cutoff])])[0])

    # -- plumbing --------------------------------------------------------------------------

    def _run(self, calls: Sequence[Call], plain: Sequence[Plain] = ()) -> list[Any]:
        """Run script calls in one round trip (EVALSHA; scripts are loaded on a miss, for
        instance after a server restart, and only the calls that missed are re-sent).

        ``plain`` commands go first, and then everything runs in one MULTI, so a reader
        never sees a script's change without the bytes written beside it. Replies are
        the scripts' only."""
        if len(calls) == 1 and not plain:
            name, call_keys, args = calls[0]
            return [getattr(self.scripts, name)(keys=call_keys, args=args)]
        pipe = self.redis.pipeline(transaction=bool(plain))
        for command in plain:
            pipe.execute_command(*command)
        for name, call_keys, args in calls:
            script = getattr(self.scripts, name)
            pipe.evalsha(script.sha, len(call_keys), *call_keys, *args)
        replies: list[Any] = pipe.execute(raise_on_error=False)[len(plain) :]
        missed = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        for i in missed:
            name, call_keys, args = calls[i]
            replies[i] = getattr(self.scripts, name)(keys=call_keys, args=args)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _ms(value: float) -> str:
    return f"{value:.3f}"


def _parse_hash(flat: Sequence[Any]) -> dict[bytes | str, bytes | str]:
    it = iter(flat)
    return dict(zip(it, it, strict=False))
