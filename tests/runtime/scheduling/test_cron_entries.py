"""Cron entries: one run per tick with many schedulers, catch-up, overlap, pause/resume/rm."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from runtime.clock import now_ms
from runtime.errors import InvalidTask, TaskNotFound
from runtime.queue import keys, scripts
from runtime.queue.scripts import FireEntry, FireGroup, Scripts
from runtime.queue.task import Kind, Stage, Task, format_time, ms_to_score, score_to_ms
from runtime.scheduling import cron_entries
from runtime.scheduling.scheduler import Scheduler, Tick
from runtime.settings import Settings

T = 1_800_000_000_000  # a whole second


def cron_task(entry: str, expr: str, due: int, *, tz: str = "UTC", queue: str = "default") -> Task:
    """A cron entry as enqueue (and the reference producer) writes it."""
    return Task(
        id=entry,
        task_name="echo",
        payload=b"tick",
        queue=queue,
        kind=Kind.CRON,
        stage=Stage.SCHEDULED,
        cron_expr=expr,
        cron_tz=tz,
        next_run_ms=due,
        max_retries=1,
        timeout=5.0,
        created_ms=due - 60_000,
        digest="ab" * 32,
    )


def add_cron(
    client: redis.Redis, entry: str, expr: str, due: int, *, tz: str = "UTC", queue: str = "default"
) -> None:
    task = cron_task(entry, expr, due, tz=tz, queue=queue)
    client.hset(keys.task(entry), mapping=task.to_hash())  # type: ignore[arg-type]
    client.zadd(keys.SCHEDULED, {entry: ms_to_score(due)})


def entry_hash(client: redis.Redis, entry: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(keys.task(entry)).items()}


def complete(client: redis.Redis, run: str) -> None:
    client.hset(keys.task(run), "task_stage", Stage.COMPLETED)


def test_firing_creates_a_linked_run(redis_client: redis.Redis, settings: Settings) -> None:
    add_cron(redis_client, "nightly", "*/10 * * * * *", T, queue="jobs")
    scheduler = Scheduler(redis_client, settings)
    assert scheduler.run_once(T - 1) == 0
    assert scheduler.run_once(T + 3) == 1
    run_key = f"nightly:{T}"
    assert redis_client.lrange(keys.pending("jobs"), 0, -1) == [run_key.encode()]
    run = Task.from_hash(redis_client.hgetall(keys.task(run_key)))
    assert (run.id, run.cron_id, run.kind, run.stage) == (
        run_key,
        "nightly",
        Kind.IMMEDIATE,
        "pending",
    )
    assert (run.task_name, run.payload, run.queue, run.max_retries) == ("echo", b"tick", "jobs", 1)
    assert (run.timeout, run.digest, run.scheduled_ms) == (5.0, "ab" * 32, T)
    assert score_to_ms(redis_client.zscore(keys.SCHEDULED, "nightly") or 0) == T + 10_000
    h = entry_hash(redis_client, "nightly")
    assert h["next_run_at"] == format_time(T + 10_000)
    assert h["task_stage"] == Stage.SCHEDULED and h["run_count"] == "1"
    assert redis_client.hget(keys.CRON_LAST_RUN, "nightly") == run_key.encode()
    # The same tick never fires twice, even with a stale clock.
    assert scheduler.run_once(T + 3) == 0


def test_run_keeps_the_entry_retention(redis_client: redis.Redis, settings: Settings) -> None:
    add_cron(redis_client, "kept", "* * * * * *", T)
    add_cron(redis_client, "plain", "* * * * * *", T)
    redis_client.hset(keys.task("kept"), mapping={"keep_result": "7200000", "keep_payload": "1"})
    assert Scheduler(redis_client, settings).run_once(T) == 2
    assert redis_client.hmget(keys.task(f"kept:{T}"), ["keep_result", "keep_payload"]) == [
        b"7200000",
        b"1",
    ]
    assert redis_client.hmget(keys.task(f"plain:{T}"), ["keep_result", "keep_payload"]) == [
        None,
        None,
    ]


def test_run_uses_current_registration(redis_client: redis.Redis, settings: Settings) -> None:
    add_cron(redis_client, "reg", "* * * * * *", T)
    record = {"name": "echo", "digest": "cd" * 32, "version": 4}
    redis_client.hset(keys.TASK_REGISTRY, "echo", json.dumps(record))
    assert Scheduler(redis_client, settings).run_once(T) == 1
    run = Task.from_hash(redis_client.hgetall(keys.task(f"reg:{T}")))
    assert (run.digest, run.version) == ("cd" * 32, "4")


def test_five_field_entry(redis_client: redis.Redis, settings: Settings) -> None:
    add_cron(redis_client, "five", "*/5 * * * *", T)
    assert Scheduler(redis_client, settings).run_once(T) == 1
    assert score_to_ms(redis_client.zscore(keys.SCHEDULED, "five") or 0) == T + 300_000


def test_catch_up_runs_once_then_follows_schedule(
    redis_client: redis.Redis, settings: Settings
) -> None:
    add_cron(redis_client, "sec", "* * * * * *", T)
    scheduler = Scheduler(redis_client, settings)
    # Down for 10.5 s: one run for the whole window, not eleven.
    assert scheduler.run_once(T + 10_500) == 1
    assert redis_client.llen(keys.pending()) == 1
    h = entry_hash(redis_client, "sec")
    assert h["missed_runs"] == "10" and h["run_count"] == "1"
    # The next run is the first tick after the catch-up, on the schedule's grid.
    assert score_to_ms(redis_client.zscore(keys.SCHEDULED, "sec") or 0) == T + 11_000
    complete(redis_client, f"sec:{T}")
    assert scheduler.run_once(T + 10_900) == 0
    assert scheduler.run_once(T + 11_000) == 1
    assert redis_client.exists(keys.task(f"sec:{T + 11_000}"))
    assert score_to_ms(redis_client.zscore(keys.SCHEDULED, "sec") or 0) == T + 12_000


def test_overlap_skips_tick_while_previous_run_alive(
    redis_client: redis.Redis, settings: Settings
) -> None:
    add_cron(redis_client, "slow", "* * * * * *", T)
    scheduler = Scheduler(redis_client, settings)
    assert scheduler.run_once(T) == 1
    for stage in (Stage.PENDING, Stage.IN_PROGRESS, Stage.RETRYING):
        redis_client.hset(keys.task(f"slow:{T}"), "task_stage", stage)
        due = score_to_ms(redis_client.zscore(keys.SCHEDULED, "slow") or 0)
        assert scheduler.run_once(due) == 0
        assert scheduler.last.skipped == 1
    assert entry_hash(redis_client, "slow")["skipped_runs"] == "3"
    assert redis_client.llen(keys.pending()) == 1
    complete(redis_client, f"slow:{T}")
    due = score_to_ms(redis_client.zscore(keys.SCHEDULED, "slow") or 0)
    assert scheduler.run_once(due) == 1
    # A run whose record expired does not block the entry either.
    redis_client.delete(keys.task(f"slow:{due}"))
    assert scheduler.run_once(due + 1000) == 1


def test_invalid_stored_expression_pauses_entry(
    redis_client: redis.Redis, settings: Settings
) -> None:
    add_cron(redis_client, "broken", "* * * * * *", T)
    redis_client.hset(keys.task("broken"), "cron_expr", "every tuesday")
    schedule_other = Task(id="other", task_name="echo", kind=Kind.SCHEDULED, created_ms=T)
    redis_client.hset(keys.task("other"), mapping=schedule_other.to_hash())  # type: ignore[arg-type]
    redis_client.zadd(keys.SCHEDULED, {"other": ms_to_score(T)})
    assert Scheduler(redis_client, settings).run_once(T) == 1
    h = entry_hash(redis_client, "broken")
    assert h["task_stage"] == Stage.PAUSED and "invalid cron expression" in h["error"]
    assert redis_client.zscore(keys.SCHEDULED, "broken") is None
    [listed] = cron_entries.list_entries(redis_client, now=T)
    assert listed.paused and "invalid cron expression" in listed.error


def test_pause_resume_remove(redis_client: redis.Redis, settings: Settings) -> None:
    add_cron(redis_client, "p", "*/10 * * * * *", T)
    scheduler = Scheduler(redis_client, settings)
    assert cron_entries.pause(redis_client, "p", now=T - 5) is True
    assert cron_entries.pause(redis_client, "p", now=T - 5) is False
    assert scheduler.run_once(T + 60_000) == 0
    assert redis_client.zscore(keys.SCHEDULED, "p") is None
    [listed] = cron_entries.list_entries(redis_client, now=T)
    assert listed.paused and listed.next_runs == []
    # Resume at the next tick after now: the paused window is not caught up.
    assert cron_entries.resume(redis_client, "p", now=T + 61_000) == T + 70_000
    assert cron_entries.resume(redis_client, "p", now=T + 61_000) is None
    assert score_to_ms(redis_client.zscore(keys.SCHEDULED, "p") or 0) == T + 70_000
    assert redis_client.llen(keys.SCHEDULER_WAKE) == 1
    assert scheduler.run_once(T + 70_000) == 1
    cron_entries.remove(redis_client, "p")
    assert not redis_client.exists(keys.task("p"))
    assert redis_client.zscore(keys.SCHEDULED, "p") is None
    assert redis_client.exists(keys.task(f"p:{T + 70_000}"))  # its run stays
    with pytest.raises(TaskNotFound):
        cron_entries.remove(redis_client, "p")
    with pytest.raises(TaskNotFound):
        cron_entries.pause(redis_client, "p")
    with pytest.raises(TaskNotFound):
        cron_entries.resume(redis_client, "p")
    redis_client.hset(
        keys.task("plain"), mapping={"id": "plain", "task_name": "x", "task_kind": "0"}
    )
    with pytest.raises(InvalidTask, match="not a cron entry"):
        cron_entries.pause(redis_client, "plain")


def test_list_entries(redis_client: redis.Redis, settings: Settings) -> None:
    add_cron(redis_client, "b", "0 9 * * *", T + 1_000, tz="Europe/Berlin")
    add_cron(redis_client, "a", "*/10 * * * * *", T)
    redis_client.zadd(keys.SCHEDULED, {"one-off": ms_to_score(T)})
    redis_client.hset(keys.task("one-off"), mapping={"id": "one-off", "task_name": "x"})
    Scheduler(redis_client, settings).run_once(T)
    a, b = cron_entries.list_entries(redis_client, now=T + 1)
    assert (a.id, a.task_name, a.expr, a.tz, a.paused) == (
        "a",
        "echo",
        "*/10 * * * * *",
        "UTC",
        False,
    )
    assert a.next_runs == [T + 10_000, T + 20_000, T + 30_000]
    assert (a.last_run_id, a.last_run_stage, a.run_count) == (f"a:{T}", "pending", 1)
    assert b.tz == "Europe/Berlin" and b.next_runs[0] == T + 1_000
    assert all(
        later - earlier == 86_400_000
        for earlier, later in zip(b.next_runs[1:], b.next_runs[2:], strict=False)
    )
    data = a.to_json()
    assert data["next_runs_ms"][0] == T + 10_000 and data["error"] is None


@pytest.mark.processes
def test_cli_cron_commands(redis_client: redis.Redis, cli: Any) -> None:
    add_cron(redis_client, "cli-entry", "*/10 * * * * *", now_ms() + 60_000)
    out = cli("cron", "list", "--json", check=True)
    [data] = json.loads(out.stdout)
    assert data["id"] == "cli-entry" and len(data["next_runs_ms"]) == 3 and not data["paused"]
    assert "cli-entry" in cli("cron", "list", check=True).stdout
    assert "paused cli-entry" in cli("cron", "pause", "cli-entry", check=True).stdout
    assert json.loads(cli("cron", "list", "--json", check=True).stdout)[0]["paused"]
    assert "resumed cli-entry" in cli("cron", "resume", "cli-entry", check=True).stdout
    assert "removed cli-entry" in cli("cron", "rm", "cli-entry", check=True).stdout
    assert "no cron entries" in cli("cron", "list", check=True).stdout
    missing = cli("cron", "rm", "cli-entry")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: no cron entry cli-entry"


class Consumer:
    """A stand-in worker: pops runs and completes them at once, recording each id."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.seen: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            popped = self.client.brpop([keys.pending()], timeout=0.1)
            if popped:
                run = popped[1].decode()
                self.seen.append(run)
                complete(self.client, run)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.client.close()


