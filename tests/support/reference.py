"""A small, strict model of the reference Go workers' side of a shared Redis.

Written from the reference's rules, not from wasmq's code, so a test can ask "would the
reference read this?" of what wasmq writes:

- :func:`parse_record` reads a ``task_metadata:<id>`` hash as Go's ``Task.FromMap``
  does: ``time.Parse(time.RFC3339, s)`` for the four times (rejects "", accepts
  fractional seconds and offsets), ``time.ParseDuration`` for ``timeout`` (rejects ""),
  ``strconv.Atoi`` for the counters and the kind, and only the four stages it knows.
  A missing field reads as "" (``HGETALL`` into a ``map[string]string``).
- :class:`ReferenceWorker` issues its worker's commands: a claim is ``LMOVE
  task_queue:pending task_queue:processing RIGHT LEFT``, then the parse (a failure
  there, after the move, is exactly how a task gets stuck), ``HSET task_stage
  in_progress`` and ``ZADD task_set:timeout <now + timeout in Unix seconds>``; ``ack``
  and ``nack`` as its broker does them; ``promote`` as its scheduler does
  (``ZRANGEBYSCORE task_set:scheduled -inf <now in Unix seconds>``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import redis

GO_ZERO_TIME = "0001-01-01T00:00:00Z"
STAGES = ("pending", "in_progress", "completed", "failed")
PENDING = "task_queue:pending"
PROCESSING = "task_queue:processing"
FINISHED = "task_queue:finished"
DLQ = "task_queue:dlq"
SCHEDULED = "task_set:scheduled"
TIMEOUT = "task_set:timeout"

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})"
)
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_ATOI = re.compile(r"[+-]?\d+")


class ParseError(ValueError):
    """What Go's parser would return: the record cannot be read."""


