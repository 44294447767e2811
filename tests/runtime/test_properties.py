"""Property tests for the parsing boundaries: whatever the input, a clean refusal or a
sane value, never another exception."""

from __future__ import annotations

import ctypes
import dataclasses
import math
import string
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from runtime.errors import InvalidTask, SettingsError
from runtime.queue.names import check_task_name
from runtime.queue.task import Task
from runtime.sandbox.limits import TaskLimits
from runtime.sandbox.runner import _result
from runtime.scheduling.cron_expr import CronSchedule
from runtime.settings import Settings
from runtime.units import format_duration, parse_duration, parse_size

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

durations = st.one_of(
    st.floats(min_value=0, max_value=10 * 365 * 86400, allow_nan=False),
    # Whole units plus a sliver: "1m1e-07s" was once written, which nothing parses.
    st.builds(
        lambda whole, sliver: whole + sliver,
        st.integers(0, 10**6),
        st.floats(min_value=0, max_value=1e-5),
    ),
)
junk = st.one_of(st.text(max_size=30), st.text(alphabet="0123456789.smhdnuµw -+e", max_size=12))


@FAST
@given(durations)
def test_format_duration_round_trips(seconds: float) -> None:
    text = format_duration(seconds)
    back = parse_duration(text)
    assert "e" not in text, text
    # Nanoseconds are kept (Go's finest unit); a positive timeout stays positive.
    assert abs(back - seconds) <= 1e-9 + 4 * math.ulp(seconds), (seconds, text, back)
    if seconds >= 1e-9:
        assert back > 0, (seconds, text)


@FAST
@given(st.integers(min_value=0, max_value=10**9))
def test_whole_milliseconds_round_trip_exactly(ms: int) -> None:
    seconds = ms / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-9)


@FAST
@given(junk)
def test_parse_duration_only_value_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError:
        return
    assert value >= 0 and value != float("inf")


@FAST
@given(st.one_of(junk, st.text(alphabet="0123456789.kKmMgGtTiIbB ", max_size=10)))
def test_parse_size_only_value_error(text: str) -> None:
    try:
        value = parse_size(text)
    except ValueError:
        return
    assert isinstance(value, int) and value >= 0


cron_field = st.one_of(
    st.sampled_from(["*", "*/5", "0", "1-5", "MON-FRI", "JAN", "L", "?", "60", "-1", "1,2"]),
    st.text(alphabet=string.digits + "*/,-?LW#", min_size=1, max_size=6),
)


@FAST
@given(
    st.one_of(
        st.lists(cron_field, min_size=4, max_size=7).map(" ".join),
        junk,
        st.text(alphabet="@everyhourlydaily 0123456789smh", max_size=16),
    )
)
def test_cron_parse_only_invalid_task_and_advances(expr: str) -> None:
    try:
        schedule = CronSchedule.parse(expr)
    except InvalidTask:
        return
    start = int(datetime(2026, 3, 29, 12, tzinfo=timezone.utc).timestamp() * 1000) + 123
    try:
        times = schedule.upcoming(start, 3)
    except InvalidTask:
        return
    assert start < times[0] < times[1] < times[2], (expr, times)


@FAST
@given(
    st.sampled_from(["UTC", "Asia/Kolkata", "America/New_York", "Europe/London"]),
    st.integers(min_value=0, max_value=4_000_000_000_000),
)
def test_cron_next_after_strictly_increases_across_zones(tz: str, ms: int) -> None:
    schedule = CronSchedule.parse("*/7 30 1-3 * * *", tz)
    nxt = schedule.next_after(ms)
    assert nxt > ms
    assert schedule.next_after(nxt) > nxt


@FAST
@given(st.text(max_size=140))
def test_check_task_name_only_invalid_task(name: str) -> None:
    try:
        assert check_task_name(name) == name
    except InvalidTask:
        return
    assert 1 <= len(name) <= 128 and "/" not in name and name not in (".", "..")


SETTING_ENVS = [
    "WASMQ_TASK_TIMEOUT",
    "WASMQ_MAX_TASK_TIMEOUT",
    "WASMQ_MEMORY_LIMIT",
    "WASMQ_MAX_MEMORY_LIMIT",
    "WASMQ_RESULT_LIMIT",
    "WASMQ_FUEL",
    "WASMQ_CONCURRENCY",
    "WASMQ_CLAIM_BATCH",
    "WASMQ_LEASE_GRACE",
    "WASMQ_QUEUE",
    "WASMQ_MAX_RETRIES",
    "WASMQ_GO_TOOLCHAIN",
    "TASK_QUEUE_LOG_LEVEL",
    "TASK_QUEUE_LOG_FORMAT",
    "TASK_QUEUE_SAVE_WASM_LOGS",
    "REDIS_URL",
    "WASMQ_RETRY_BACKOFF",
    "WASMQ_RESULT_TTL",
]


