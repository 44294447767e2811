"""The reaper: recovers tasks whose lease expired because their worker died or hung.

Each round calls ``reap.lua``, which atomically takes every expired id out of the lease
set and processing list and either requeues it (its attempt was counted at claim) or
dead-letters it when its retries are spent, so any number of reapers (one per worker
supervisor, plus ``wasmq reaper``) can run at once without recovering a task twice.

A lease a reference Go worker took (its task has no ``worker`` field, which every wasmq
claim writes) is left alone however long it has expired: requeueing it would run the
task twice while that worker still runs it. Each such lease is logged once per reaper.
"""

from __future__ import annotations

import threading
import time

import redis

from runtime.clock import now_ms
from runtime.logging_config import get_logger
from runtime.queue import catalog, keys
from runtime.queue.broker import REAP_BATCH, Broker
from runtime.settings import Settings

log = get_logger("reaper")

#: Seconds between two trims of the task index by one reaper (each trim reads the queue
#: set and the registry's names and sends two commands per index).
INDEX_TRIM_EVERY = 60.0
#: Most reference-held lease ids a reaper remembers having logged.
_FOREIGN_LOGGED_MAX = 10_000


class Reaper:
    """Runs :meth:`Broker.reap` every ``settings.reaper_interval`` seconds."""

    def __init__(self, broker: Broker, settings: Settings) -> None:
        self.broker = broker
        self.settings = settings
        self._trimmed_at = 0.0
        self._foreign_logged: set[str] = set()

    def run_once(self) -> list[tuple[str, str]]:
        """One round: recover everything expired now; ``[(id, action)]``. Also trims the
        task index (:func:`runtime.queue.catalog.trim`) once every ``INDEX_TRIM_EVERY``."""
        if time.monotonic() - self._trimmed_at >= INDEX_TRIM_EVERY:
            self._trimmed_at = time.monotonic()
            dropped = catalog.trim(self.broker.redis, self.settings, now_ms())
            if dropped:
                log.debug("task index trimmed", entries=dropped)
        recovered: list[tuple[str, str]] = []
        # The tagged layout (Redis Cluster) keeps one lease set per queue, each with its
        # own count of foreign leases to pass over.
        for queue in self.broker.queues() if keys.tagged() else [None]:
            recovered.extend(self._reap(queue))
        return recovered

    def _reap(self, queue: str | None) -> list[tuple[str, str]]:
        """Everything expired in one lease set (``queue``'s, or the shared one: None)."""
        recovered: list[tuple[str, str]] = []
        foreign = 0
        while True:
            batch = self.broker.reap(limit=REAP_BATCH, skip=foreign, queue=queue)
            recovered.extend(batch)
            for task_id, action in batch:
                if action == "requeued":
                    log.warning("lease expired: task requeued", task_id=task_id)
                elif action == "failed":
                    log.error("lease expired: retries spent, task dead-lettered", task_id=task_id)
                elif action == "foreign":
                    foreign += 1
                    self._note_foreign(task_id)
                else:
                    log.info("lease expired: stale id dropped", task_id=task_id)
            if len(batch) < REAP_BATCH:
                return recovered

    def _note_foreign(self, task_id: str) -> None:
        if task_id in self._foreign_logged:
            return
        if len(self._foreign_logged) >= _FOREIGN_LOGGED_MAX:
            self._foreign_logged.clear()
        self._foreign_logged.add(task_id)
        log.info("lease expired: held by a reference worker, left to it", task_id=task_id)

    def run(self, stop: threading.Event) -> None:
        """Reap until ``stop`` is set; Redis errors are retried with backoff."""
        log.info("reaper started", interval=self.settings.reaper_interval)
        down = False
        delay = self.settings.reaper_interval
        while True:
            try:
                self.run_once()
                if down:
                    log.info("reaper: Redis available again")
                    down = False
                delay = self.settings.reaper_interval
            except redis.RedisError as exc:
                if not down:
                    log.warning("reaper: Redis unavailable, retrying", error=str(exc))
                    down = True
                delay = min(max(delay, 0.1) * 2, 5.0)
            if stop.wait(delay):
                break
        log.info("reaper stopped")
