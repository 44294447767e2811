"""The cron parser: six fields with seconds first, five fields, shortcuts, zones."""

from __future__ import annotations

import itertools
import random
import threading
from datetime import datetime, timedelta, timezone

import pytest
from croniter import croniter

from runtime.errors import InvalidTask
from runtime.queue.task import format_time, parse_time
from runtime.scheduling.cron_entries import next_run
from runtime.scheduling.cron_expr import CronSchedule

T = parse_time("2025-06-01T12:00:07.250Z")


def upcoming(expr: str, tz: str = "UTC", start: int = T, n: int = 3) -> list[str]:
    return [format_time(ms) for ms in CronSchedule.parse(expr, tz).upcoming(start, n)]


def test_six_fields_seconds_first() -> None:
    assert upcoming("*/10 * * * * *") == [
        "2025-06-01T12:00:10.000Z",
        "2025-06-01T12:00:20.000Z",
        "2025-06-01T12:00:30.000Z",
    ]
    assert upcoming("30 15 * * * *") == [
        "2025-06-01T12:15:30.000Z",
        "2025-06-01T13:15:30.000Z",
        "2025-06-01T14:15:30.000Z",
    ]


def test_five_fields() -> None:
    assert upcoming("*/5 * * * *") == [
        "2025-06-01T12:05:00.000Z",
        "2025-06-01T12:10:00.000Z",
        "2025-06-01T12:15:00.000Z",
    ]
    assert upcoming("0 9 * * 1") == [
        "2025-06-02T09:00:00.000Z",
        "2025-06-09T09:00:00.000Z",
        "2025-06-16T09:00:00.000Z",
    ]


def test_shortcuts() -> None:
    assert upcoming("@hourly", n=2) == ["2025-06-01T13:00:00.000Z", "2025-06-01T14:00:00.000Z"]
    assert upcoming("@daily", n=1) == ["2025-06-02T00:00:00.000Z"]
    assert upcoming("@every 30s", n=2) == ["2025-06-01T12:00:30.000Z", "2025-06-01T12:01:00.000Z"]


def test_time_zone_changes_how_fields_read() -> None:
    assert upcoming("0 9 * * *", "Europe/Berlin", n=1) == ["2025-06-02T07:00:00.000Z"]
    assert upcoming("0 9 * * *", "America/New_York", n=1) == ["2025-06-01T13:00:00.000Z"]


def test_next_after_is_strictly_later_and_advances_across_dst() -> None:
    every_second = CronSchedule.parse("* * * * * *")
    on_tick = parse_time("2025-06-01T12:00:07Z")
    assert every_second.next_after(on_tick) == on_tick + 1000
    # Autumn change in Berlin: 02:00-03:00 local happens twice; the schedule keeps moving.
    hourly = CronSchedule.parse("0 * * * *", "Europe/Berlin")
    ticks = hourly.upcoming(parse_time("2025-10-25T23:30:00Z"), 6)
    assert ticks == sorted(set(ticks))
    assert all(b - a == 3_600_000 for a, b in itertools.pairwise(ticks))


def test_missed_between_counts_ticks_in_window() -> None:
    schedule = CronSchedule.parse("* * * * * *")
    start = parse_time("2025-06-01T12:00:00Z")
    assert schedule.missed_between(start, start + 500) == 0
    assert schedule.missed_between(start, start + 10_000) == 10
    assert schedule.missed_between(start, start + 10_000_000, cap=50) == 50


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("", "empty"),
        ("* * *", "expected 5 fields"),
        ("61 * * * * *", "invalid cron expression"),
        ("* * * * * * *", "got 7"),
        ("@fortnightly", "unknown shortcut"),
        ("@every soon", "invalid cron expression"),
    ],
)
def test_invalid_expressions_are_refused(expr: str, needle: str) -> None:
    with pytest.raises(InvalidTask, match=needle):
        CronSchedule.parse(expr)


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(InvalidTask, match="unknown time zone"):
        next_run("* * * * *", "Mars/Olympus")


def test_next_run_helper() -> None:
    assert next_run("*/10 * * * * *", "UTC", T) == parse_time("2025-06-01T12:00:10Z")


def test_reused_parser_matches_a_fresh_one() -> None:
    def fresh(schedule: CronSchedule, ms: int) -> int:
        start = datetime.fromtimestamp(ms / 1000, timezone.utc).astimezone(schedule.zone)
        for _ in range(4):
            out = int(
                croniter(schedule._croniter_expr, start).get_next(datetime).timestamp() * 1000
            )
            if out > ms:
                return out
            start += timedelta(seconds=1)
        raise AssertionError("no advance")

    rng = random.Random(3)
    exprs = ["* * * * * *", "*/7 * * * * *", "0 9 * * *", "30 2 * * *", "15 30 1 * * 1-5"]
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
    # Around the 2025 DST changes of those zones, and anywhere.
    changes = [
        parse_time(t)
        for t in (
            "2025-03-30T01:00Z",
            "2025-10-26T01:00Z",
            "2025-03-09T07:00Z",
            "2025-04-05T15:00Z",
        )
    ]
    for _ in range(1500):
        schedule = CronSchedule.parse(rng.choice(exprs), rng.choice(zones))
        ms = rng.choice(changes) + rng.randint(-7_200_000, 7_200_000)
        if rng.random() < 0.3:
            ms = rng.randint(T, T + 400 * 86_400_000)
        assert schedule.next_after(ms) == fresh(schedule, ms), (schedule, ms)


def test_parsers_are_not_shared_between_threads() -> None:
    schedule = CronSchedule.parse("*/3 * * * * *")
    start = parse_time("2025-06-01T12:00:00Z")
    expected = [start + 3000 * (i + 1) for i in range(2000)]
    wrong: list[int] = []

    def walk() -> None:
        ms = start
        for want in expected:
            ms = schedule.next_after(ms)
            if ms != want:
                wrong.append(ms)

    threads = [threading.Thread(target=walk) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_missed_between_every_is_arithmetic() -> None:
    schedule = CronSchedule.parse("@every 7s")
    for due, now in [(T, T), (T, T + 6_999), (T, T + 7_000), (T, T + 70_001), (T + 5, T + 3)]:
        stepped, ms = 0, due
        while stepped < 1000:
            ms = schedule.next_after(ms)
            if ms > now:
                break
            stepped += 1
        assert schedule.missed_between(due, now) == stepped
    assert schedule.missed_between(T, T + 10**9, cap=50) == 50