@FAST
@given(st.dictionaries(st.sampled_from(SETTING_ENVS), junk, max_size=4))
def test_settings_load_only_settings_error(environ: dict[str, str]) -> None:
    try:
        loaded = Settings.load(environ=environ, env_file=None)
    except SettingsError:
        return
    assert loaded.task_timeout > 0 and loaded.claim_batch >= 1


FIELDS = [
    "id",
    "task_name",
    "task_version",
    "task_stage",
    "payload",
    "task_kind",
    "created_at",
    "updated_at",
    "attempts",
    "max_retries",
    "timeout",
    "scheduled_at",
    "cron_expr",
    "next_run_at",
    "queue",
    "digest",
    "limits",
    "enqueued_ms",
    "started_ms",
    "finished_ms",
    "cron_tz",
]
field_value = st.one_of(
    junk,
    st.binary(max_size=12),
    st.sampled_from(
        [
            "0",
            "1",
            "2",
            "-1",
            "1e400",
            "nan",
            "inf",
            "30s",
            "1m30s",
            "0001-01-01T00:00:00Z",
            "2026-03-29T12:00:00.123456789+05:30",
            "0001-01-01T00:00:00+05:30",
            "9999-12-31T23:59:59-05:00",
            '{"memory": 1}',
            '{"fuel": true}',
            "[]",
            "9" * 30,
        ]
    ),
)


@FAST
@given(st.dictionaries(st.sampled_from(FIELDS), field_value, max_size=10))
def test_task_from_hash_only_invalid_task(raw: dict[str | bytes, str | bytes]) -> None:
    raw.setdefault("task_name", "job")
    try:
        task = Task.from_hash(raw)
    except InvalidTask:
        return
    assert task.timeout > 0 and task.max_retries >= 0 and task.attempts >= 0
    # What parsed stores back and parses again the same way.
    stored: dict[str | bytes, str | bytes] = {k: v for k, v in task.to_hash().items()}
    again = Task.from_hash(stored)
    assert (again.task_name, again.kind, again.max_retries) == (
        task.task_name,
        task.kind,
        task.max_retries,
    )


MEM = 4096
LIMITS = TaskLimits(timeout=1.0, memory=1 << 20, result=1024, logs=1024)


@FAST
@given(
    st.integers(min_value=0, max_value=2**64 - 1),
    st.none() | st.integers(min_value=0, max_value=MEM),
)
def test_result_unpacking(packed: int, stack_top: int | None) -> None:
    buf = ctypes.create_string_buffer(bytes(i % 251 for i in range(MEM)), MEM)
    outcome = _result(packed, ctypes.addressof(buf), MEM, LIMITS, stack_top)
    ptr, length = packed >> 32, packed & 0xFFFFFFFF
    in_stack = stack_top is not None and length > 0 and ptr + length <= stack_top
    if ptr + length <= MEM and length <= LIMITS.result and not in_stack:
        assert outcome.kind == "ok" and outcome.result == buf.raw[ptr : ptr + length]
    else:
        assert outcome.kind == "bad_result" and not outcome.ok
        assert outcome.message


@FAST
@given(st.integers(min_value=0, max_value=MEM), st.integers(min_value=0, max_value=MEM))
@example(ptr=MEM, length=0)  # an empty result at the very end of memory
def test_result_unpacking_in_bounds(ptr: int, length: int) -> None:
    assume(ptr + length <= MEM and length <= LIMITS.result)
    buf = ctypes.create_string_buffer(bytes(i % 251 for i in range(MEM)), MEM)
    outcome = _result((ptr << 32) | length, ctypes.addressof(buf), MEM, LIMITS, None)
    assert outcome.ok and outcome.result == buf.raw[ptr : ptr + length]


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+05:30", "9999-12-31T23:59:59-05:00"])
def test_times_that_cannot_be_written_back_are_refused(value: str) -> None:
    with pytest.raises(InvalidTask, match="scheduled_at"):
        Task.from_hash({"task_name": "job", "scheduled_at": value})
    # Go's zero time itself is fine.
    assert Task.from_hash({"task_name": "job", "scheduled_at": "0001-01-01T00:00:00Z"}).to_hash()


@FAST
@given(st.text(max_size=24))
def test_cron_time_zone_only_invalid_task(tz: str) -> None:
    try:
        schedule = CronSchedule.parse("0 */5 * * * *", tz)
    except InvalidTask:
        return
    assert schedule.next_after(0) > 0


SETTING_FIELDS = [f.name for f in dataclasses.fields(Settings)]


@FAST
@given(
    st.dictionaries(
        st.sampled_from(SETTING_FIELDS),
        st.one_of(junk, st.integers(-5, 10**12), st.floats(allow_nan=True), st.booleans()),
        max_size=3,
    )
)
def test_settings_overrides_only_settings_error(overrides: dict[str, object]) -> None:
    try:
        Settings.load(overrides, environ={}, env_file=None)
    except SettingsError:
        return
