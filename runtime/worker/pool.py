"""The worker supervisor: N worker processes plus the scheduler and reaper threads.

Each child is a fresh interpreter (``spawn``) with its own engine and connection. A
child that dies is replaced (with a growing delay if it keeps dying at start), and what
it held is recovered at once rather than at lease expiry: the tasks it had claimed but
not started (its :class:`SharedLedger` lists them) go back uncounted, the one it was
running counts as a lost attempt.

The first SIGTERM or SIGINT stops claiming everywhere: children give back at once what
they had not started, finish the task they run and ack it, up to ``drain_timeout``,
then everything exits 0. A SIGTERM sent to the whole process group (systemd,
``kill -- -PGID``, supervisord's ``stopasgroup``) drains the same way: a child treats
any number of SIGTERMs as one. A drain timeout or a second signal to the supervisor
kills the children and recovers their tasks the same way as a crash.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING, Any

import redis

from runtime import logging_config as logging_setup
from runtime.errors import WasmqError
from runtime.logging_config import get_logger
from runtime.queue.broker import Broker
from runtime.server.connection import connect
from runtime.settings import Settings
from runtime.worker.queue_order import QueueOrder

if TYPE_CHECKING:
    from runtime.telemetry.metrics import SupervisorMetrics

log = get_logger("worker")

#: A child that dies sooner than this after starting counts as crash-looping.
QUICK_DEATH = 2.0
#: How long killed children get to disappear before their tasks are recovered (s).
KILL_WAIT = 5.0


class SharedLedger:
    """Shared memory in which a child notes its worker id and the tasks it claimed but
    has not started, so the supervisor can give them back uncounted whatever the
    child died of. Written by the child at each claim and task start; read by the
    supervisor only once the child is dead, so no lock is needed."""

    def __init__(self, context: Any, claim_batch: int) -> None:
        # Worker ids and task ids are at most 200 characters (runtime.queue.names).
        self.size = 256 + 201 * max(claim_batch, 1)
        self._array: Any = context.RawArray("c", self.size)

    def note(self, worker_id: str, unstarted: Iterable[str]) -> None:
        data = "\n".join([worker_id, *unstarted]).encode()
        if len(data) >= self.size:
            data = data[: data.rfind(b"\n", 0, self.size - 1)]
        self._array.value = data

    def read(self) -> tuple[str, list[str]]:
        lines = bytes(self._array.value).decode("utf-8", "replace").split("\n")
        return lines[0], [line for line in lines[1:] if line]

    def clear(self) -> None:
        self._array.value = b""


def child_main(
    settings: Settings,
    queues: list[str],
    burst: bool,
    ledger: SharedLedger,
    order: QueueOrder | None = None,
) -> None:
    """Entry point of one worker process."""
    logging_setup.configure(settings.log_level, settings.log_format)
    stop = threading.Event()
    # The terminal's Ctrl-C reaches every process of the group; the supervisor decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A SIGTERM only writes the wakeup fd, and a thread acts on it. Python runs signal
    # handlers between bytecodes, so not while a task runs in the sandbox, and a handler
    # that set the event itself could interrupt the main thread inside the event's own
    # lock: a second SIGTERM (the supervisor's and the process group's) then deadlocked
    # the drain. The fd is set before the handler, so no SIGTERM falls between them, and
    # any number of them mean one drain.
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    from runtime.telemetry import worker_observers
    from runtime.worker.loop import Worker

    worker = Worker(
        settings,
        queues,
        burst=burst,
        ledger=ledger,
        order=order,
        observers=worker_observers(settings),
    )

    def watch_signals() -> None:
        # Also gives back the tasks that have not started, without waiting for the
        # running one to end.
        while data := os.read(read_fd, 64):
            if signal.SIGTERM in data:
                stop.set()
                worker.give_back_queued()

    threading.Thread(target=watch_signals, name="wasmq-signals", daemon=True).start()
    parent = os.getppid()

    def watch_parent() -> None:
        # An orphaned worker (supervisor SIGKILLed) drains instead of running forever.
        while not stop.wait(1.0):
            if os.getppid() != parent:
                log.warning("supervisor gone; stopping")
                stop.set()

    threading.Thread(target=watch_parent, name="wasmq-parent-watch", daemon=True).start()
    worker.run(stop)


@dataclass
class _Slot:
    process: BaseProcess | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float = 0.0
    done: bool = False
    pids: list[int] = field(default_factory=list)
    ledger: SharedLedger | None = None


class Pool:
    """Supervises ``concurrency`` worker processes on ``queues``."""

    def __init__(
        self,
        settings: Settings,
        queues: Sequence[str],
        *,
        concurrency: int | None = None,
        burst: bool = False,
        scheduler: bool = True,
        reaper: bool = True,
        order: QueueOrder | None = None,
        metrics: tuple[str, int] | None = None,
    ) -> None:
        self.settings = settings
        self.queues = list(queues) or [settings.queue]
        self.order = order
        self.concurrency = concurrency or settings.concurrency or os.cpu_count() or 1
        self.burst = burst
        self.with_scheduler = scheduler
        self.with_reaper = reaper
        self.stop = threading.Event()
        self._signals = 0
        self._abort = False
        #: Set once the children are gone: the server watch outlives the drain, whose
        #: acks need the server.
        self._exited = threading.Event()
        self._broker: Broker | None = None
        self._drain_deadline = 0.0
        self._context = multiprocessing.get_context("spawn")
        self._slots = [_Slot() for _ in range(self.concurrency)]
        self._threads: list[threading.Thread] = []
        #: Prometheus metrics of the children, served at ``metrics`` (host, port) while
        #: :meth:`run` runs.
        self.metrics: SupervisorMetrics | None = None
        if metrics is not None:
            from runtime.telemetry.metrics import SupervisorMetrics

            self.metrics = SupervisorMetrics(*metrics, processes=self.live_processes)

    def run(self) -> int:
        """Supervise until stopped (or, with ``burst``, until every child is done)."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            if self.metrics is not None:
                self.metrics.start()  # before any child: they inherit where to write
            self._start_threads()
            log.info(
                "worker pool started",
                processes=self.concurrency,
                queues=self.order.describe() if self.order else self.queues,
                burst=self.burst,
            )
            for slot in self._slots:
                self._spawn(slot)
            return self._supervise()
        finally:
            self.stop.set()
            self._exited.set()
            for thread in self._threads:
                thread.join(timeout=5)
            if self.metrics is not None:
                self.metrics.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def live_processes(self) -> int:
        return sum(1 for s in self._slots if s.process is not None)

    def pids(self) -> list[int]:
        return [s.process.pid for s in self._slots if s.process is not None and s.process.pid]

    def _spawn(self, slot: _Slot) -> None:
        if slot.ledger is None:
            slot.ledger = SharedLedger(self._context, self.settings.claim_batch)
        slot.ledger.clear()
        process = self._context.Process(
            target=child_main,
            args=(self.settings, self.queues, self.burst, slot.ledger, self.order),
            name="wasmq-worker",
        )
        process.start()
        slot.process = process
        slot.started = time.monotonic()
        if process.pid:
            slot.pids.append(process.pid)

    def _supervise(self) -> int:
        while True:
            now = time.monotonic()
            live = 0
            for slot in self._slots:
                if slot.done:
                    continue
                process = slot.process
                if process is None:
                    if now >= slot.restart_at and not self.stop.is_set():
                        self._spawn(slot)
                    live += 1
                    continue
                if process.is_alive():
                    live += 1
                    continue
                code = process.exitcode
                if self.metrics is not None and process.pid:
                    self.metrics.process_dead(process.pid)
                process.close()
                slot.process = None
                if code != 0:
                    self._recover(slot, f"worker process died ({_exit_text(code)})")
                if self.stop.is_set() or (self.burst and code == 0):
                    slot.done = True
                    continue
                lived = now - slot.started
                slot.quick_deaths = slot.quick_deaths + 1 if lived < QUICK_DEATH else 0
                delay = (
                    min(0.5 * 2 ** max(slot.quick_deaths - 1, 0), 30.0) if slot.quick_deaths else 0
                )
                slot.restart_at = now + delay
                log.warning("worker process died; replacing it", exitcode=code, restart_in=delay)
                live += 1
            if live == 0:
                log.info("worker pool stopped")
                return 0
            if self._abort:
                self._kill_and_recover("worker pool stopped by a second signal")
                return 1
            if self.stop.is_set() and now > self._drain_deadline:
                log.warning("drain timeout reached; killing workers and recovering their tasks")
                self._kill_and_recover("drain timeout: the worker was stopped during this attempt")
                return 0
            time.sleep(0.05)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "stopping: draining running tasks",
                signal=signal.Signals(signum).name,
                timeout=self.settings.drain_timeout,
            )
            self._drain_deadline = time.monotonic() + self.settings.drain_timeout
            self.stop.set()
            for slot in self._slots:
                if slot.process is not None and slot.process.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(slot.process.pid, signal.SIGTERM)
        else:
            log.warning("second signal: stopping now (running tasks are requeued)")
            self._abort = True

    def _kill_and_recover(self, reason: str) -> None:
        live = [s for s in self._slots if s.process is not None]
        for slot in live:
            if slot.process is not None and slot.process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signal.SIGKILL)
        for slot in live:
            if slot.process is not None:
                slot.process.join(KILL_WAIT)
                self._recover(slot, reason)

    def _recover(self, slot: _Slot, reason: str) -> None:
        """Give back what a dead child held: unstarted tasks uncounted, the running one
        as a lost attempt. Leases still cover anything this cannot reach."""
        if slot.ledger is None:
            return
        worker_id, unstarted = slot.ledger.read()
        slot.ledger.clear()
        if not worker_id:
            return
        try:
            if self._broker is None:
                self._broker = Broker(connect(self.settings, check=False), self.settings)
            released, requeued, failed = self._broker.recover_worker(
                worker_id, self.queues, unstarted, f"{reason} while running this attempt"
            )
        except (redis.RedisError, WasmqError) as exc:
            log.warning(
                "cannot recover a dead worker's tasks now; their leases will",
                worker_id=worker_id,
                error=str(exc),
            )
            return
        if released or requeued or failed:
            log.info(
                "recovered a dead worker's tasks",
                worker_id=worker_id,
                released=released,
                requeued=requeued,
                failed=failed,
            )

    def _start_threads(self) -> None:
        if not self.settings.redis_url:
            from runtime.server import embedded

            # Workers retry Redis errors forever: without this, a dead embedded server
            # would stay dead until some other command happened to start it.
            state_dir = self.settings.state_dir
            self._thread("wasmq-server-watch", lambda: embedded.supervise(state_dir, self._exited))
        if self.with_scheduler:
            from runtime.scheduling.scheduler import Scheduler

            scheduler = Scheduler(connect(self.settings, check=False), self.settings)
            self._thread("wasmq-scheduler", lambda: scheduler.run(self.stop))
        if self.with_reaper:
            from runtime.queue.reaper import Reaper

            client = connect(self.settings, check=False)
            reaper = Reaper(Broker(client, self.settings), self.settings)
            self._thread("wasmq-reaper", lambda: reaper.run(self.stop))

    def _thread(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
