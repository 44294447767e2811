"""The queue's state changes: enqueue, claim, ack, nack, leases, cancel and dead letters.

Every change that touches more than one key is one Lua script in ``runtime/queue/lua`` (the
script headers list their keys), so a crash can never leave a task half moved. This
module holds the policy the scripts do not: validation, retry delays, batching and
the parsing of what comes back. Calls that the worker makes per batch (claim, then
one ack for the whole batch) cost one round trip each.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis
from redis.exceptions import NoScriptError

from runtime.clock import now_ms
from runtime.errors import InvalidTask, NotReplicated, TaskNotFound, UnknownTask
from runtime.logging_config import get_logger
from runtime.queue import keys, scripts
from runtime.queue.scripts import Call, Scripts
from runtime.queue.slots import Mirrors
from runtime.queue.task import COARSE_STAGE, GO_ZERO_TIME, ErrorKind, Kind, Stage, Task, format_time
from runtime.settings import Settings

log = get_logger("broker")

#: What a write waited on by ``WASMQ_REPLICA_ACKS`` is (see ``Broker._run``).
ENQUEUED = "enqueue"
ACKED = "ack"
#: Seconds acks go without WAIT after one that fewer replicas confirmed than asked.
ACK_WAIT_PAUSE = 10.0
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
    "trace_context",
)


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
    #: Why the attempt failed; "" for a success.
    error_kind: ErrorKind | Literal[""] = ""
    retryable: bool = False
    started_ms: int = 0
    duration_ms: float = 0.0
    logs: list[bytes] = field(default_factory=list)
    log_bytes: int = 0
    log_dropped: int = 0
    log_file: str = ""
    #: The handler's last progress report of this attempt: (value, message).
    progress: tuple[float, str] | None = None


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
        self.scripts = Scripts(client, compat=settings.reference_compat)
        self.mirrors = Mirrors(client)
        #: Acks skip WAIT until then (``time.monotonic``), after replicas fell short.
        self._acks_unwaited_until = 0.0

    # -- producing ---------------------------------------------------------------------

    def enqueue(self, task: Task) -> tuple[Task, bool]:
        """Store ``task`` and queue it (or schedule it); ``(task, created)``.

        An existing id is returned as it is stored and nothing changes, and so is the task
        holding ``task.unique_key`` while it has not ended; an unregistered
        task name raises :class:`UnknownTask` (a ``RegistryError``); an oversized payload :class:`InvalidTask`.
        """
        _, call, plain = self._enqueue_call(task)
        self.mirrors.ensure(task.queue)
        replies = self._run([call], plain, replicated=ENQUEUED)
        (reply,) = self.registered_again([task.queue], [call], replies, plain, ENQUEUED)
        return self._enqueued(task, reply)

    def enqueue_many(self, tasks: Sequence[Task]) -> list[tuple[Task, bool]]:
        """Like :meth:`enqueue` for many tasks, pipelined; validation happens before any
        is sent, so a bad task refuses the whole batch."""
        prepared = [self._enqueue_call(task) for task in tasks]
        if keys.tagged():
            for queue in {task.queue for task in tasks}:
                self.mirrors.ensure(queue)
            if any(commands for _, _, commands in prepared):
                # A MULTI cannot span slots: a payload stored apart goes with its own task.
                return [self.enqueue(task) for task in tasks]
        out: list[tuple[Task, bool]] = []
        for start in range(0, len(prepared), ENQUEUE_CHUNK):
            chunk = prepared[start : start + ENQUEUE_CHUNK]
            plain = [command for _, _, commands in chunk for command in commands]
            calls = [call for _, call, _ in chunk]
            replies = self._run(calls, plain, replicated=ENQUEUED)
            if keys.tagged():
                queues = [task.queue for task in tasks[start : start + ENQUEUE_CHUNK]]
                replies = self.registered_again(queues, calls, replies, (), ENQUEUED)
            for task, reply in zip(tasks[start : start + ENQUEUE_CHUNK], replies, strict=False):
                out.append(self._enqueued(task, reply))
        return out

    def registered_again(
        self,
        queues: Sequence[str],
        calls: Sequence[Call],
        replies: list[Any],
        plain: Sequence[Plain] = (),
        replicated: str = "",
    ) -> list[Any]:
        """Tagged layout (Redis Cluster): the calls a script refused as "not registered"
        (a reply starting -1) run once more after their queue's registry mirror is copied
        again, since the copy may predate the registration (``queues[i]`` is the queue of
        ``calls[i]``). The refused calls wrote nothing, so running them again is safe.
        ``replicated``: as :meth:`_run`."""
        if not keys.tagged():
            return replies
        missed = [i for i, reply in enumerate(replies) if int(reply[0]) == -1]
        if not missed:
            return replies
        for queue in {queues[i] for i in missed}:
            self.mirrors.ensure(queue, force=True)
        again = self._run([calls[i] for i in missed], plain, replicated)
        for i, reply in zip(missed, again, strict=True):
            replies[i] = reply
        return replies

    def _enqueue_call(self, task: Task) -> tuple[str, Call, list[Plain]]:
        limit = self.settings.payload_limit
        if len(task.payload) > limit:
            raise InvalidTask(
                f"payload of {len(task.payload)} bytes is over the limit of {limit} bytes; "
                "send a smaller payload or raise WASMQ_PAYLOAD_LIMIT"
            )
        check_priority(task.priority)
        now = now_ms()
        if not task.created_ms:
            task.created_ms = now
        task.updated_ms = now
        if task.kind == Kind.IMMEDIATE:
            task.stage = Stage.PENDING
            due: int | None = None
        else:
            task.stage = Stage.SCHEDULED
            when = task.scheduled_ms if task.kind == Kind.SCHEDULED else task.next_run_ms
            if when is None:
                raise InvalidTask(f"task {task.id} is scheduled but has no due time")
            due = when
        if self.settings.reference_compat:
            task.cron_expr = seconds_first(task.cron_expr)
        fields = task.to_hash()
        payload = fields.pop("payload")
        # The script records the registered digest and version itself. Unset times are
        # written (as Go's zero time) only for the reference's workers, which refuse a
        # record without them; for wasmq alone they would cost every task memory and
        # server time.
        fields.pop("digest", None)
        fields.pop("task_version", None)
        if not self.settings.reference_compat:
            for name in ("scheduled_at", "next_run_at", "cron_expr"):
                if fields.get(name) in ("", GO_ZERO_TIME):
                    del fields[name]
        if self.settings.reference_compat and task.stage in COARSE_STAGE:
            fields["task_stage"] = COARSE_STAGE[task.stage]
            fields["wasmq_stage"] = task.stage
        if fields.get("limits") == "{}":
            del fields["limits"]
        plain: list[Plain] = []
        apart = len(payload) > PAYLOAD_APART and task.kind != Kind.CRON
        if apart:
            # NX keeps an existing task's payload; PX makes a payload the script then
            # refuses (duplicate id, unknown task) disappear on its own.
            plain.append(("SET", keys.payload(task.id), payload, "NX", "PX", 60_000))
        call = scripts.enqueue(
            task_id=task.id,
            task_name=task.task_name,
            queue=task.queue,
            due_ms=due,
            payload=payload,
            payload_apart=apart,
            fields_json=json.dumps(fields, separators=(",", ":")),
            now=now,
            idle_live_ms=IDLE_LIVE_MS,
            priority=task.priority,
        )
        return task.task_name, call, plain

    def _enqueued(self, task: Task, reply: Any) -> tuple[Task, bool]:
        code = int(reply[0])
        if code == -1:
            raise UnknownTask(task.task_name, close_task_names(self.redis, task.task_name))
        if code == 0:
            existing = _parse_hash(reply[1])
            stored = Task.from_hash(existing)
            # A third value: the task that holds the unique key, not this id.
            stored.id = _text(reply[2]) if len(reply) > 2 else task.id
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
        claim again or to wait for a wake token.

        In the tagged layout (Redis Cluster) a script call stays in one slot, so the
        queues are claimed one call each, in order, until ``count`` are taken."""
        if keys.tagged() and len(queues) > 1:
            out = Claimed()
            for i, queue in enumerate(queues):
                got = self.claim([queue], worker_id, count - len(out))
                out.extend(got)
                out.left += got.left
                if len(out) >= count:
                    # The queues not looked at may hold tasks: claim again, not wait.
                    out.left += int(i < len(queues) - 1)
                    break
            return out
        now = now_ms()
        s = self.settings
        call = scripts.claim(
            queues=queues,
            worker_id=worker_id,
            now=now,
            now_text=format_time(now),
            count=min(max(count, 1), CLAIM_MAX),
            grace_ms=int(s.lease_grace * 1000),
            default_timeout_ms=int(s.task_timeout * 1000),
            max_timeout_ms=int(s.max_task_timeout * 1000),
            fields=CLAIM_FIELDS,
        )
        items, left = self._run([call])[0]
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
            if self.settings.reference_compat:
                # The record counts failed attempts; this one is the next.
                task.attempts += 1
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

    def bury(
        self, task_id: str, queue: str, error: str, kind: ErrorKind = ErrorKind.INVALID
    ) -> str:
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
        if keys.tagged() and len({report.task.queue for report in reports}) > 1:
            # A MULTI stays in one slot: one per queue.
            statuses = [""] * len(reports)
            by_queue: dict[str, list[int]] = {}
            for i, report in enumerate(reports):
                by_queue.setdefault(report.task.queue, []).append(i)
            for places in by_queue.values():
                done = self.finish([reports[i] for i in places])
                for i, status in zip(places, done, strict=True):
                    statuses[i] = status
            return statuses
        # A queue name holds the place of that queue's one ack call, built at the end.
        parts: list[Call | str] = []
        plain: list[Plain] = []
        slots: list[tuple[int, int]] = []  # (call index, position within the call)
        call_of: dict[str, int] = {}
        acked: dict[str, list[scripts.Acked]] = {}
        now = now_ms()
        now_text = format_time(now)
        s = self.settings
        for report in reports:
            task = report.task
            ttl = int(s.retention(task.queue, task.keep_result) * 1000)
            # A run stopped by a cancel is acked: the record is already cancelled, and
            # ack.lua keeps its output as for any ended run.
            if not report.ok and report.error_kind != ErrorKind.CANCELLED:
                slots.append((len(parts), -1))
                parts.append(self._nack_call(report, now, now_text, ttl))
                continue
            if task.queue not in acked:
                call_of[task.queue] = len(parts)
                acked[task.queue] = []
                parts.append(task.queue)
            slots.append((call_of[task.queue], len(acked[task.queue])))
            acked[task.queue].append(self._acked(report, ttl, plain))
        calls = [
            part
            if isinstance(part, Call)
            else scripts.ack(
                queue=part,
                now=now,
                now_text=now_text,
                finished_max=s.finished_max,
                # The reference keeps its records: compat mode deletes none.
                completed_max=0 if s.reference_compat else s.completed_max,
                tasks=acked[part],
            )
            for part in parts
        ]
        replies = self._run(calls, plain, replicated=ACKED)
        return [_text(replies[i]) if pos < 0 else _text(replies[i][pos]) for i, pos in slots]

    def nack(self, report: Report) -> str:
        """Record a failed attempt: retry with backoff or dead-letter (see :meth:`finish`)."""
        report.ok = False
        return self.finish([report])[0]

    def _acked(self, report: Report, ttl: int, plain: list[Plain]) -> scripts.Acked:
        """``report`` as one task of an ack call; a result too large to pass through Lua
        is SET by a command added to ``plain`` instead."""
        task = report.task
        flags = "k" if task.keep_payload or self.settings.keep_payload else ""
        if task.error or task.attempts > 1:
            flags += "el"
        if task.payload_apart:
            flags += "p"
        result: bytes | None = None
        if report.ok and len(report.result) <= PAYLOAD_APART:
            result = report.result
        elif report.ok:
            plain.append(("SET", keys.result(task.id), report.result, "PX", ttl))
        return scripts.Acked(
            id=task.id,
            retention_ms=ttl,
            duration_ms=_ms(report.duration_ms),
            log_bytes=report.log_bytes,
            log_dropped=report.log_dropped,
            log_file=report.log_file,
            started_ms=report.started_ms,
            flags=flags,
            result=result,
            logs=report.logs,
            progress=report.progress,
            stopped=None if report.ok else report.error,
        )

    def _nack_call(self, report: Report, now: int, now_text: str, ttl: int) -> Call:
        task = report.task
        s = self.settings
        delay = task.next_retry_delay(s.retry_backoff, s.retry_backoff_max)
        return scripts.nack(
            task_id=task.id,
            queue=task.queue,
            now=now,
            now_text=now_text,
            error=report.error,
            error_kind=report.error_kind,
            retryable=report.retryable,
            retry_delay_ms=int(delay * 1000),
            retention_ms=ttl,
            duration_ms=_ms(report.duration_ms),
            log_bytes=report.log_bytes,
            log_dropped=report.log_dropped,
            log_file=report.log_file,
            started_ms=report.started_ms or now,
            logs=report.logs,
            progress=report.progress,
        )

    def progress(self, updates: Sequence[tuple[str, float, str]], worker_id: str) -> None:
        """Record running tasks' progress, (task id, value, message) each, in one round
        trip; a task that is no longer this worker's is left alone."""
        now = now_ms()
        calls = [
            scripts.progress(task_id=i, worker_id=worker_id, value=v, message=m, now=now)
            for i, v, m in updates
        ]
        if calls:
            self._run(calls, [])

    def release(self, tasks: Sequence[Task], worker_id: str) -> int:
        """Give claimed tasks that never started back to the front of their queue."""
        by_queue: dict[str, list[str]] = {}
        for task in tasks:
            by_queue.setdefault(task.queue, []).append(task.id)
        calls: list[Call] = []
        now_text = format_time(now_ms())
        for queue, ids in by_queue.items():
            calls.append(
                scripts.release(queue=queue, worker_id=worker_id, now_text=now_text, ids=ids)
            )
        return sum(int(n) for n in self._run(calls)) if calls else 0

    # -- recovery and administration -----------------------------------------------------

    def reap(
        self,
        now: int | None = None,
        limit: int = REAP_BATCH,
        skip: int = 0,
        queue: str | None = None,
    ) -> list[tuple[str, str]]:
        """Recover expired leases; ``[(id, action)]`` with action requeued, failed,
        dropped or foreign (a reference worker's lease, left alone). ``skip`` passes over
        that many expired leases first (the foreign ones an earlier call found). In the
        tagged layout each queue has its own leases: ``queue`` reaps that one's, None
        every queue's (``limit`` and ``skip`` then per queue). Safe to run in any number
        of processes at once."""
        now = now_ms() if now is None else now
        text = format_time(now)
        if keys.tagged() and queue is None:
            # Each queue has its own lease set in the tagged layout.
            calls = [
                scripts.reap(now=now, now_text=text, limit=limit, skip=skip, queue=name)
                for name in self.queues()
            ]
        else:
            calls = [scripts.reap(now=now, now_text=text, limit=limit, skip=skip, queue=queue)]
        items = [_text(x) for reply in self._run(calls) for x in reply]
        return list(zip(items[::2], items[1::2], strict=False))

    def recover_worker(
        self, worker_id: str, queues: Sequence[str], unstarted: Sequence[str], reason: str
    ) -> tuple[int, int, int]:
        """Recover the tasks of a worker process that died, now rather than at lease
        expiry: ``(released, requeued, failed)``. ``unstarted`` ids go back with their
        attempt uncounted; the running one counts as a lost attempt."""
        if keys.tagged() and len(queues) > 1:
            totals = [self.recover_worker(worker_id, [q], unstarted, reason) for q in queues]
            released, requeued, failed = (sum(column) for column in zip(*totals, strict=True))
            return released, requeued, failed
        now = now_ms()
        call = scripts.recover(
            worker_id=worker_id,
            queues=queues,
            now=now,
            now_text=format_time(now),
            reason=reason,
            unstarted=unstarted,
        )
        released, requeued, failed = self._run([call])[0]
        return int(released), int(requeued), int(failed)

    def cancel(self, task_id: str) -> tuple[str, str]:
        """Cancel a task: ``(status, previous stage)``; status cancelled (it was waiting),
        marked (it is running: the result will be discarded) or final (it had ended).
        Raises :class:`TaskNotFound` for an unknown id."""
        now = now_ms()
        call = scripts.cancel(
            task_id=task_id,
            now=now,
            now_text=format_time(now),
            retention_ms=int(self.settings.result_ttl * 1000),
        )
        status, stage = (_text(x) for x in self._run([call])[0])
        if status == "missing":
            raise TaskNotFound(task_id)
        return status, stage

    def queues(self) -> list[str]:
        """Every queue that ever received a task, the default one first."""
        names = sorted(_text(q) for q in self.redis.smembers(keys.QUEUES))  # type: ignore[union-attr]
        return [keys.DEFAULT_QUEUE, *(q for q in names if q != keys.DEFAULT_QUEUE)]

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

    def dlq_redrive(
        self, queue: str, ids: Sequence[str] | None = None, *, latest: bool = False
    ) -> list[str]:
        """Move dead letters back to pending (all of them when ``ids`` is None); with
        ``latest``, onto their task's current registered version."""
        if ids is not None and not ids:
            return []
        now_text = format_time(now_ms())
        if latest:
            # No "not registered" comes back (such a task keeps its version): look now.
            self.mirrors.ensure(queue, fresh=True)
        call = scripts.dlq_redrive(queue=queue, now_text=now_text, ids=ids or [], latest=latest)
        return [_text(i) for i in self._run([call])[0]]

    def dlq_purge(self, queue: str, older_than: float | None = None) -> int:
        """Delete dead letters of ``queue`` (those that failed more than ``older_than``
        seconds ago, or all)."""
        cutoff = 0 if older_than is None else max(now_ms() - int(older_than * 1000), 1)
        return int(self._run([scripts.dlq_purge(queue=queue, cutoff_ms=cutoff)])[0])

    # -- plumbing --------------------------------------------------------------------------

    def _run(
        self, calls: Sequence[Call], plain: Sequence[Plain] = (), replicated: str = ""
    ) -> list[Any]:
        """Run script calls in one round trip (EVALSHA; scripts are loaded on a miss, for
        instance after a server restart, and only the calls that missed are re-sent).

        ``plain`` commands go first, and then everything runs in one MULTI, so a reader
        never sees a script's change without the bytes written beside it. Replies are
        the scripts' only. ``replicated`` names a write that must reach
        ``WASMQ_REPLICA_ACKS`` replicas (:data:`ENQUEUED` or :data:`ACKED`)."""
        if replicated and self.settings.replica_acks and self._waits(replicated):
            waited, confirmed = self._run_and_wait(calls, plain)
            self._replicated(replicated, confirmed, len(calls))
            return waited
        if len(calls) == 1 and not plain:
            return [self.scripts.run(calls[0])]
        pipe = self.redis.pipeline(transaction=bool(plain))
        for command in plain:
            pipe.execute_command(*command)
        for call in calls:
            script = self.scripts.loaded(call.script)
            # execute_command, not evalsha(): redis-py's cluster pipeline refuses the
            # method by name, while the command routes by its keys like any other.
            pipe.execute_command("EVALSHA", script.sha, len(call.keys), *call.keys, *call.args)
        replies: list[Any] = pipe.execute(raise_on_error=False)[len(plain) :]
        missed = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        for i in missed:
            replies[i] = self.scripts.run(calls[i])
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _run_and_wait(self, calls: Sequence[Call], plain: Sequence[Plain]) -> tuple[list[Any], int]:
        """:meth:`_run`, then WAIT on the same connection (WAIT counts the replicas that
        have this connection's writes, so it cannot be sent apart); ``(replies, number of
        replicas that confirmed)``. The MULTI is spelled out so WAIT can follow its EXEC
        in the one pipeline."""
        s = self.settings
        pipe = self.redis.pipeline(transaction=False)
        if plain:
            pipe.execute_command("MULTI")
        for command in plain:
            pipe.execute_command(*command)
        for call in calls:
            script = self.scripts.loaded(call.script)
            pipe.execute_command("EVALSHA", script.sha, len(call.keys), *call.keys, *call.args)
        if plain:
            pipe.execute_command("EXEC")
        pipe.execute_command("WAIT", s.replica_acks, max(int(s.replica_timeout * 1000), 1))
        out: list[Any] = pipe.execute(raise_on_error=False)
        confirmed = out[-1]
        replies = out[-2] if plain else out[:-1]
        if isinstance(replies, Exception):
            raise replies
        # EXEC answers for the plain commands too; only the scripts' replies are wanted.
        replies = list(replies)[len(plain) :]
        missed = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missed:
            for i in missed:
                script = self.scripts.loaded(calls[i].script)
                self.redis.script_load(script.script)
            again, confirmed_again = self._run_and_wait([calls[i] for i in missed], ())
            for i, reply in zip(missed, again, strict=True):
                replies[i] = reply
            if not isinstance(confirmed, Exception):
                confirmed = min(int(confirmed), confirmed_again)
        for reply in (*replies, confirmed):
            if isinstance(reply, Exception):
                raise reply
        return replies, int(confirmed)

    def _waits(self, what: str) -> bool:
        """Whether this write waits for replicas: enqueues always; acks not while paused
        after a shortfall, since a worker would otherwise spend the whole WAIT timeout on
        every ack for as long as the replicas are gone."""
        return what == ENQUEUED or time.monotonic() >= self._acks_unwaited_until

    def _replicated(self, what: str, confirmed: int, count: int) -> None:
        """Refuse an enqueue, and warn of an ack, that fewer replicas confirmed than asked."""
        s = self.settings
        if confirmed >= s.replica_acks:
            return
        if what == ENQUEUED:
            raise NotReplicated(
                f"Redis took the enqueue, but {confirmed} of WASMQ_REPLICA_ACKS="
                f"{s.replica_acks} replicas confirmed it within {s.replica_timeout:g}s: "
                "the task may not be durable; check the replicas, then enqueue again with "
                "the same task id (that is safe)"
            )
        self._acks_unwaited_until = time.monotonic() + ACK_WAIT_PAUSE
        log.warning(
            "acks reached fewer replicas than WASMQ_REPLICA_ACKS; a failover now may run "
            "these tasks again (acks stop waiting for replicas for a while)",
            confirmed=confirmed,
            wanted=s.replica_acks,
            calls=count,
            pause=ACK_WAIT_PAUSE,
        )


