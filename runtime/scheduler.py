"""The scheduler: moves due one-off, retrying and cron tasks to their pending lists.

Every state change is one Lua script, so any number of schedulers (one per worker
supervisor, plus ``wasmq scheduler``) can run against one Redis at once:

- One-off scheduled tasks and retries whose backoff ended are promoted by
  ``promote.lua``: it removes the due ids from ``task_set:scheduled``, sets them
  pending, RPUSHes them (they run ahead of the backlog, as in the reference) and
  publishes on ``wasmq:ready:<queue>`` so idle workers wake. Ids whose record is
  gone are dropped from the set; a damaged record goes to a pending list so the
  worker fails it with a clear error, and never stops the others.
- A cron entry stays in ``task_set:scheduled`` at its next due time. Its next time
  is computed here with :class:`~runtime.cron.CronSchedule`, then ``cron_fire.lua``
  does a compare-and-set on the entry's score: only the scheduler that still sees the
  score it read wins, creates the run (id ``<entry id>:<due ms>``, ``cron_id`` = entry
  id, its own result and logs) and moves the entry to its next time. Like an enqueue,
  each run takes the module version registered when it fires (re-registering a task
  updates its cron runs); the entry's recorded digest is the fallback.

Policies:

- **Missed runs.** After downtime (no scheduler running) an entry runs *once* for the
  whole missed window, as soon as a scheduler is back; the number of ticks it missed is
  added to the entry's ``missed_runs``. It then follows its schedule: the next run is
  the first tick after the moment it caught up, never a burst of old ticks.
- **Overlap.** At most one run per entry is alive. When a tick comes while the
  previous run is still pending, retrying or in progress, that tick is skipped and
  counted in the entry's ``skipped_runs``; the next tick tries again. Runs never pile
  up, whatever the worker capacity.
- **Wake-ups.** The loop blocks on ``BLPOP wasmq:scheduler:wake`` until about 100 ms
  before the earliest due time (at most ``max_sleep``, 1 s), then sleeps the last stretch
  locally, because the server only checks blocking timeouts every 100 ms; so it never
  polls fast and promotes within a few ms of the due time. Whoever schedules something
  earlier than everything else pushes to that list (:func:`wake`).
- **Clocks.** Each scheduler uses its own clock. With several schedulers, a fast clock
  fires early but never twice: the compare-and-set decides.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from runtime import keys
from runtime.cron import CronSchedule
from runtime.errors import InvalidTask, WasmqError
from runtime.log import get_logger
from runtime.scripts import Scripts
from runtime.settings import Settings
from runtime.task import format_time

log = get_logger("scheduler")

#: Granularity of server-side blocking timeouts (1 / hz, hz 10 by default).
_SERVER_TICK = 0.1
#: Longest ids a run may have (runtime.names allows 200 characters).
_MAX_ID = 200


def check_future(ms: int, now: int | None = None, grace_ms: int = 100) -> int:
    """``ms`` when it is not in the past; raises :class:`InvalidTask` otherwise.

    The enqueue side calls it for ``--at``/``--in``: the reference refuses a scheduled
    time before now. ``grace_ms`` lets ``--in 0s`` (computed a moment earlier) through.
    """
    current = _now() if now is None else now
    if ms < current - grace_ms:
        raise InvalidTask(
            f"scheduled time {format_time(ms)} is in the past (now {format_time(current)}): "
            "give a future RFC3339 time or a delay like --in 30s"
        )
    return ms


def run_id(entry_id: str, due_ms: int) -> str:
    """The id of the run an entry makes for the tick due at ``due_ms``."""
    suffix = f":{due_ms}"
    if len(entry_id) + len(suffix) > _MAX_ID:
        import hashlib

        digest = hashlib.sha256(entry_id.encode()).hexdigest()[:16]
        entry_id = entry_id[: _MAX_ID - len(suffix) - 17] + "-" + digest
    return entry_id + suffix


def wake(client: redis.Redis | Any) -> None:
    """Wake one sleeping scheduler (the list stays bounded when none is running)."""
    client.lpush(keys.SCHEDULER_WAKE, "1")
    client.ltrim(keys.SCHEDULER_WAKE, 0, 9)


@dataclass
class Tick:
    """What one :meth:`Scheduler.run_once` did."""

    promoted: int = 0
    cron_runs: int = 0
    skipped: int = 0
    dropped: int = 0

    @property
    def total(self) -> int:
        return self.promoted + self.cron_runs


class Scheduler:
    """Promotes due tasks; safe to run in many processes and threads at once.

    :param client: the Redis connection (blocking ``BLPOP`` uses one pooled connection).
    :param settings: wasmq settings (kept for the worker's interface).
    :param batch: most due ids one promotion script looks at.
    :param max_sleep: longest wait between two checks, in seconds.
    """

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        *,
        batch: int = 200,
        max_sleep: float = 1.0,
    ) -> None:
        self.client = client
        self.settings = settings
        self.batch = batch
        self.max_sleep = max_sleep
        self.last = Tick()
        self._scripts = Scripts(client)
        self._schedules: dict[tuple[str, str], CronSchedule | InvalidTask] = {}

    def run_once(self, now_ms: int | None = None) -> int:
        """Promote everything due at ``now_ms``; returns how many tasks became pending."""
        now = _now() if now_ms is None else now_ms
        tick = Tick()
        # A full batch means more may be due; the bound keeps one call short.
        for _ in range(50):
            promoted, dropped, crons, seen = self._scripts.promote(
                keys=[keys.SCHEDULED], args=[now, self.batch, format_time(now)]
            )
            tick.promoted += len(promoted)
            tick.dropped += len(dropped)
            for raw in promoted:
                log.debug("task promoted", task_id=raw.decode())
            for raw in dropped:
                log.warning("dropped scheduled id without a runnable record", task_id=raw.decode())
            for i in range(0, len(crons), 4):
                entry, score, expr, tz = crons[i : i + 4]
                outcome = self._fire(entry.decode(), int(float(score)), expr, tz, now)
                tick.cron_runs += outcome == 1
                tick.skipped += outcome == 2
            if int(seen) < self.batch:
                break
        self.last = tick
        return tick.total

    def _schedule(self, expr: str, tz: str) -> CronSchedule:
        cached = self._schedules.get((expr, tz))
        if cached is None:
            try:
                cached = CronSchedule.parse(expr, tz or "UTC")
            except InvalidTask as exc:
                cached = exc
            if len(self._schedules) > 10_000:
                self._schedules.clear()
            self._schedules[(expr, tz)] = cached
        if isinstance(cached, InvalidTask):
            raise cached
        return cached

    def _fire(self, entry: str, due: int, raw_expr: bytes, raw_tz: bytes, now: int) -> int:
        try:
            schedule = self._schedule(raw_expr.decode(), raw_tz.decode())
            nxt = schedule.next_after(max(now, due))
            missed = schedule.missed_between(due, now) if now - due >= 1000 else 0
        except (InvalidTask, UnicodeDecodeError) as exc:
            # No next time can be computed: park the entry instead of firing it forever.
            reason = f"cron entry paused: {exc}"
            self._scripts.cron_pause(
                keys=[keys.SCHEDULED, keys.CRON_PAUSED, keys.task(entry)],
                args=[entry, format_time(now), reason],
            )
            log.error("cron entry paused", task_id=entry, error=reason)
            return 0
        run = run_id(entry, due)
        outcome = int(
            self._scripts.cron_fire(
                keys=[keys.SCHEDULED, keys.CRON_LAST_RUN, keys.TASK_REGISTRY],
                args=[
                    entry,
                    due,
                    nxt,
                    run,
                    now,
                    format_time(now),
                    format_time(due),
                    format_time(nxt),
                    missed,
                ],
            )
        )
        if outcome == 1:
            log.info("cron fired", task_id=run, cron_id=entry, due=format_time(due), missed=missed)
        elif outcome == 2:
            log.info("cron tick skipped: previous run still alive", cron_id=entry)
        return outcome

    def next_due(self) -> int | None:
        """Due time (ms) of the earliest entry, or ``None`` when nothing is scheduled."""
        head = self.client.zrange(keys.SCHEDULED, 0, 0, withscores=True)
        return int(head[0][1]) if head else None

    def sleep_for(self, now: int) -> float:
        """Seconds to wait before the next check (0 when something is due)."""
        due = self.next_due()
        if due is None:
            return self.max_sleep
        return max(0.0, min(self.max_sleep, (due - now) / 1000))

    def run(self, stop: threading.Event) -> None:
        """Promote until ``stop`` is set, sleeping until the next due time or a wake-up."""
        log.info("scheduler started")
        failures = 0
        while not stop.is_set():
            try:
                self.run_once()
                wait = self.sleep_for(_now())
                if wait > _SERVER_TICK:
                    # The server checks blocking timeouts on its cron tick (100 ms at the
                    # default hz), so it may answer late: block until one tick before the
                    # due time (a wake-up returns at once), then sleep the rest here.
                    self.client.blpop([keys.SCHEDULER_WAKE], timeout=wait - _SERVER_TICK)
                elif wait >= 0.001:
                    # A task scheduled during this short sleep is due before the head
                    # at the latest, so it is promoted less than a tick late.
                    stop.wait(wait)
                failures = 0
            except (redis.RedisError, OSError, WasmqError) as exc:
                failures += 1
                delay = min(5.0, 0.2 * 2**failures)
                log.warning("scheduler error, retrying", error=str(exc), retry_in=delay)
                stop.wait(delay)
        log.info("scheduler stopped")


def _now() -> int:
    return int(time.time() * 1000)