@pytest.fixture
def consumer(redis_url: str, redis_client: redis.Redis) -> Iterator[Consumer]:
    c = Consumer(redis_url)
    try:
        yield c
    finally:
        c.close()


def ticks_of(seen: list[str], entry: str) -> list[int]:
    return [int(run.rsplit(":", 1)[1]) for run in seen if run.startswith(entry + ":")]


@pytest.mark.slow
def test_three_schedulers_one_run_per_tick(
    redis_client: redis.Redis, settings: Settings, redis_url: str, consumer: Consumer
) -> None:
    start = (now_ms() // 1000 + 1) * 1000
    add_cron(redis_client, "every-second", "* * * * * *", start)
    stops: list[threading.Event] = []
    threads: list[threading.Thread] = []
    clients: list[redis.Redis] = []
    for _ in range(3):
        client = redis.Redis.from_url(redis_url)
        stop = threading.Event()
        thread = threading.Thread(target=Scheduler(client, settings).run, args=(stop,))
        thread.start()
        clients.append(client)
        stops.append(stop)
        threads.append(thread)
    time.sleep((start + 5_000 - now_ms()) / 1000 + 0.5)
    for stop in stops:
        stop.set()
    for thread in threads:
        thread.join(timeout=5)
    for client in clients:
        client.close()
    time.sleep(0.3)
    ticks = ticks_of(consumer.seen, "every-second")
    # Exactly one run per tick: no duplicates, no gaps, at least the five seconds.
    assert len(ticks) == len(set(ticks)) >= 5
    assert ticks == list(range(start, start + 1000 * len(ticks), 1000))
    h = entry_hash(redis_client, "every-second")
    assert h["run_count"] == str(len(ticks)) and "skipped_runs" not in h


def start_scheduler_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from runtime.cli import main; main()", "scheduler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
@pytest.mark.processes
def test_killed_scheduler_restarts_on_schedule(
    redis_client: redis.Redis, cli: Any, consumer: Consumer
) -> None:
    start = (now_ms() // 1000 + 1) * 1000
    add_cron(redis_client, "survivor", "* * * * * *", start)
    proc = start_scheduler_process(cli.env)
    try:
        time.sleep((start + 2_000 - now_ms()) / 1000 + 0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        before = ticks_of(consumer.seen, "survivor")
        assert before == [start, start + 1000, start + 2000]
        down_until = now_ms() + 3_000
        time.sleep(3.0)
        assert ticks_of(consumer.seen, "survivor") == before  # nothing fires while down
        proc = start_scheduler_process(cli.env)
        time.sleep(2.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    ticks = ticks_of(consumer.seen, "survivor")
    after = ticks[len(before) :]
    # One catch-up run for the missed window (the first missed tick), then the grid again.
    assert after[0] == start + 3000
    assert all(t > down_until for t in after[1:]) and len(after) >= 2
    assert all(b - a == 1000 for a, b in itertools.pairwise(after[1:]))
    assert len(ticks) == len(set(ticks))
    assert int(entry_hash(redis_client, "survivor")["missed_runs"]) >= 2


def test_cancelled_entry_left_in_set_never_fires(
    redis_client: redis.Redis, settings: Settings
) -> None:
    add_cron(redis_client, "gone", "* * * * * *", T)
    redis_client.hset(keys.task("gone"), "task_stage", Stage.CANCELLED)
    assert Scheduler(redis_client, settings).run_once(T + 5) == 0
    assert redis_client.zscore(keys.SCHEDULED, "gone") is None
    assert redis_client.llen(keys.pending()) == 0
    assert cron_entries.list_entries(redis_client, now=T) == []


def add_many(
    client: redis.Redis, entries: dict[str, str], due: int, queue: str = "default"
) -> None:
    """Cron entries written in bulk, every one due at ``due``."""
    pipe = client.pipeline(transaction=False)
    for entry, expr in entries.items():
        task = cron_task(entry, expr, due, queue=queue)
        pipe.hset(keys.task(entry), mapping=task.to_hash())  # type: ignore[arg-type]
        pipe.zadd(keys.SCHEDULED, {entry: ms_to_score(due)})
    pipe.execute()


def complete_all(client: redis.Redis, queue: str = "default") -> list[str]:
    runs = [raw.decode() for raw in client.lrange(keys.pending(queue), 0, -1)]
    client.delete(keys.pending(queue), keys.wake(queue))
    pipe = client.pipeline(transaction=False)
    for run in runs:
        complete(pipe, run)  # type: ignore[arg-type]
    pipe.execute()
    return runs


def test_many_due_entries_fire_in_one_call(redis_client: redis.Redis, settings: Settings) -> None:
    every = {f"m{i}": "* * * * * *" for i in range(1200)}
    add_many(redis_client, every, T)
    add_many(redis_client, {f"q{i}": "*/10 * * * * *" for i in range(300)}, T, queue="jobs")
    # Tokens left over (their tasks were taken meanwhile) are trimmed to the pending length.
    redis_client.rpush(keys.wake("jobs"), *["1"] * 500)
    scheduler = Scheduler(redis_client, settings, cron_batch=2000)
    assert scheduler.run_once(T) == 1500
    assert (scheduler.last.cron_runs, scheduler.last.fire_calls) == (1500, 1)
    # One wake token per run, per queue.
    assert redis_client.llen(keys.pending()) == redis_client.llen(keys.wake("default")) == 1200
    assert redis_client.llen(keys.pending("jobs")) == redis_client.llen(keys.wake("jobs")) == 300
    assert score_to_ms(redis_client.zscore(keys.SCHEDULED, "m7") or 0) == T + 1000
    assert score_to_ms(redis_client.zscore(keys.SCHEDULED, "q7") or 0) == T + 10_000
    h = entry_hash(redis_client, "m1199")
    assert (h["run_count"], h["last_run_id"], h["next_run_at"]) == (
        "1",
        f"m1199:{T}",
        format_time(T + 1000),
    )
    assert redis_client.hget(keys.CRON_LAST_RUN, "q0") == f"q0:{T}".encode()
    # The default batch fires a thousand per call.
    complete_all(redis_client)
    default = Scheduler(redis_client, settings)
    assert default.run_once(T + 1000) == 1200
    assert (default.last.cron_runs, default.last.fire_calls) == (1200, 2)


def test_policies_hold_per_entry_in_one_batch(
    redis_client: redis.Redis, settings: Settings
) -> None:
    add_many(redis_client, {"fresh": "* * * * * *", "busy": "* * * * * *"}, T)
    add_many(redis_client, {"late": "* * * * * *"}, T - 10_000)
    add_many(redis_client, {"dead": "* * * * * *"}, T)
    redis_client.hset(keys.task("dead"), "task_stage", Stage.CANCELLED)
    redis_client.hset(keys.CRON_LAST_RUN, "busy", "busy:earlier")
    redis_client.hset(keys.task("busy:earlier"), "task_stage", Stage.IN_PROGRESS)
    # A damaged counter restarts instead of failing the whole batch.
    redis_client.hset(keys.task("fresh"), "run_count", "many")
    scheduler = Scheduler(redis_client, settings)
    assert scheduler.run_once(T + 500) == 2
    tick = scheduler.last
    assert (tick.cron_runs, tick.skipped, tick.fire_calls) == (2, 1, 1)
    assert redis_client.llen(keys.wake("default")) == 2
    # The earliest due run (the catch-up) is claimed first.
    assert redis_client.rpop(keys.pending()) == f"late:{T - 10_000}".encode()
    assert redis_client.rpop(keys.pending()) == f"fresh:{T}".encode()
    assert entry_hash(redis_client, "fresh")["run_count"] == "1"
    busy = entry_hash(redis_client, "busy")
    assert (busy["skipped_runs"], busy.get("run_count")) == ("1", None)
    late = entry_hash(redis_client, "late")
    assert (late["missed_runs"], late["run_count"]) == ("10", "1")
    assert score_to_ms(redis_client.zscore(keys.SCHEDULED, "late") or 0) == T + 1000
    assert redis_client.zscore(keys.SCHEDULED, "dead") is None


def test_entry_given_twice_in_one_call_fires_once(redis_client: redis.Redis) -> None:
    add_cron(redis_client, "twice", "* * * * * *", T)
    group: FireGroup = (T, T + 1000, format_time(T), format_time(T + 1000), 0, "* * * * * *", "UTC")
    one: FireEntry = ("twice", 1, f"twice:{T}")
    call = scripts.cron_fire(now=T, now_text=format_time(T), groups=[group], entries=[one, one])
    outcomes = Scripts(redis_client).run(call)
    assert outcomes == [1, 0]
    assert redis_client.lrange(keys.pending(), 0, -1) == [f"twice:{T}".encode()]
    assert redis_client.llen(keys.wake("default")) == 1


def test_two_schedulers_racing_over_many_entries_fire_each_tick_once(
    redis_client: redis.Redis, settings: Settings, redis_url: str
) -> None:
    entries = {f"r{i}": "* * * * * *" for i in range(800)}
    add_many(redis_client, entries, T)
    racing, ticks = 4, 6
    barrier = threading.Barrier(2)
    fired: list[int] = []
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    # The second one's clock is 300 ms ahead.
    schedulers = [Scheduler(c, settings, batch=300, cron_batch=250) for c in clients]

    def one(scheduler: Scheduler, skew: int) -> None:
        for k in range(racing):
            barrier.wait()
            fired.append(scheduler.run_once(T + 1000 * k + skew))
            barrier.wait()
            if skew == 0:
                complete_all(scheduler.client)
            barrier.wait()

    threads = [
        threading.Thread(target=one, args=(scheduler, skew))
        for scheduler, skew in zip(schedulers, (0, 300), strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(fired) == 800 * racing
    # Whatever each one remembers, one left alone fires every entry: first B, then A.
    for k, scheduler in ((racing, schedulers[1]), (racing + 1, schedulers[0])):
        assert scheduler.run_once(T + 1000 * k + 10) == 800
        complete_all(redis_client)
    for c in clients:
        c.close()
    pipe = redis_client.pipeline(transaction=False)
    for entry in entries:
        pipe.hmget(keys.task(entry), ["run_count", "skipped_runs"])
        for k in range(ticks):
            pipe.exists(keys.task(f"{entry}:{T + 1000 * k}"))
    replies = pipe.execute()
    for i in range(0, len(replies), ticks + 1):
        assert replies[i] == [str(ticks).encode(), None]
        assert replies[i + 1 : i + 1 + ticks] == [1] * ticks


def test_a_scheduler_that_lost_the_race_holds_back_then_takes_over(
    redis_client: redis.Redis, settings: Settings
) -> None:
    add_many(redis_client, {f"h{i}": "* * * * * *" for i in range(20)}, T)
    leader, follower = Scheduler(redis_client, settings), Scheduler(redis_client, settings)
    due = [(f"h{i}".encode(), T, b"* * * * * *", b"UTC") for i in range(20)]
    assert leader.run_once(T) == 20
    # The follower read the same due entries before the leader fired them: it loses.
    tick = Tick()
    follower._fire(due, T, format_time(T), tick)
    assert (tick.cron_runs, tick.lost) == (0, 20)
    assert follower._follows(T + 1000) and not leader._follows(T + 1000)
    complete_all(redis_client)
    assert leader.run_once(T + 1000) == 20
    assert follower.run_once(T + 1000) == 0
    # It looked up where they went, and expects them there again.
    assert follower._follows(T + 2000)
    complete_all(redis_client)
    # The leader is gone: the follower's pass fires them, and it leads from then on.
    assert follower.run_once(T + 2000) == 20
    assert not follower._follows(T + 3000)


def test_remembered_entry_that_changed_is_read_again(
    redis_client: redis.Redis, settings: Settings
) -> None:
    add_cron(redis_client, "chg", "* * * * * *", T)
    add_cron(redis_client, "held", "* * * * * *", T)
    scheduler = Scheduler(redis_client, settings)
    assert scheduler.run_once(T) == 2
    complete_all(redis_client)
    # The scheduler remembers both at T + 1000; meanwhile one changes, one is paused.
    redis_client.hset(keys.task("chg"), "cron_expr", "*/10 * * * * *")
    cron_entries.pause(redis_client, "held", now=T + 500)
    assert scheduler.run_once(T + 1000) == 1
    # The remembered firing was refused; the one read from the set used the new expression.
    assert scheduler.last.fire_calls == 2
    assert redis_client.exists(keys.task(f"chg:{T + 1000}"))
    assert score_to_ms(redis_client.zscore(keys.SCHEDULED, "chg") or 0) == T + 10_000
    assert entry_hash(redis_client, "chg")["run_count"] == "2"
    assert not redis_client.exists(keys.task(f"held:{T + 1000}"))
    assert scheduler.run_once(T + 2000) == 0