def seconds_first(expr: str) -> str:
    """A five-field cron expression as the reference's parser (robfig/cron with seconds)
    reads it: ``0 <expr>``; anything else as it is."""
    fields = expr.split()
    return "0 " + " ".join(fields) if len(fields) == 5 else expr


def check_priority(priority: str) -> str:
    """``priority`` when it is a level of :data:`keys.PRIORITIES`; else :class:`InvalidTask`."""
    if priority not in keys.PRIORITIES:
        raise InvalidTask(f"unknown priority {priority!r}: use {', '.join(keys.PRIORITIES)}")
    return priority


def close_task_names(client: redis.Redis, name: str, n: int = 3) -> list[str]:
    """Registered task names closest to ``name`` (for a "did you mean"), best first.

    Read only when a name was not found, so the registry's size costs nothing on the
    enqueue path; a Redis error here yields no suggestion rather than hiding the first."""
    try:
        raw = client.hkeys(keys.registry())
    except redis.RedisError:
        return []
    names = [_text(field) for field in raw]  # type: ignore[union-attr]
    return difflib.get_close_matches(name, names, n=n, cutoff=0.6)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _ms(value: float) -> str:
    return f"{value:.3f}"


def _parse_hash(flat: Sequence[Any]) -> dict[bytes | str, bytes | str]:
    it = iter(flat)
    return dict(zip(it, it, strict=False))