def go_time(text: str) -> datetime:
    """``time.Parse(time.RFC3339, text)``."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ParseError(f"parsing time {text!r} as RFC3339")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction, zone = m.group(7), m.group(8)
    if zone == "Z":
        tz = timezone.utc
    else:
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise ParseError(f"parsing time {text!r}: time zone offset out of range")
        sign = -1 if zone[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError as exc:
        raise ParseError(f"parsing time {text!r}: {exc}") from None
    if fraction:
        moment += timedelta(microseconds=int(fraction[1:7].ljust(6, "0")))
    return moment


def go_duration(text: str) -> float:
    """``time.ParseDuration(text)`` in seconds."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    if not body:
        raise ParseError(f"time: invalid duration {text!r}")
    total, pos = 0.0, 0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None:
            raise ParseError(f"time: invalid duration {text!r}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return -total if text.startswith("-") else total


def go_atoi(text: str) -> int:
    """``strconv.Atoi(text)``."""
    if _ATOI.fullmatch(text) is None:
        raise ParseError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


@dataclass
class Record:
    """A task as the reference's ``Task`` struct holds it."""

    id: str
    task_name: str
    task_version: str
    stage: str
    payload: bytes
    kind: int
    created_at: datetime
    updated_at: datetime
    attempts: int
    max_retries: int
    timeout: float
    scheduled_at: datetime
    cron_expr: str
    next_run_at: datetime


def parse_record(raw: Mapping[bytes | str, bytes | str]) -> Record:
    """``Task.FromMap`` of an ``HGETALL`` reply; raises :class:`ParseError`."""
    h = {_str(k): v for k, v in raw.items()}

    def text(name: str) -> str:
        return _str(h.get(name, ""))

    stage = text("task_stage")
    if stage not in STAGES:
        raise ParseError(f"unknown task stage {stage!r}")
    kind = go_atoi(text("task_kind"))
    if kind not in (0, 1, 2):
        raise ParseError(f"unknown task kind {kind}")
    payload = h.get("payload", b"")
    return Record(
        id=text("id"),
        task_name=text("task_name"),
        task_version=text("task_version"),
        stage=stage,
        payload=payload if isinstance(payload, bytes) else payload.encode(),
        kind=kind,
        created_at=go_time(text("created_at")),
        updated_at=go_time(text("updated_at")),
        attempts=go_atoi(text("attempts")),
        max_retries=go_atoi(text("max_retries")),
        timeout=go_duration(text("timeout")),
        scheduled_at=go_time(text("scheduled_at")),
        cron_expr=text("cron_expr"),
        next_run_at=go_time(text("next_run_at")),
    )


def check_cron(expr: str) -> None:
    """robfig/cron's parser with seconds: six fields, seconds first, or a descriptor."""
    if expr.startswith("@"):
        return
    fields = expr.split()
    if len(fields) != 6:
        raise ParseError(f"expected exactly 6 fields, found {len(fields)}: {expr!r}")
    for field in fields:
        if not re.fullmatch(r"[\d*/,\-?A-Za-z]+", field):
            raise ParseError(f"bad cron field {field!r} in {expr!r}")


class StuckTask(ParseError):
    """The claim moved the task to processing, then could not parse it: no lease, no
    stage change, and nothing recovers it."""


class ReferenceWorker:
    """The reference worker's and scheduler's commands (``now_s``: Unix seconds)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def claim(self, now_s: float | None = None) -> Record | None:
        now = time.time() if now_s is None else now_s
        task_id = self.client.lmove(PENDING, PROCESSING, "RIGHT", "LEFT")
        if task_id is None:
            return None
        try:
            record = parse_record(self.client.hgetall(f"task_metadata:{_str(task_id)}"))
        except ParseError as exc:
            raise StuckTask(f"task {_str(task_id)} moved to processing, then: {exc}") from None
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(
            f"task_metadata:{record.id}",
            mapping={"task_stage": "in_progress", "updated_at": _go_now(now)},
        )
        pipe.zadd(TIMEOUT, {record.id: int(now + record.timeout)})
        pipe.execute()
        return record

    def ack(self, task_id: str, now_s: float | None = None) -> None:
        now = time.time() if now_s is None else now_s
        pipe = self.client.pipeline(transaction=True)
        pipe.lrem(PROCESSING, 0, task_id)
        pipe.lpush(FINISHED, task_id)
        pipe.hset(
            f"task_metadata:{task_id}",
            mapping={"task_stage": "completed", "updated_at": _go_now(now)},
        )
        pipe.zrem(TIMEOUT, task_id)
        pipe.execute()

    def nack(self, task_id: str, now_s: float | None = None) -> None:
        now = time.time() if now_s is None else now_s
        record = parse_record(self.client.hgetall(f"task_metadata:{task_id}"))
        attempts = record.attempts + 1
        retry = attempts <= record.max_retries
        pipe = self.client.pipeline(transaction=True)
        pipe.lrem(PROCESSING, 0, task_id)
        pipe.zrem(TIMEOUT, task_id)
        pipe.hset(
            f"task_metadata:{task_id}",
            mapping={
                "task_stage": "pending" if retry else "failed",
                "attempts": str(attempts),
                "updated_at": _go_now(now),
            },
        )
        pipe.lpush(PENDING if retry else DLQ, task_id)
        pipe.execute()

    def promote(self, now_s: float | None = None) -> list[str]:
        """The scheduler's pass: due one-off tasks to pending (cron entries are parsed
        and their expression checked, then left where they are)."""
        now = time.time() if now_s is None else now_s
        promoted = []
        for raw in self.client.zrangebyscore(SCHEDULED, "-inf", now):
            task_id = _str(raw)
            record = parse_record(self.client.hgetall(f"task_metadata:{task_id}"))
            if record.kind == 2:
                check_cron(record.cron_expr)
                continue
            pipe = self.client.pipeline(transaction=True)
            pipe.zrem(SCHEDULED, task_id)
            pipe.hset(
                f"task_metadata:{task_id}",
                mapping={"task_stage": "pending", "updated_at": _go_now(now)},
            )
            pipe.rpush(PENDING, task_id)
            pipe.execute()
            promoted.append(task_id)
        return promoted


def _go_now(now_s: float) -> str:
    return datetime.fromtimestamp(int(now_s), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
