"""The task record: its fields, kinds, stages and retry policy.

A task is stored as the hash ``task_metadata:<id>``. The first fourteen fields are
the reference layout, written the way its Go producer writes them (RFC3339 times, Go
duration strings, decimal counters; an unset time is Go's zero time, never "", and
the broker leaves unset times out unless reference compat mode is on), so tasks from
such producers parse here and wasmq's parse there. The rest are wasmq's own and all
optional on read.

Also here, so each rule lives in one place on the Python side (``lua/prelude.lua``
holds the Lua one): the unit of the scores of ``task_set:scheduled`` and
``task_set:timeout`` (:func:`ms_to_score`, :func:`lease_score`, :func:`score_to_ms`) and how a stage is read
from ``task_stage`` and ``wasmq_stage`` (:func:`stage_of`).
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum, IntEnum
from typing import Any

from runtime.errors import InvalidTask
from runtime.queue import keys
from runtime.units import format_duration, parse_duration


class Kind(IntEnum):
    """How a task enters the pending queue (the reference's ``task_kind``)."""

    #: Enqueued to pending at once.
    IMMEDIATE = 0
    #: Waits in ``task_set:scheduled`` until ``scheduled_at``.
    SCHEDULED = 1
    #: A cron entry: it stays in ``task_set:scheduled`` and spawns one run per firing.
    CRON = 2


class TextEnum(str, Enum):
    """An enum whose members are the very strings stored in Redis and shown to users.

    Members compare and hash equal to their value, and ``str()``, f-strings, JSON and
    redis-py all give the plain value (``enum.StrEnum`` would, but needs Python 3.11)."""

    def __str__(self) -> str:
        return str(self.value)


class Stage(TextEnum):
    """Values of ``task_stage``."""

    #: In a pending list, waiting for a worker.
    PENDING = "pending"
    #: In ``task_set:scheduled`` until its time (one-off tasks and cron entries).
    SCHEDULED = "scheduled"
    #: Claimed by a worker that holds a lease on it.
    IN_PROGRESS = "in_progress"
    #: Failed an attempt; back in ``task_set:scheduled`` until its backoff ends.
    RETRYING = "retrying"
    #: Ran to the end; the result is stored.
    COMPLETED = "completed"
    #: Failed for good (retries spent or a terminal error); in the dead-letter list.
    FAILED = "failed"
    #: Cancelled before it could finish; a running attempt's result is discarded.
    CANCELLED = "cancelled"
    #: A cron entry that is paused: it stays out of the scheduled set.
    PAUSED = "paused"


class ErrorKind(TextEnum):
    """Values of ``error_kind``: why a task's last attempt failed."""

    # Reported by the sandbox (runtime.sandbox.outcome says when each is retried).
    TIMEOUT = "timeout"
    TRAP = "trap"
    EXIT = "exit"
    MEMORY_LIMIT = "memory_limit"
    BAD_RESULT = "bad_result"
    INSTANTIATE = "instantiate"
    INTERNAL = "internal"
    #: The handler returned an error (``wasmq.fail``); ``retryable`` says which kind.
    HANDLER = "handler"
    #: The worker could not load the task's module (unregistered, missing, invalid).
    MODULE = "module"
    #: Redis failed while the worker loaded the task's module.
    REDIS = "redis"
    #: The claimed record was damaged and went straight to the dead-letter list.
    INVALID = "invalid"
    #: The lease ran out: the worker stopped before it finished the attempt.
    LOST = "lost"
    #: The task was cancelled while it ran (or as it was about to start) and stopped.
    CANCELLED = "cancelled"


class OutcomeKind(TextEnum):
    """How one run in the sandbox ended: ``ok`` or the error kind it records.

    Here rather than in the sandbox so that readers of task records (``wasmq status``)
    need not import the wasm runtime."""

    OK = "ok"
    TIMEOUT = ErrorKind.TIMEOUT.value
    TRAP = ErrorKind.TRAP.value
    EXIT = ErrorKind.EXIT.value
    MEMORY_LIMIT = ErrorKind.MEMORY_LIMIT.value
    BAD_RESULT = ErrorKind.BAD_RESULT.value
    INSTANTIATE = ErrorKind.INSTANTIATE.value
    INTERNAL = ErrorKind.INTERNAL.value
    HANDLER = ErrorKind.HANDLER.value
    CANCELLED = ErrorKind.CANCELLED.value


TERMINAL_STAGES = frozenset({Stage.COMPLETED, Stage.FAILED, Stage.CANCELLED})

#: The four stages the reference knows; reference compat mode writes the coarse one of
#: each finer stage into ``task_stage`` and the finer one into ``wasmq_stage``.
COARSE_STAGE: dict[str, str] = {
    Stage.SCHEDULED: Stage.PENDING,
    Stage.RETRYING: Stage.PENDING,
    Stage.PAUSED: Stage.PENDING,
    Stage.CANCELLED: Stage.FAILED,
}

#: Go's zero ``time.Time``: what the reference writes for an unset time, and parses.
GO_ZERO_TIME = "0001-01-01T00:00:00Z"

#: Scores of ``task_set:scheduled`` and ``task_set:timeout`` are Unix seconds, as the
#: reference's; one of at least this (year 5138 in seconds) was written in ms by an
#: older wasmq and is read as ms.
LEGACY_MS_SCORE = 1e11


def stage_of(task_stage: str, wasmq_stage: str | None) -> str:
    """A record's stage: ``wasmq_stage`` only while it still agrees with ``task_stage``
    (a reference worker that moved the task on wins)."""
    if wasmq_stage and COARSE_STAGE.get(wasmq_stage) == task_stage:
        return wasmq_stage
    return task_stage


def ms_to_score(ms: float) -> float:
    """The score of the time ``ms`` in ``task_set:scheduled`` or ``task_set:timeout``."""
    return round(ms / 1000, 3)


def lease_score(ms: float) -> int:
    """The score of a lease ending at ``ms``: whole seconds, rounded up (Valkey stores an
    integer score several times faster than a fractional one; leases are renewed often)."""
    return -(-int(ms) // 1000)


def score_to_ms(score: float) -> int:
    """The time (ms) a score of those sets stands for, in either unit."""
    if score >= LEGACY_MS_SCORE:
        return int(score)
    return round(score * 1000)


def format_time(ms: int) -> str:
    """RFC3339 with milliseconds, UTC (what the reference's ``time.Time`` writes, more precise)."""
    seconds, millis = divmod(int(ms), 1000)
    return _format_second(seconds) + f".{millis:03d}Z"


@functools.lru_cache(maxsize=64)
def _format_second(seconds: int) -> str:
    # Every enqueue and ack formats "now": the second part is shared by thousands of them.
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()[:19]


def parse_optional_time(text: str) -> int | None:
    """:func:`parse_time`, or None for Go's zero time (the reference's unset time)."""
    ms = parse_time(text)
    return None if ms == _MIN_MS else ms


def parse_time(text: str) -> int:
    """Milliseconds since the epoch of an RFC3339 time; a time without zone is UTC."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    # Go writes up to nine fractional digits; Python's parser takes at most six.
    if "." in value:
        head, _, rest = value.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        value = f"{head}.{digits[:6].ljust(6, '0')}{rest}" if digits else head + rest
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an RFC3339 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    ms = int(moment.timestamp() * 1000)
    # Years 1-9999 in UTC only: anything else could never be written back (format_time).
    if not _MIN_MS <= ms <= _MAX_MS:
        raise ValueError(f"time out of range: {text!r}")
    return ms


_MIN_MS = int(datetime(1, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
_MAX_MS = int(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc).timestamp() * 1000)


@dataclass
class Limits:
    """Per-task resource limits requested at enqueue; ``None`` means the worker's default."""

    timeout: float | None = None
    memory: int | None = None
    result: int | None = None
    logs: int | None = None
    fuel: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            {k: v for k, v in self.__dict__.items() if v is not None and k != "timeout"}
        )

    @classmethod
    def from_json(cls, text: str | None, timeout: float | None) -> Limits:
        data: dict[str, Any] = json.loads(text) if text else {}
        if not isinstance(data, dict):
            raise ValueError("limits must be a JSON object")
        limits = cls(timeout=timeout)
        for key in ("memory", "result", "logs", "fuel"):
            value = data.get(key)
            if value is not None:
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"limit {key} must be a non-negative integer")
                setattr(limits, key, value)
        return limits


