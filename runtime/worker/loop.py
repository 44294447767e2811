"""One worker process: claim a batch, run each task in the sandbox, ack the batch.

The loop costs two Redis round trips per batch (claim, then one ack/nack MULTI for the
whole batch), whatever the batch size. A claim also says how many tasks are left: while
some are, the worker claims again; otherwise it sleeps on ``BLPOP`` of its queues'
wake-token lists (``wasmq:wake:<queue>``, one token pushed per task made available), so
each new task wakes exactly one idle worker instead of all of them. Tokens are never
lost to a worker that was busy (they wait in the list); the one-second timeout is only
a safety net for producers that push ids without tokens.

A process claims one task until it has measured how long its tasks take; then batches
grow to about :data:`BATCH_WORK` of work (at most ``WASMQ_CLAIM_BATCH``), so a new or
slow process never hoards tasks that another could run.

Failure handling: a damaged task record is dead-lettered by the broker and only
logged here; a module that cannot be found fails the task terminally; Redis outages
are retried with backoff (logged once per change of state) while the results of the
tasks already run are kept in memory and acked when Redis returns. A stopping worker
finishes the task it is running, gives back the claimed tasks it has not started and
acks the rest.

A cancel of a task this worker holds (:mod:`runtime.worker.cancels`) stops its run in
the sandbox, or keeps it from starting; the stopped run is acked like any other, so its
output so far is stored.

A slow task never costs the tasks claimed behind it their attempt: once it has run for
:data:`RELEASE_BEHIND_AFTER`, or as soon as the worker is told to stop, another thread
(not the task's, which may be busy in the sandbox) gives the tasks behind it back to
their queue, attempt uncounted, so other workers run them. A :class:`Ledger` shared
with the supervisor always lists the claimed tasks not started yet, so even after a
SIGKILL they go back uncounted.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import redis

from runtime.clock import now_ms
from runtime.errors import WasmqError
from runtime.logging_config import get_logger
from runtime.queue import keys
from runtime.queue.broker import BadTask, Broker, Report
from runtime.queue.task import ErrorKind, Stage, Task
from runtime.server.connection import connect
from runtime.settings import Settings
from runtime.worker.cancels import CancelListener, Interrupt, RecentCancels
from runtime.worker.heartbeats import Heartbeat, WorkerStats, new_worker_id
from runtime.worker.observers import TaskObserver
from runtime.worker.queue_order import QueueOrder
from runtime.worker.seams import ModuleSource, TaskRunner

if TYPE_CHECKING:
    # Types only: the sandbox (the wasm runtime) loads when the default one is built.
    import wasmtime

    from runtime.modules.registry import TaskRecord
    from runtime.output.chunks import LogChunk
    from runtime.output.live import LiveLogPublisher
    from runtime.sandbox.limits import Capabilities, TaskLimits
    from runtime.sandbox.outcome import Outcome

log = get_logger("worker")

#: A worker of several queues on a Redis Cluster waits this long on each in turn (s).
QUEUE_TURN = 0.1
#: Longest sleep of an idle worker between two claims when no wake-up arrives (s).
IDLE_WAIT = 1.0
#: Results of a batch are acked early once the oldest has waited this long (s).
ACK_DELAY = 0.05
#: How long a worker reuses a task's registry record (capabilities, current digest).
RECORD_TTL = 2.0
#: Work (s) one claim aims to take: fast tasks are claimed up to ``claim_batch`` at a time
#: (fewer round trips), slow ones one by one (no worker hoards tasks others could run).
BATCH_WORK = 0.02
#: Seconds a task may run before the tasks claimed behind it are given back.
RELEASE_BEHIND_AFTER = 1.0


class Ledger(Protocol):
    """Where a worker notes its id and the claimed tasks it has not started."""

    def note(self, worker_id: str, unstarted: Iterable[str]) -> None: ...


class Outage:
    """Backoff for Redis errors, logging once per change of state."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.down = False
        self.delay = 0.05

    def failed(self, exc: BaseException, stop: threading.Event | None = None) -> None:
        if not self.down:
            self.down = True
            log.warning("Redis unavailable, retrying", during=self.what, error=str(exc))
        if stop is not None:
            stop.wait(self.delay)
        else:
            time.sleep(self.delay)
        self.delay = min(self.delay * 2, 5.0)

    def ok(self) -> None:
        if self.down:
            self.down = False
            log.info("Redis available again", during=self.what)
        self.delay = 0.05


