"""The scheduler: moves due one-off, retrying and cron tasks to their pending lists.

Every state change is one Lua script, so any number of schedulers (one per worker
supervisor, plus ``wasmq scheduler``) can run against one Redis at once:

- One-off scheduled tasks and retries whose backoff ended are promoted by
  ``promote.lua``, up to ``batch`` due ids per call: it removes them from
  ``task_set:scheduled``, sets them pending and RPUSHes them (they run ahead of the
  backlog, as in the reference, earliest due first), then pushes one wake token per
  task onto ``wasmq:wake:<queue>`` (trimmed to the pending list's length) so that as
  many idle workers wake as there are tasks. Ids whose record is gone are dropped from
  the set; a damaged record goes to a pending list so the worker fails it with a clear
  error, and never stops the others. A pass takes the due range from its latest end,
  so a backlog that needs many calls still ends up earliest first.
- A cron entry stays in ``task_set:scheduled`` at its next due time. ``promote.lua``
  returns the due entries; their next times are computed here with
  :class:`~runtime.scheduling.cron_expr.CronSchedule` (once per expression, zone and due time, so a
  thousand entries of one schedule cost one computation), then one ``cron_fire.lua``
  call fires every entry due in the pass (``cron_batch`` per call). For each entry it
  does a compare-and-set on the entry's score (and expression and zone): only the
  scheduler that still sees the score it read wins, creates the run (id
  ``<entry id>:<due ms>``, ``cron_id`` = entry id, its own result and logs) and moves
  the entry to its next time. Like an enqueue, each run takes the module version
  registered when it fires (re-registering a task updates its cron runs); the entry's
  recorded digest is the fallback. A scheduler remembers where it moved the entries it
  fired and, when that time comes, fires them from memory before reading the due
  range; the compare-and-set rejects whatever changed meanwhile.

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
- **Several schedulers.** The one that fired an entry's last tick fires its next one
  from memory. The others, having found those entries fired, hold back 20 ms at that
  time instead of racing it for the same work, then make their pass as usual: if that
  scheduler is gone, its entries fire 20 ms late once, then from this one's memory.
- **Units.** ``task_set:scheduled`` is scored in Unix seconds, as the reference's
  scheduler reads it, so either promotes what the other scheduled; everything here
  counts ms and converts at the set (``task.ms_to_score``). Run one kind of scheduler
  on a shared Redis: both would fire the same cron entries.
- **Clocks.** Each scheduler uses its own clock. With several schedulers, a fast clock
  fires early but never twice: the compare-and-set decides.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import redis

from runtime import clock
from runtime.errors import InvalidTask, WasmqError
from runtime.logging_config import get_logger
from runtime.queue import keys, scripts
from runtime.queue.scripts import FireEntry, FireGroup, Scripts
from runtime.queue.slots import Mirrors
from runtime.queue.task import format_time, score_to_ms
from runtime.scheduling.cron_expr import CronSchedule
from runtime.settings import Settings

log = get_logger("scheduler")

#: Granularity of server-side blocking timeouts (1 / hz, hz 10 by default).
_SERVER_TICK = 0.1
#: Longest ids a run may have (runtime.queue.names allows 200 characters).
_MAX_ID = 200
#: Bound on promotion calls in one pass, so a producer that keeps adding past-due work
#: cannot hold the loop in one pass forever (at the default batch, a million ids).
_MAX_ROUNDS = 1000
#: Up to this many firings in one call are logged one line each.
_LOG_EACH = 10
#: Most cron entries a scheduler remembers the next place of (see ``Scheduler._ahead``).
_AHEAD_MAX = 100_000
#: Head start (s) given to the scheduler that fired the cron entries due last time: it
#: sends its firing within a few ms of the tick, and whatever arrives after that queues
#: behind it on the server instead of reading and racing for the same entries.
_FOLLOW_DELAY = 0.02


def check_future(ms: int, now: int | None = None, grace_ms: int = 100) -> int:
    """``ms`` when it is not in the past; raises :class:`InvalidTask` otherwise.

    The enqueue side calls it for ``--at``/``--in``: the reference refuses a scheduled
    time before now. ``grace_ms`` lets ``--in 0s`` (computed a moment earlier) through.
    """
    current = clock.now_ms() if now is None else now
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
    """Wake one sleeping scheduler (the list stays bounded when none is running); on a
    Redis Cluster schedulers poll instead (:data:`TAGGED_POLL`)."""
    if keys.tagged():
        return
    client.lpush(keys.scheduler_wake(), "1")
    client.ltrim(keys.scheduler_wake(), 0, 9)


#: Longest sleep of a scheduler on a Redis Cluster (s): one BLPOP cannot wait on every
#: queue's wake list, so it looks at each queue's scheduled set this often instead.
TAGGED_POLL = 0.1


@dataclass
class Tick:
    """What one :meth:`Scheduler.run_once` did."""

    promoted: int = 0
    cron_runs: int = 0
    skipped: int = 0
    dropped: int = 0
    #: Cron firings another scheduler made first (this one found the entry moved on).
    lost: int = 0
    #: ``cron_fire.lua`` calls made (one per tick unless more than ``cron_batch`` are due).
    fire_calls: int = 0

    @property
    def total(self) -> int:
        return self.promoted + self.cron_runs


#: A due cron entry: id, score (its due time), expression, zone, as stored (raw bytes).
_DueEntry = tuple[bytes, int, bytes, bytes]
#: What a tick of one schedule fires: next due ms, missed ticks, due and next as RFC3339.
_Plan = tuple[int, int, str, str]


class _FireCall:
    """The arguments of one ``cron_fire.lua`` call, entries grouped by tick."""

    def __init__(self, now: int, now_text: str, queue: str | None) -> None:
        self.now, self.now_text, self.queue = now, now_text, queue
        self.group_args: list[FireGroup] = []
        self.groups: dict[tuple[bytes, bytes, int], int] = {}
        self.entry_args: list[FireEntry] = []
        #: Per entry: id, run id, due, missed ticks, the entry's next place (for later).
        self.entries: list[tuple[str, str, int, int, _DueEntry]] = []

    def add(self, due: _DueEntry, plan: _Plan, entry: str, run: str) -> None:
        raw, score, raw_expr, raw_tz = due
        nxt, missed, due_text, next_text = plan
        group = self.groups.get((raw_expr, raw_tz, score))
        if group is None:
            group = self.groups[(raw_expr, raw_tz, score)] = len(self.groups) + 1
            self.group_args.append((score, nxt, due_text, next_text, missed, raw_expr, raw_tz))
        self.entry_args.append((raw, group, run))
        self.entries.append((entry, run, score, missed, (raw, nxt, raw_expr, raw_tz)))

    def call(self) -> scripts.Call:
        return scripts.cron_fire(
            now=self.now,
            now_text=self.now_text,
            groups=self.group_args,
            entries=self.entry_args,
            queue=self.queue,
        )


class Scheduler:
    """Promotes due tasks; safe to run in many processes and threads at once.

    :param client: the Redis connection (blocking ``BLPOP`` uses one pooled connection).
    :param settings: wasmq settings (kept for the worker's interface).
    :param batch: most due ids one promotion script looks at.
    :param cron_batch: most cron entries one firing script fires.
    :param max_sleep: longest wait between two checks, in seconds.
    :param queue: the one queue whose scheduled set this looks at (tagged layout); without
        it, on a Redis Cluster, it runs one such scheduler per known queue.
    """

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        *,
        batch: int = 1000,
        cron_batch: int = 1000,
        max_sleep: float = 1.0,
        queue: str | None = None,
    ) -> None:
        self.client = client
        self.queue = queue
        self._mirrors = Mirrors(client)
        self._queues: dict[str, Scheduler] = {}
        self.settings = settings
        self.batch = batch
        self.cron_batch = cron_batch
        self.max_sleep = max_sleep
        self.last = Tick()
        self._scripts = Scripts(client, compat=settings.reference_compat)
        self._schedules: dict[tuple[bytes, bytes], CronSchedule | InvalidTask] = {}
        #: Where this scheduler put the entries it fired: next due ms -> entries. At that
        #: time it fires them straight away, without reading the due range first; the
        #: compare-and-set on score, expression and zone rejects whatever changed since.
        self._ahead: dict[int, list[_DueEntry]] = {}
        #: The same for entries another scheduler fired first: where they should be next.
        #: At that time this one lets the other go first (see :meth:`run`), then tries.
        self._theirs: dict[int, list[_DueEntry]] = {}
        self._remembered = 0
        #: Entries this pass moved itself (so they are its own, whatever it knew before).
        self._moved: set[bytes] = set()

    def run_once(self, now_ms: int | None = None, stop: threading.Event | None = None) -> int:
        """Promote everything due at ``now_ms``; returns how many tasks became pending.

        Cron entries due meanwhile are gathered over the whole pass and fired together,
        ``cron_batch`` per script call. ``stop`` ends a long pass between two batches.
        """
        if keys.tagged() and self.queue is None:
            return self._each_queue(now_ms, stop)
        now = clock.now_ms() if now_ms is None else now_ms
        now_text = format_time(now)
        tick = Tick()
        self._moved.clear()
        mine = self._due_in(self._ahead, now)
        if mine:
            self._fire(mine, now, now_text, tick)
        theirs = self._due_in(self._theirs, now)
        due: list[_DueEntry] = []
        for _ in range(_MAX_ROUNDS):
            # Fired entries leave the due range; the ones gathered but not yet fired stay
            # at its latest end, where promote.lua passes over them.
            promoted, dropped, crons, seen = self._scripts.run(
                scripts.promote(
                    now=now, limit=self.batch, now_text=now_text, skip=len(due), queue=self.queue
                )
            )
            tick.promoted += int(promoted)
            tick.dropped += len(dropped)
            if promoted:
                log.debug("tasks promoted", count=int(promoted))
            for raw in dropped:
                log.warning(
                    "dropped scheduled id without a runnable record",
                    task_id=raw.decode(errors="replace"),
                )
            for i in range(0, len(crons), 4):
                due.append((crons[i], int(float(crons[i + 1])), crons[i + 2], crons[i + 3]))
            if len(due) >= self.cron_batch:
                self._fire(due, now, now_text, tick)
                due = []
            if int(seen) < self.batch or (stop is not None and stop.is_set()):
                break
        if due:
            self._fire(due, now, now_text, tick)
        if theirs:
            self._locate(theirs, now)
        self.last = tick
        return tick.total

    def _due_in(self, memory: dict[int, list[_DueEntry]], now: int) -> list[_DueEntry]:
        """The entries ``memory`` has at times up to ``now``, latest due first."""
        out: list[_DueEntry] = []
        for t in sorted((t for t in memory if t <= now), reverse=True):
            out += memory.pop(t)
        self._remembered -= len(out)
        return out

    def _remember(self, entry: _DueEntry, theirs: bool) -> None:
        if self._remembered < _AHEAD_MAX:
            (self._theirs if theirs else self._ahead).setdefault(entry[1], []).append(entry)
            self._remembered += 1

    def _locate(self, theirs: list[_DueEntry], now: int) -> None:
        """Remember where the entries another scheduler fires are now (one ZMSCORE).

        Whatever this pass fired itself is remembered as its own already; an entry gone
        from the set is forgotten, one still due is left to the next pass.
        """
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, len(theirs), 1000):
            pipe.zmscore(
                keys.scheduled(self.queue), [entry[0] for entry in theirs[start : start + 1000]]
            )
        scores = [score for chunk in pipe.execute() for score in chunk]
        for (raw, _, raw_expr, raw_tz), score in zip(theirs, scores, strict=True):
            if score is not None and score_to_ms(score) > now and raw not in self._moved:
                self._remember((raw, score_to_ms(score), raw_expr, raw_tz), theirs=True)

    def _follows(self, now: int) -> bool:
        """Whether another scheduler is expected to fire what is due now, and not this one."""
        return any(t <= now for t in self._theirs) and not any(t <= now for t in self._ahead)

    def _schedule(self, raw_expr: bytes, raw_tz: bytes) -> CronSchedule:
        cached = self._schedules.get((raw_expr, raw_tz))
        if cached is None:
            try:
                cached = CronSchedule.parse(raw_expr.decode(), raw_tz.decode() or "UTC")
            except InvalidTask as exc:
                cached = exc
            except UnicodeDecodeError as exc:
                cached = InvalidTask(f"cron expression or zone is not UTF-8: {exc}")
            if len(self._schedules) > 10_000:
                self._schedules.clear()
            self._schedules[(raw_expr, raw_tz)] = cached
        if isinstance(cached, InvalidTask):
            raise cached
        return cached

    def _plan(self, raw_expr: bytes, raw_tz: bytes, due: int, now: int) -> _Plan:
        schedule = self._schedule(raw_expr, raw_tz)
        nxt = schedule.next_after(max(now, due))
        missed = schedule.missed_between(due, now) if now - due >= 1000 else 0
        return nxt, missed, format_time(due), format_time(nxt)

    def _fire(self, due: list[_DueEntry], now: int, now_text: str, tick: Tick) -> None:
        """Fire ``due`` entries, ``cron_batch`` per ``cron_fire.lua`` call.

        Entries of one schedule due at the same tick share their next time, so it is
        computed once per (expression, zone, due time), not once per entry.
        """
        plans: dict[tuple[bytes, bytes, int], _Plan | InvalidTask] = {}
        fired: set[bytes] = set()
        call = _FireCall(now, now_text, self.queue)
        for item in due:
            raw, score, raw_expr, raw_tz = item
            if raw in fired:
                continue  # seen twice when another scheduler moved things meanwhile
            fired.add(raw)
            plan = plans.get((raw_expr, raw_tz, score))
            if plan is None:
                try:
                    plan = self._plan(raw_expr, raw_tz, score, now)
                except InvalidTask as exc:
                    plan = exc
                plans[(raw_expr, raw_tz, score)] = plan
            try:
                entry = raw.decode()
            except UnicodeDecodeError:
                plan = InvalidTask("the entry id is not UTF-8")
                entry = raw.decode(errors="replace")
            if isinstance(plan, InvalidTask):
                # No next time can be computed: park the entry instead of firing it forever.
                self._pause(raw, entry, now, f"cron entry paused: {plan}")
                continue
            call.add(item, plan, entry, run_id(entry, score))
            if len(call.entries) >= self.cron_batch:
                self._send(call, tick)
                call = _FireCall(now, now_text, self.queue)
        if call.entries:
            self._send(call, tick)

    def _send(self, call: _FireCall, tick: Tick) -> None:
        if self.queue is not None:
            # A run of a task missing from a stale copy would take the entry's own
            # (older) version rather than fail, so the generation is looked at each call.
            self._mirrors.ensure(self.queue, fresh=True)
        outcomes = self._scripts.run(call.call())
        tick.fire_calls += 1
        runs = sum(int(o) == 1 for o in outcomes)
        skipped = sum(int(o) == 2 for o in outcomes)
        tick.cron_runs += runs
        tick.skipped += skipped
        tick.lost += sum(int(o) == 4 for o in outcomes)
        # A line per run is what an operator wants for a few entries; for a thousand a
        # second it would cost more than firing them, so they get one line per call.
        each = runs + skipped <= _LOG_EACH
        for (entry, run, due, missed, moved), outcome in zip(call.entries, outcomes, strict=True):
            if outcome == 1 and each:
                log.info(
                    "cron fired", task_id=run, cron_id=entry, due=format_time(due), missed=missed
                )
            elif outcome == 2 and each:
                log.info("cron tick skipped: previous run still alive", cron_id=entry)
            if outcome:
                self._remember(moved, theirs=outcome == 4)
            if outcome in (1, 2, 3):
                self._moved.add(moved[0])
        if not each:
            log.info("cron fired", runs=runs, skipped=skipped, entries=len(call.entries))

    def _pause(self, raw: bytes, entry: str, now: int, reason: str) -> None:
        self._scripts.run(scripts.cron_pause(entry=raw, now_text=format_time(now), reason=reason))
        log.error("cron entry paused", task_id=entry, error=reason)

    def next_due(self) -> int | None:
        """Due time (ms) of the earliest entry, or ``None`` when nothing is scheduled."""
        if keys.tagged() and self.queue is None:
            heads = [s.next_due() for s in self._queues.values()]
            return min((h for h in heads if h is not None), default=None)
        head = self.client.zrange(keys.scheduled(self.queue), 0, 0, withscores=True)
        return score_to_ms(head[0][1]) if head else None

    def _each_queue(self, now_ms: int | None, stop: threading.Event | None) -> int:
        """Tagged layout: a pass of one scheduler per known queue (each queue has its
        own scheduled set, and a script call stays in one queue's slot)."""
        names = {m.decode() for m in self.client.smembers(keys.QUEUES)}  # type: ignore[union-attr]
        for name in sorted(names | {keys.DEFAULT_QUEUE}):
            if name not in self._queues:
                self._queues[name] = Scheduler(
                    self.client,
                    self.settings,
                    batch=self.batch,
                    cron_batch=self.cron_batch,
                    max_sleep=self.max_sleep,
                    queue=name,
                )
        total = Tick()
        for one in self._queues.values():
            one.run_once(now_ms, stop)
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(one.last, name))
        self.last = total
        return total.total

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
                if self._follows(clock.now_ms()):
                    # Cron entries another scheduler fired last time are due: it fires them
                    # again at once from memory, so give it a head start instead of racing
                    # it for the same work. Should it be gone, this one fires them late.
                    stop.wait(_FOLLOW_DELAY)
                self.run_once(stop=stop)
                wait = self.sleep_for(clock.now_ms())
                if keys.tagged():
                    stop.wait(min(wait, TAGGED_POLL))
                elif wait > _SERVER_TICK:
                    # The server checks blocking timeouts on its cron tick (100 ms at the
                    # default hz), so it may answer late: block until one tick before the
                    # due time (a wake-up returns at once), then sleep the rest here.
                    self.client.blpop([keys.scheduler_wake()], timeout=wait - _SERVER_TICK)
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
