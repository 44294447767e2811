"""The worker supervisor: N worker processes plus the scheduler and reaper threads.

Each child is a fresh interpreter (``spawn``) with its own engine and connection. A
child that dies is replaced (with a growing delay if it keeps dying at start). The
first SIGTERM or SIGINT stops claiming everywhere: children finish the task they run,
give back what they had not started and ack the rest, up to ``drain_timeout``, then
everything exits 0. A second signal kills the children at once; their leases recover
whatever they held.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from types import FrameType

from runtime import log as logging_setup
from runtime.broker import Broker
from runtime.connection import connect
from runtime.log import get_logger
from runtime.settings import Settings

log = get_logger("worker")

#: A child that dies sooner than this after starting counts as crash-looping.
QUICK_DEATH = 2.0


def child_main(settings: Settings, queues: list[str], burst: bool) -> None:
    """Entry point of one worker process."""
    logging_setup.configure(settings.log_level, settings.log_format)
    stop = threading.Event()
    abort = threading.Event()
    # The terminal's Ctrl-C reaches every process of the group; the supervisor decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_term(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            abort.set()
            os._exit(1)
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    parent = os.getppid()

    def watch_parent() -> None:
        # An orphaned worker (supervisor SIGKILLed) drains instead of running forever.
        while not stop.wait(1.0):
            if os.getppid() != parent:
                log.warning("supervisor gone; stopping")
                stop.set()

    threading.Thread(target=watch_parent, name="wasmq-parent-watch", daemon=True).start()
    from runtime.worker import Worker

    Worker(settings, queues, burst=burst).run(stop, abort)


@dataclass
class _Slot:
    process: BaseProcess | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float = 0.0
    done: bool = False
    pids: list[int] = field(default_factory=list)


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
    ) -> None:
        self.settings = settings
        self.queues = list(queues) or [settings.queue]
        self.concurrency = concurrency or settings.concurrency or os.cpu_count() or 1
        self.burst = burst
        self.with_scheduler = scheduler
        self.with_reaper = reaper
        self.stop = threading.Event()
        self._signals = 0
        self._drain_deadline = 0.0
        self._context = multiprocessing.get_context("spawn")
        self._slots = [_Slot() for _ in range(self.concurrency)]
        self._threads: list[threading.Thread] = []

    def run(self) -> int:
        """Supervise until stopped (or, with ``burst``, until every child is done)."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self._start_threads()
            log.info("worker pool started", processes=self.concurrency, queues=self.queues,
                     burst=self.burst)  # fmt: skip
            for slot in self._slots:
                self._spawn(slot)
            return self._supervise()
        finally:
            self.stop.set()
            for thread in self._threads:
                thread.join(timeout=5)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def pids(self) -> list[int]:
        return [s.process.pid for s in self._slots if s.process is not None and s.process.pid]

    def _spawn(self, slot: _Slot) -> None:
        process = self._context.Process(
            target=child_main,
            args=(self.settings, self.queues, self.burst),
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
                process.close()
                slot.process = None
                if self.stop.is_set() or (self.burst and code == 0):
                    slot.done = True
                    continue
                lived = now - slot.started
                slot.quick_deaths = slot.quick_deaths + 1 if lived < QUICK_DEATH else 0
                delay = (
                    min(0.5 * 2 ** max(slot.quick_deaths - 1, 0), 30.0) if slot.quick_deaths else 0
                )
                slot.restart_at = now + delay
                log.warning("worker process died; replacing it", exitcode=code,
                            restart_in=delay)  # fmt: skip
                live += 1
            if live == 0:
                log.info("worker pool stopped")
                return 0
            if self.stop.is_set() and now > self._drain_deadline:
                log.warning("drain timeout reached; killing workers (leases recover their tasks)")
                self._kill_all()
                return 0
            time.sleep(0.05)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("stopping: draining running tasks", signal=signal.Signals(signum).name,
                     timeout=self.settings.drain_timeout)  # fmt: skip
            self._drain_deadline = time.monotonic() + self.settings.drain_timeout
            self.stop.set()
            for slot in self._slots:
                if slot.process is not None and slot.process.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(slot.process.pid, signal.SIGTERM)
        else:
            log.warning("second signal: exiting now (leases recover running tasks)")
            self._kill_all()
            os._exit(1)

    def _kill_all(self) -> None:
        for slot in self._slots:
            if slot.process is not None and slot.process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signal.SIGKILL)

    def _start_threads(self) -> None:
        if self.with_scheduler:
            from runtime.scheduler import Scheduler

            scheduler = Scheduler(connect(self.settings, check=False), self.settings)
            self._thread("wasmq-scheduler", lambda: scheduler.run(self.stop))
        if self.with_reaper:
            from runtime.reaper import Reaper

            client = connect(self.settings, check=False)
            reaper = Reaper(Broker(client, self.settings), self.settings)
            self._thread("wasmq-reaper", lambda: reaper.run(self.stop))

    def _thread(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