class Worker:
    """Runs tasks from ``queues`` (earlier queues first, or each claim in its own
    weighted random order when ``order`` has weights) until stopped.

    ``registry`` and ``sandbox`` default to the real ones; tests may pass their own
    (anything that meets :mod:`runtime.worker.seams`).
    """

    def __init__(
        self,
        settings: Settings,
        queues: Sequence[str],
        *,
        burst: bool = False,
        worker_id: str | None = None,
        client: redis.Redis | None = None,
        registry: ModuleSource | None = None,
        sandbox: TaskRunner | None = None,
        ledger: Ledger | None = None,
        order: QueueOrder | None = None,
        observers: Sequence[TaskObserver] = (),
    ) -> None:
        self.settings = settings
        self.observers = list(observers)
        self.queues = list(queues) or [settings.queue]
        #: Weighted orders are drawn per claim; strict ones are ``self.queues`` always.
        self.order = order if order is not None and order.weights is not None else None
        self.rng = random.Random()
        self.burst = burst
        self.worker_id = worker_id or new_worker_id()
        self.redis = client if client is not None else connect(settings, check=False)
        self.broker = Broker(self.redis, settings)
        if registry is None:
            from runtime.modules.registry import Registry

            registry = Registry(settings, self.redis)
        if sandbox is None:
            from runtime.sandbox import Sandbox

            sandbox = Sandbox(settings)
        self.registry: ModuleSource = registry
        self.sandbox: TaskRunner = sandbox
        self.stats = WorkerStats()
        self._held: dict[str, Task] = {}
        #: Claimed and not started, in run order; the heartbeat thread may take them back.
        self._queued: dict[str, Task] = {}
        self._giving_back: list[Task] = []
        self._give_lock = threading.Lock()
        self._running: tuple[str, int] | None = None
        #: The task about to run or running, and what stops it.
        self._current: tuple[str, Interrupt] | None = None
        self._cancelled = RecentCancels()
        self._cancels = CancelListener(self.redis, self.cancel_running)
        self._lock = threading.Lock()
        self._records: dict[str, tuple[float, TaskRecord | None]] = {}
        self._ledger = ledger
        self.stop_event = threading.Event()
        self.abort = threading.Event()
        # Each queue's own wake list and this worker's token list for it (one list for
        # all queues in the reference layout), so a token key maps back to a queue.
        self._own_wake = {keys.worker_wake(self.worker_id, q): q for q in self.queues}
        self._wake_keys = [*dict.fromkeys(self._own_wake), *(keys.wake(q) for q in self.queues)]
        self._idle_keys = [keys.idle(q) for q in self.queues]
        self._outage = Outage("worker loop")
        self._live: LiveLogPublisher | None = None
        #: Moving average of the wall time of one task (s), for the claim size.
        self._task_seconds = 0.0
        grace = settings.lease_grace
        self.heartbeat = Heartbeat(
            self.redis,
            self.worker_id,
            self.queues,
            self.stats,
            settings.heartbeat_interval,
            leases=self._leases,
            renew_every=max(grace / 3, 0.05),
        )

    # -- main loop ------------------------------------------------------------------

    def run(self, stop: threading.Event, abort: threading.Event | None = None) -> None:
        """Work until ``stop`` is set (or, with ``burst``, the queues are empty).

        ``abort`` gives up at once on what is still held (leases recover it)."""
        self.abort = abort or threading.Event()
        self.stop_event = stop
        self._start_live_logs()
        self._cancels.start()
        self.heartbeat.start()
        self._note()
        log.info("worker started", worker_id=self.worker_id, queues=self.queues)
        try:
            while not stop.is_set():
                try:
                    queues = self.order.claim_order(self.rng) if self.order else self.queues
                    t_claim = time.perf_counter()
                    batch = self.broker.claim(queues, self.worker_id, self._batch_size())
                    self._outage.ok()
                    for observer in self.observers:
                        observer.claimed(queues, len(batch), time.perf_counter() - t_claim)
                except redis.RedisError as exc:
                    self._outage.failed(exc, stop)
                    continue
                self.stats.claims += 1
                if not batch:
                    self.stats.empty_claims += 1
                tasks = self._keep_runnable(batch)
                if tasks:
                    self._process(tasks, stop)
                if batch.left > 0:
                    continue
                if self.burst:
                    if not batch:
                        break
                    continue
                self._wait_for_work(stop)
        finally:
            self._close()
        log.info(
            "worker stopped",
            worker_id=self.worker_id,
            done=self.stats.done,
            failed=self.stats.failed,
        )

    def _batch_size(self) -> int:
        if self._task_seconds <= 0:
            return 1
        ceiling = self.settings.claim_batch
        return max(1, min(ceiling, int(BATCH_WORK / self._task_seconds)))

    def _keep_runnable(self, batch: list[Task | BadTask]) -> list[Task]:
        tasks: list[Task] = []
        for item in batch:
            if isinstance(item, BadTask):
                self.stats.failed += 1
                log.error(
                    "bad task dead-lettered" if item.kept else "bad task id dropped",
                    task_id=item.id,
                    queue=item.queue,
                    error=item.error,
                )
            else:
                tasks.append(item)
        return tasks

    def _process(self, tasks: list[Task], stop: threading.Event) -> None:
        with self._lock:
            for task in tasks:
                self._held[task.id] = task
                self._queued[task.id] = task
        self._note()
        reports: list[Report] = []
        first_done = 0.0
        for task in tasks:
            if stop.is_set():
                break
            with self._lock:
                if self._queued.pop(task.id, None) is None:
                    continue  # given back by another thread behind a slow task
            self._note()
            t0 = time.monotonic()
            interrupt = Interrupt()
            # Set before the look at the cancelled ids; cancel_running does the reverse.
            self._current = (task.id, interrupt)
            if self._cancelled.since(task.id, task.started_ms or 0):
                reports.append(self._not_started(task))
                continue
            reports.append(self.run_task(task, interrupt))
            took = time.monotonic() - t0
            self._task_seconds = (
                took if not self._task_seconds else (0.8 * self._task_seconds + 0.2 * took)
            )
            if len(reports) == 1:
                first_done = time.monotonic()
            elif time.monotonic() - first_done > ACK_DELAY and self._queued:
                self._flush(reports)
                reports = []
        self._running = None
        self._current = None
        self.stats.current_task = self.stats.current_name = ""
        with self._lock:
            unstarted = list(self._queued.values())
            self._queued.clear()
        if unstarted:
            self._release(unstarted)
        self._flush(reports)

    def give_back_queued(self) -> None:
        """Give back the claimed tasks not started yet (safe from any thread).

        They leave the run order at once; until Redis takes them back they stay held,
        so their leases are still renewed, and the next heartbeat tries again."""
        if not self._give_lock.acquire(blocking=False):
            return  # another thread is giving them back right now
        try:
            with self._lock:
                self._giving_back.extend(self._queued.values())
                self._queued.clear()
                behind = list(self._giving_back)
            if not behind:
                return
            self._note()
            try:
                self.broker.release(behind, self.worker_id)
            except redis.RedisError as exc:
                log.warning("cannot give back claimed tasks yet", error=str(exc))
                return
            with self._lock:
                for task in behind:
                    self._held.pop(task.id, None)
                del self._giving_back[: len(behind)]
            log.info("gave back claimed tasks not started", count=len(behind))
        finally:
            self._give_lock.release()

    def cancel_running(self, task_id: str) -> None:
        """A task was cancelled (called on the listener's thread): stop it if it runs
        here, and keep it from starting if it is claimed here."""
        self._cancelled.add(task_id)
        current = self._current
        if current is not None and current[0] == task_id:
            log.info("stopping cancelled task", task_id=task_id)
            current[1].request()

    def _not_started(self, task: Task) -> Report:
        log.info("cancelled task not started", task_id=task.id, task_name=task.task_name)
        return Report(
            task,
            ok=False,
            error="The task was cancelled before it started.",
            error_kind=ErrorKind.CANCELLED,
            started_ms=now_ms(),
        )

    def _note(self) -> None:
        if self._ledger is not None:
            with self._lock:
                unstarted = [*self._queued, *(t.id for t in self._giving_back)]
            self._ledger.note(self.worker_id, unstarted)

    # -- one task -------------------------------------------------------------------

    def run_task(self, task: Task, interrupt: Interrupt | None = None) -> Report:
        """Run one claimed task; never raises (every failure becomes a report).

        ``interrupt`` stops the run from another thread (the task was cancelled)."""
        started_ms = now_ms()
        self._running = (task.id, started_ms)
        self.stats.current_task = task.id
        self.stats.current_name = task.task_name
        try:
            limits = self.resolve_limits(task)
            module, digest, capabilities = self._module(task, bool(limits.fuel))
        except redis.RedisError as exc:
            return self._failed(
                task,
                started_ms,
                f"Redis error loading the module: {exc}",
                ErrorKind.REDIS,
                retryable=True,
            )
        except WasmqError as exc:
            return self._failed(task, started_ms, str(exc), ErrorKind.MODULE, retryable=False)
        except Exception as exc:
            log.exception("module load failed", task_id=task.id, task_name=task.task_name)
            return self._failed(
                task,
                started_ms,
                f"cannot load the module: {exc}",
                ErrorKind.MODULE,
                retryable=False,
            )
        live = self._live
        streaming = False
        on_output: Callable[[LogChunk], None] | None = None
        on_progress: Callable[[float, str], None] | None = None
        if live is not None:
            # The live publisher hears of a task only once it prints or reports progress:
            # most tasks do neither, and two hand-offs to its thread per task cost the
            # hot path.
            def on_output(chunk: LogChunk) -> None:
                nonlocal streaming
                if not streaming:
                    streaming = True
                    live.start_task(task.id)
                live.publish(chunk, task.id)

            def on_progress(value: float, message: str) -> None:
                nonlocal streaming
                if not streaming:
                    streaming = True
                    live.start_task(task.id)
                live.progress(task.id, value, message)

        try:
            outcome = self.sandbox.run(
                module,
                digest,
                task.payload,
                limits,
                task_name=task.task_name,
                capabilities=capabilities,
                on_output=on_output,
                on_progress=on_progress,
                interrupt=interrupt,
            )
        except Exception as exc:
            # The sandbox promises never to raise; if it does, the task fails, not the worker.
            log.exception("sandbox raised", task_id=task.id, task_name=task.task_name)
            return self._failed(
                task,
                started_ms,
                f"internal sandbox error: {exc}",
                ErrorKind.INTERNAL,
                retryable=False,
            )
        finally:
            if streaming and live is not None:
                live.end_task(task.id)
        return self._report(task, started_ms, outcome)

    def resolve_limits(self, task: Task) -> TaskLimits:
        """The task's requested limits, clamped to this worker's ceilings."""
        from runtime.sandbox import TaskLimits

        return TaskLimits.resolve(task.limits, self.settings)

    def _report(self, task: Task, started_ms: int, outcome: Outcome) -> Report:
        from runtime.output.chunks import encode_chunk
        from runtime.output.files import mirror_chunks, save_log_file

        chunks = outcome.logs
        log_file = ""
        if chunks or outcome.log_dropped:
            if self.settings.save_wasm_logs:
                try:
                    path = save_log_file(
                        self.settings, task.task_name, task.id, chunks, outcome.log_dropped
                    )
                    log_file = str(path)
                except OSError as exc:
                    log.warning("cannot save task log", task_id=task.id, error=str(exc))
            if self.settings.mirror_wasm_logs:
                as_json = self.settings.log_format == "json"
                mirror_chunks(task.task_name, task.id, chunks, as_json=as_json)
        report = Report(
            task,
            ok=bool(outcome.ok),
            result=outcome.result if outcome.ok else b"",
            error="" if outcome.ok else outcome.message,
            error_kind="" if outcome.ok else ErrorKind(outcome.kind.value),
            retryable=bool(outcome.retryable),
            started_ms=started_ms,
            duration_ms=float(outcome.duration_ms),
            logs=[encode_chunk(c) for c in chunks],
            log_bytes=int(outcome.log_bytes),
            log_dropped=int(outcome.log_dropped),
            log_file=log_file,
            progress=outcome.progress,
        )
        if outcome.ok:
            if log_file:
                log.info(
                    "task completed", task_id=task.id, task_name=task.task_name, log_file=log_file
                )
            else:
                log.debug("task completed", task_id=task.id, task_name=task.task_name)
        else:
            log.warning(
                "task failed",
                task_id=task.id,
                task_name=task.task_name,
                kind=outcome.kind,
                error=outcome.message,
                attempt=task.attempts,
                retryable=bool(outcome.retryable),
            )
        return report

    def _failed(
        self, task: Task, started_ms: int, error: str, kind: ErrorKind, *, retryable: bool
    ) -> Report:
        log.error("task failed", task_id=task.id, task_name=task.task_name, kind=kind, error=error)
        return Report(
            task, ok=False, error=error, error_kind=kind, retryable=retryable, started_ms=started_ms
        )

    def _module(self, task: Task, fuel: bool) -> tuple[wasmtime.Module, str, Capabilities | None]:
        from runtime.errors import RegistryError

        record = self._record(task.task_name)
        if record is None:
            # Removed (wasmq tasks rm) after the enqueue: a cached module must not run it.
            raise RegistryError(
                f"task {task.task_name} is no longer registered; register it again "
                "(wasmq register PATH) and enqueue again"
            )
        digest = task.digest or record.digest
        try:
            module = self.registry.load_module(digest, fuel=fuel)
        except RegistryError as exc:
            raise RegistryError(f"field digest={digest}: {exc}") from None
        return module, digest, record.capabilities

    def _record(self, name: str) -> TaskRecord | None:
        now = time.monotonic()
        cached = self._records.get(name)
        if cached is not None and now - cached[0] < RECORD_TTL:
            return cached[1]
        record = self.registry.get(name)
        self._records[name] = (now, record)
        return record

    # -- Redis side -----------------------------------------------------------------

    def _flush(self, reports: list[Report]) -> None:
        """Ack/nack ``reports``, retrying through outages (unless aborted)."""
        if not reports:
            return
        outage = Outage("ack")
        while True:
            try:
                statuses = self.broker.finish(reports)
                outage.ok()
                break
            except redis.RedisError as exc:
                if self.abort.is_set():
                    log.warning(
                        "gave up acking on abort; leases will recover the tasks", count=len(reports)
                    )
                    statuses = []
                    break
                outage.failed(exc, self.abort)
        for report, status in zip(reports, statuses, strict=False):
            for observer in self.observers:
                observer.reported(report, status)
        for status in statuses:
            # A status names the stage the report left its task in (or why it did not).
            if status == Stage.COMPLETED:
                self.stats.done += 1
            elif status in (Stage.FAILED, Stage.RETRYING):
                self.stats.failed += 1
        with self._lock:
            for report in reports:
                self._held.pop(report.task.id, None)

    def _release(self, tasks: list[Task]) -> None:
        outage = Outage("release")
        while not self.abort.is_set():
            try:
                self.broker.release(tasks, self.worker_id)
                break
            except redis.RedisError as exc:
                outage.failed(exc, self.abort)
        with self._lock:
            for task in tasks:
                self._held.pop(task.id, None)

    def _leases(self) -> dict[str, int]:
        """New lease deadlines for the held tasks; the running one keeps its own bound,
        so a wedged task is still recovered. Called on the heartbeat thread, which also
        gives back the tasks behind a task that runs long."""
        now = now_ms()
        running = self._running
        slow = running is not None and now - running[1] > RELEASE_BEHIND_AFTER * 1e3
        if self._giving_back or (self._queued and (slow or self.stop_event.is_set())):
            self.give_back_queued()
        grace = int(self.settings.lease_grace * 1000)
        ceiling = self.settings.max_task_timeout
        with self._lock:
            held = list(self._held.values())
        out: dict[str, int] = {}
        for task in held:
            timeout = int(min(task.timeout, ceiling) * 1000)
            if running is not None and running[0] == task.id:
                out[task.id] = running[1] + timeout + grace
            else:
                out[task.id] = now + timeout + grace
        return out

    def _wait_for_work(self, stop: threading.Event) -> None:
        """Block until a wake token arrives (or the safety timeout passes)."""
        self.sandbox.idle()
        try:
            # Registered as idle in the same round trip: an enqueue then wakes this
            # worker, the one idle for the shortest time, by its own token list.
            pipe = self.redis.pipeline(transaction=False)
            for key in self._idle_keys:
                pipe.zadd(key, {self.worker_id: now_ms()})
            if keys.tagged():
                pipe.execute()
                token = self._wait_in_turn(stop)
            else:
                pipe.blpop(self._wake_keys, timeout=IDLE_WAIT)
                token = pipe.execute()[-1]
        except (redis.RedisError, OSError) as exc:
            self._outage.failed(exc, stop)
            return
        if token is not None and stop.is_set():
            # Stopping: the token belongs to a task another worker should now run (if it
            # cannot go back, the others' one-second safety claim finds the task).
            key = token[0].decode() if isinstance(token[0], bytes) else token[0]
            if key in self._own_wake:
                # Addressed to this worker: make it anyone's.
                key = keys.wake(self._own_wake[key])
            with contextlib.suppress(redis.RedisError):
                self.redis.lpush(key, token[1])

    def _wait_in_turn(self, stop: threading.Event) -> Any:
        """Tagged layout (Redis Cluster): one BLPOP cannot span slots, so a worker of
        several queues waits on each queue's two lists in turn, QUEUE_TURN s each (a
        task of another queue waits up to that times the other queues); a worker of one
        queue waits as on one server."""
        turn = IDLE_WAIT if len(self.queues) == 1 else QUEUE_TURN
        deadline = time.monotonic() + IDLE_WAIT
        while True:
            for queue in self.queues:
                lists = [keys.worker_wake(self.worker_id, queue), keys.wake(queue)]
                token = self.redis.blpop(lists, timeout=turn)
                if token is not None:
                    return token
            if stop.is_set() or time.monotonic() >= deadline:
                return None

    def _start_live_logs(self) -> None:
        try:
            from runtime.output.live import LiveLogPublisher
        except ImportError:  # pragma: no cover - task logs are part of the package
            return
        self._live = LiveLogPublisher(
            self.redis,
            progress_writer=lambda updates: self.broker.progress(updates, self.worker_id),
        )

    def _close(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            pipe = self.redis.pipeline(transaction=False)
            for key in self._idle_keys:
                pipe.zrem(key, self.worker_id)
            for key in self._own_wake:
                pipe.delete(key)
            pipe.execute()
        held = list(self._held.values())
        if held and not self.abort.is_set():
            self._release(held)
        self.heartbeat.stop(deregister=True)
        self._cancels.stop()
        if self._live is not None:
            self._live.close()
        self.sandbox.close()
