"""The live stream of a running task's output and progress, published from a worker thread.

While a task runs, :class:`LiveLogPublisher` also appends its chunks to the Redis
stream ``task_log_stream:<id>`` so ``wasmq logs ID --follow`` sees them as they are
printed. Only tasks still running after :data:`LIVE_DELAY` seconds are streamed: most
tasks finish sooner, and for them the stored list (written with the ack) serves
``--follow`` just as well, so the hot path costs one in-memory queue put per chunk.

Progress reports go the same way, rate-limited: the latest report of a task waits in
one slot (a handler calling progress in a tight loop only overwrites it), and is
written at most every :data:`PROGRESS_INTERVAL` seconds once the task has run for
:data:`LIVE_DELAY`. The ack writes the last report of the attempt.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from runtime.logging_config import get_logger
from runtime.output.chunks import LogChunk
from runtime.queue import keys

#: Tasks that end sooner than this (seconds) are never streamed live.
LIVE_DELAY = 0.05
#: Approximate length cap of a live stream (``XADD ... MAXLEN ~``).
LIVE_MAXLEN = 1000
#: A live stream expires this long (ms) after its last write while the task runs...
LIVE_TTL_MS = 10 * 60 * 1000
#: ...and this long after the attempt ends (late followers read the stored list).
LIVE_TTL_AFTER_END_MS = 60 * 1000
#: Shortest time (s) between two progress writes of one task.
PROGRESS_INTERVAL = 0.25

#: Writes progress reports: (task id, value, message) each.
ProgressWriter = Callable[[Sequence[tuple[str, float, str]]], None]

log = get_logger("worker")


@dataclass
class _LiveTask:
    started: float
    buffered: list[LogChunk]
    next_index: int = 0
    streaming: bool = False
    #: When this task's progress was last written (monotonic s).
    progress_sent: float = 0.0


_Event = tuple[str, str, "LogChunk | None", float]


class LiveLogPublisher:
    """Streams the output of running tasks to ``task_log_stream:<id>`` from a thread.

    The worker calls :meth:`start_task`, :meth:`publish` for each chunk (from the
    sandbox's ``on_output``) and :meth:`end_task`; each is an in-memory queue put.
    Chunks are held back until the task has run for ``delay`` seconds, then flushed
    and streamed as they come; a task that ends sooner never touches Redis here.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        delay: float = LIVE_DELAY,
        maxlen: int = LIVE_MAXLEN,
        progress_writer: ProgressWriter | None = None,
        progress_interval: float = PROGRESS_INTERVAL,
    ) -> None:
        self.client = client
        self.delay = delay
        self.maxlen = maxlen
        self.progress_writer = progress_writer
        self.progress_interval = progress_interval
        self._events: queue.SimpleQueue[_Event | None] = queue.SimpleQueue()
        self._tasks: dict[str, _LiveTask] = {}
        #: The latest unwritten progress report of each task: one slot per task.
        self._progress: dict[str, tuple[float, str]] = {}
        self._progress_lock = threading.Lock()
        self._current = threading.local()
        self._thread = threading.Thread(target=self._run, name="wasmq-live-logs", daemon=True)
        self._thread.start()

    def start_task(self, task_id: str) -> None:
        """A task starts on this thread; :meth:`publish` without an id refers to it."""
        self._current.task_id = task_id
        self._events.put(("start", task_id, None, time.monotonic()))

    def publish(self, chunk: LogChunk, task_id: str | None = None) -> None:
        """One chunk of output of ``task_id`` (default: the task started on this thread)."""
        target = task_id or getattr(self._current, "task_id", None)
        if target:
            self._events.put(("chunk", target, chunk, 0.0))

    def progress(self, task_id: str, value: float, message: str) -> None:
        """The latest progress of ``task_id`` (started with :meth:`start_task`): it
        replaces any report not written yet, and wakes the thread only when the slot
        was empty."""
        with self._progress_lock:
            fresh = task_id not in self._progress
            self._progress[task_id] = (value, message)
        if fresh:
            self._events.put(("progress", task_id, None, 0.0))

    def end_task(self, task_id: str) -> None:
        if getattr(self._current, "task_id", None) == task_id:
            self._current.task_id = None
        self._events.put(("end", task_id, None, 0.0))

    def close(self, timeout: float = 2.0) -> None:
        """Flush what is queued and stop the thread."""
        self._events.put(None)
        self._thread.join(timeout)

    def _next_deadline(self) -> float | None:
        waiting = [t.started + self.delay for t in self._tasks.values() if not t.streaming]
        for task_id in list(self._progress):
            task = self._tasks.get(task_id)
            if task is not None and task.streaming:
                waiting.append(task.progress_sent + self.progress_interval)
        return min(waiting) if waiting else None

    def _run(self) -> None:
        while True:
            deadline = self._next_deadline()
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                event = ("tick", "", None, 0.0)
            batch = [event]
            # Drain what else is queued so one round trip carries it all.
            while batch[-1] is not None:
                try:
                    batch.append(self._events.get_nowait())
                except queue.Empty:
                    break
            try:
                self._handle(batch)
            except redis.RedisError as exc:
                log.warning("live log stream write failed", error=str(exc))
            except Exception:
                # Live logs are a convenience: never let a bug here take the worker down.
                log.exception("live log publisher failed")
            if batch[-1] is None:
                return

    def _handle(self, batch: list[_Event | None]) -> None:
        pipe = self.client.pipeline(transaction=False)
        touched: set[str] = set()
        for event in batch:
            if event is not None:
                self._apply(pipe, touched, event)
        now = time.monotonic()
        for task_id, task in self._tasks.items():
            if not task.streaming and now >= task.started + self.delay:
                task.streaming = True
                for chunk in task.buffered:
                    self._xadd(pipe, task_id, task, chunk)
                task.buffered = []
                touched.add(task_id)
        for task_id in touched:
            pipe.pexpire(keys.log_stream(task_id), LIVE_TTL_MS)
        if len(pipe):
            pipe.execute()
        self._write_progress(now)

    def _write_progress(self, now: float) -> None:
        due: list[tuple[str, float, str]] = []
        with self._progress_lock:
            for task_id, (value, message) in list(self._progress.items()):
                task = self._tasks.get(task_id)
                if task is None:
                    del self._progress[task_id]  # ended: the ack wrote its last report
                elif task.streaming and now >= task.progress_sent + self.progress_interval:
                    del self._progress[task_id]
                    task.progress_sent = now
                    due.append((task_id, value, message))
        if due and self.progress_writer is not None:
            self.progress_writer(due)

    def _apply(self, pipe: redis.client.Pipeline, touched: set[str], event: _Event) -> None:
        kind, task_id, chunk, started = event
        if kind == "start":
            self._tasks[task_id] = _LiveTask(started=started, buffered=[])
        elif kind == "chunk" and chunk is not None:
            task = self._tasks.get(task_id)
            if task is None:
                return
            if task.streaming:
                self._xadd(pipe, task_id, task, chunk)
                touched.add(task_id)
            else:
                task.buffered.append(chunk)
                if len(task.buffered) > self.maxlen:
                    # The stream keeps about maxlen entries anyway; keep the numbering right.
                    task.buffered.pop(0)
                    task.next_index += 1
        elif kind == "end":
            ended = self._tasks.pop(task_id, None)
            if ended is not None and ended.streaming:
                key = keys.log_stream(task_id)
                pipe.xadd(key, {"e": b"1"}, maxlen=self.maxlen, approximate=True)
                pipe.pexpire(key, LIVE_TTL_AFTER_END_MS)
                touched.discard(task_id)

    def _xadd(
        self, pipe: redis.client.Pipeline, task_id: str, task: _LiveTask, chunk: LogChunk
    ) -> None:
        fields = {"s": chunk.stream, "t": chunk.ts_ms, "d": chunk.data, "n": task.next_index}
        task.next_index += 1
        pipe.xadd(keys.log_stream(task_id), fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