@dataclass
class Task:
    """One task. The producer sets name, payload, queue, kind, limits and schedule;
    the framework sets stage, attempts, digest, timings and the outcome."""

    id: str
    task_name: str
    payload: bytes = b""
    queue: str = "default"
    kind: Kind = Kind.IMMEDIATE
    stage: str = Stage.PENDING
    version: str = ""
    digest: str = ""
    attempts: int = 0
    max_retries: int = 3
    timeout: float = 30.0
    limits: Limits = field(default_factory=Limits)
    created_ms: int = 0
    updated_ms: int = 0
    scheduled_ms: int | None = None
    cron_expr: str = ""
    cron_tz: str = ""
    cron_id: str = ""
    next_run_ms: int | None = None
    error: str = ""
    error_kind: str = ""
    worker: str = ""
    started_ms: int | None = None
    finished_ms: int | None = None
    #: Retention of the result and record after the task ends (s); None: the worker's.
    keep_result: float | None = None
    #: Keep the payload after success (it is dropped by default to bound Redis memory).
    keep_payload: bool = False
    #: The payload is stored apart (``task_payload:<id>``); set by a claim.
    payload_apart: bool = False
    #: Level within the queue (``keys.PRIORITIES``); stored only when not the default.
    priority: str = keys.DEFAULT_PRIORITY
    #: While this task has not ended, enqueues with the same key return it instead
    #: (``keys.unique``); held at most ``unique_for`` seconds.
    unique_key: str = ""
    unique_for: float | None = None
    #: The W3C trace context of the span that enqueued it (``runtime.telemetry.tracing``).
    trace_context: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def next_retry_delay(self, base: float, ceiling: float) -> float:
        """Exponential backoff with full jitter on the upper half: ``[d/2, d]``."""
        exponent = max(self.attempts - 1, 0)
        delay = min(ceiling, base * (2 ** min(exponent, 32)))
        return float(delay / 2 + random.random() * delay / 2)

    def to_hash(self) -> dict[str, str | bytes]:
        """Fields to ``HSET``; reference fields first, in the reference's formats."""
        created = format_time(self.created_ms)
        updated = (
            created if self.updated_ms in (0, self.created_ms) else format_time(self.updated_ms)
        )
        out: dict[str, str | bytes] = {
            "id": self.id,
            "task_name": self.task_name,
            "task_version": self.version,
            "task_stage": self.stage,
            "payload": self.payload,
            "task_kind": str(int(self.kind)),
            "created_at": created,
            "updated_at": updated,
            "attempts": str(self.attempts),
            "max_retries": str(self.max_retries),
            "timeout": format_duration(self.timeout),
            "scheduled_at": format_time(self.scheduled_ms) if self.scheduled_ms else GO_ZERO_TIME,
            "cron_expr": self.cron_expr,
            "next_run_at": format_time(self.next_run_ms) if self.next_run_ms else GO_ZERO_TIME,
            "queue": self.queue,
            "digest": self.digest,
            "limits": self.limits.to_json(),
            "enqueued_ms": str(self.created_ms),
        }
        if self.cron_tz:
            out["cron_tz"] = self.cron_tz
        if self.cron_id:
            out["cron_id"] = self.cron_id
        if self.keep_result is not None:
            out["keep_result"] = str(int(self.keep_result * 1000))
        if self.keep_payload:
            out["keep_payload"] = "1"
        if self.priority != keys.DEFAULT_PRIORITY:
            out["priority"] = self.priority
        if self.unique_key:
            out["unique_key"] = self.unique_key
            out["unique_for"] = str(int((self.unique_for or 0) * 1000))
        if self.trace_context:
            out["trace_context"] = self.trace_context
        return out

    @classmethod
    def from_hash(cls, raw: Mapping[bytes | str, bytes | str]) -> Task:  # noqa: C901
        """Parse a stored hash; raises :class:`InvalidTask` naming the bad field."""
        h = {_text(k): v for k, v in raw.items()}

        def text(name: str, default: str = "") -> str:
            value = h.get(name)
            if value is None:
                return default
            try:
                return _text(value)
            except UnicodeDecodeError:
                raise InvalidTask(f"field {name} is not valid UTF-8") from None

        def parsed(name: str, parse: Any, default: Any) -> Any:
            value = text(name)
            if value == "":
                return default
            try:
                return parse(value)
            except (ValueError, TypeError, OverflowError) as exc:
                raise InvalidTask(f"field {name}={value!r} is invalid: {exc}") from None

        task_id = text("id")
        name = text("task_name")
        if not name:
            raise InvalidTask("field task_name is missing")
        kind_value = parsed("task_kind", int, 0)
        if kind_value not in (0, 1, 2):
            raise InvalidTask(f"field task_kind={kind_value} is invalid: use 0, 1 or 2")
        max_retries = parsed("max_retries", int, 3)
        if max_retries < 0:
            raise InvalidTask(f"field max_retries={max_retries} is invalid: it is negative")
        attempts = parsed("attempts", int, 0)
        if attempts < 0:
            raise InvalidTask(f"field attempts={attempts} is invalid: it is negative")
        timeout = parsed("timeout", parse_duration, 30.0)
        if timeout <= 0:
            raise InvalidTask("field timeout is invalid: it must be greater than zero")
        payload = h.get("payload", b"")
        # enqueued_ms (ours) is exact and cheap; created_at is read for records without it.
        created = 0 if "enqueued_ms" in h else parsed("created_at", parse_time, 0)
        try:
            limits = Limits.from_json(text("limits") or None, timeout)
        except (ValueError, TypeError) as exc:
            raise InvalidTask(f"field limits is invalid: {exc}") from None
        extra = {}
        for key, value in h.items():
            if key not in _KNOWN:
                try:
                    extra[key] = _text(value)
                except UnicodeDecodeError:
                    extra[key] = repr(value)
        return cls(
            id=task_id,
            task_name=name,
            payload=payload if isinstance(payload, bytes) else payload.encode(),
            queue=text("queue", "default") or "default",
            kind=Kind(kind_value),
            stage=stage_of(text("task_stage", Stage.PENDING), text("wasmq_stage") or None),
            version=text("task_version"),
            digest=text("digest"),
            attempts=attempts,
            max_retries=max_retries,
            timeout=timeout,
            limits=limits,
            created_ms=parsed("enqueued_ms", int, created),
            updated_ms=parsed("updated_at", parse_time, 0),
            scheduled_ms=parsed("scheduled_at", parse_optional_time, None),
            cron_expr=text("cron_expr"),
            cron_tz=text("cron_tz"),
            cron_id=text("cron_id"),
            next_run_ms=parsed("next_run_at", parse_optional_time, None),
            error=text("error"),
            error_kind=text("error_kind"),
            worker=text("worker"),
            started_ms=parsed("started_ms", int, None),
            finished_ms=parsed("finished_ms", int, None),
            keep_result=_keep_seconds(parsed("keep_result", int, None)),
            keep_payload=text("keep_payload") == "1",
            priority=_priority(text("priority")),
            unique_key=text("unique_key"),
            unique_for=parsed("unique_for", lambda ms: int(ms) / 1000, None),
            trace_context=_trace_context(h.get("trace_context")),
            extra=extra,
        )


_KNOWN = frozenset(
    (
        "id",
        "task_name",
        "task_version",
        "task_stage",
        "wasmq_stage",
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
        "cron_tz",
        "cron_id",
        "error",
        "error_kind",
        "worker",
        "started_ms",
        "finished_ms",
        "enqueued_ms",
        "keep_result",
        "keep_payload",
        "priority",
        "unique_key",
        "unique_for",
        "trace_context",
    )
)


def _priority(text: str) -> str:
    # The scripts claim a missing or unknown level as the default one: read it so too.
    return text if text in keys.PRIORITIES else keys.DEFAULT_PRIORITY


def _trace_context(value: bytes | str | None) -> str:
    # Telemetry only: a damaged context starts a new trace rather than failing the task.
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


def _keep_seconds(ms: int | None) -> float | None:
    if ms is None:
        return None
    if ms <= 0:
        raise InvalidTask(f"field keep_result={ms} is invalid: it must be a positive ms count")
    return ms / 1000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
