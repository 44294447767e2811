"""Rate and concurrency limits per task name or per queue, across every worker.

A limit belongs to a scope, ``task:<name>`` or ``queue:<name>``, and is stored as JSON
in the hash :func:`keys.limits` (one per queue on a Redis Cluster), so every worker
applies a change at its next claim. ``claim.lua`` enforces them (the helpers are in
``lua/prelude.lua``): a task starts only while each limited scope it belongs to has a
free slot and room in its window, and a task that may not start is set aside, still
pending, with its attempt uncounted.

- Concurrency: tasks of the scope claimed and not yet ended. A slot is taken at claim
  and given back at ack, nack, release, reap, recover or cancel; it also lapses with
  the task's lease, so a killed worker never keeps one.
- Rate: claims (task starts) per period, over a sliding window (the last period up to
  now, not calendar minutes).

This module writes and reads the configuration and the figures ``wasmq stats`` shows;
changing or removing a limit makes the next claim look at the scope's waiting tasks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import redis

from runtime.clock import now_ms
from runtime.errors import WasmqError
from runtime.queue import keys
from runtime.queue.names import check_queue_name, check_task_name
from runtime.queue.slots import scopes
from runtime.queue.task import score_to_ms
from runtime.units import parse_duration

#: Largest concurrency or count per period a limit takes.
MAX_LIMIT = 1_000_000
#: Longest rate period (a day): the window's claims are all kept in Redis.
MAX_PERIOD_MS = 86_400_000
#: Period words of ``N/PERIOD``; any duration (``10s``, ``500ms``) works too.
_PERIODS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\S+)\s*")


class InvalidLimit(WasmqError):
    """A limit or scope a user gave is malformed; the message says how to fix it."""


@dataclass(frozen=True)
class Limit:
    """One scope's limit; ``rate`` tasks may start per ``period_ms``."""

    scope: str
    concurrency: int | None = None
    rate: int | None = None
    period_ms: int | None = None

    @property
    def kind(self) -> str:
        """``task`` or ``queue``."""
        return self.scope.partition(":")[0]

    @property
    def name(self) -> str:
        return self.scope.partition(":")[2]

    @property
    def rate_text(self) -> str | None:
        """``100/m``, ``5/s``, ``20/10s``; None without a rate limit."""
        if self.rate is None or self.period_ms is None:
            return None
        return f"{self.rate}/{format_period(self.period_ms)}"

    def stored(self) -> str:
        value: dict[str, int] = {}
        if self.concurrency is not None:
            value["concurrency"] = self.concurrency
        if self.rate is not None and self.period_ms is not None:
            value["rate"] = self.rate
            value["period_ms"] = self.period_ms
        return json.dumps(value, separators=(",", ":"))

    def to_json(self) -> dict[str, object]:
        return {
            "scope": self.scope,
            "kind": self.kind,
            "name": self.name,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "period_ms": self.period_ms,
            "rate_text": self.rate_text,
        }


@dataclass(frozen=True)
class LimitUsage:
    """A limit and how much of it is in use now (a ``wasmq stats`` row)."""

    limit: Limit
    #: Tasks holding a slot (claimed, lease live).
    running: int
    #: Claims in the current window.
    used: int
    #: Tasks set aside until the limit allows them.
    waiting: int

    def to_json(self) -> dict[str, object]:
        return {
            **self.limit.to_json(),
            "running": self.running,
            "used": self.used,
            "waiting": self.waiting,
        }


def scope(*, task: str | None = None, queue: str | None = None) -> str:
    """The scope naming exactly one of ``task`` or ``queue``."""
    if (task is None) == (queue is None):
        raise InvalidLimit("name exactly one scope: a task (--task NAME) or a queue (--queue NAME)")
    try:
        if task is not None:
            return "task:" + check_task_name(task)
        assert queue is not None
        return "queue:" + check_queue_name(queue)
    except (ValueError, WasmqError) as exc:
        raise InvalidLimit(str(exc)) from None


def parse_rate(text: str) -> tuple[int, int]:
    """``"100/m"`` -> ``(100, 60000)``: a count and a period in ms (s, m, h, d or any
    duration such as ``10s``)."""
    match = _RATE.fullmatch(text)
    hint = "use N/PERIOD such as 100/m, 5/s, 1000/h or 20/10s"
    if not match:
        raise InvalidLimit(f"invalid rate {text!r}: {hint}")
    count, period = int(match.group(1)), match.group(2)
    if period in _PERIODS:
        ms = _PERIODS[period]
    else:
        try:
            ms = round(parse_duration(period) * 1000)
        except ValueError:
            raise InvalidLimit(f"invalid rate {text!r}: {hint}") from None
    if not 1 <= count <= MAX_LIMIT:
        raise InvalidLimit(f"invalid rate {text!r}: the count must be 1 to {MAX_LIMIT}")
    if not 1 <= ms <= MAX_PERIOD_MS:
        raise InvalidLimit(f"invalid rate {text!r}: the period must be 1ms to 1d")
    return count, ms


def format_period(ms: int) -> str:
    for word, size in _PERIODS.items():
        if ms == size:
            return word
    for word, size in reversed(_PERIODS.items()):
        if ms % size == 0:
            return f"{ms // size}{word}"
    return f"{ms}ms"


def make_limit(scope_name: str, concurrency: int | None, rate: str | None) -> Limit:
    """A checked :class:`Limit`; at least one of ``concurrency`` and ``rate``."""
    if concurrency is None and rate is None:
        raise InvalidLimit("give a limit: --concurrency N, --rate N/PERIOD or both")
    if concurrency is not None and not 1 <= concurrency <= MAX_LIMIT:
        raise InvalidLimit(
            f"invalid concurrency {concurrency}: use 1 to {MAX_LIMIT} (remove a limit with"
            " wasmq limit rm)"
        )
    count, period = parse_rate(rate) if rate is not None else (None, None)
    return Limit(scope_name, concurrency, count, period)


def scope_queue(scope_name: str) -> str | None:
    """The queue whose keys hold ``scope_name``'s limit: its own queue in the tagged
    layout (Redis Cluster), where a claim sees only its queue's slot and so only queue
    limits exist; None (the shared keys) in the reference layout."""
    if not keys.tagged():
        return None
    kind, _, name = scope_name.partition(":")
    if kind != "queue":
        raise InvalidLimit(
            "task limits are not available on a Redis Cluster (a claim sees one queue's "
            "slot); limit the queue instead: --queue NAME"
        )
    return name


def set_limit(client: redis.Redis, limit: Limit) -> None:
    """Store ``limit`` (replacing the scope's), and have the next claim look at the
    tasks it holds aside: a raised limit lets them go at once."""
    queue = scope_queue(limit.scope)
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.limits(queue), limit.scope, limit.stored())
    pipe.zadd(keys.limit_due(queue), {limit.scope: 0})
    pipe.execute()


def remove_limit(client: redis.Redis, scope_name: str) -> bool:
    """Remove a scope's limit; its waiting tasks go back to their queues at the next
    claim. False when the scope had none."""
    queue = scope_queue(scope_name)
    pipe = client.pipeline(transaction=True)
    pipe.hdel(keys.limits(queue), scope_name)
    pipe.zadd(keys.limit_due(queue), {scope_name: 0})
    pipe.delete(keys.limit_rate(scope_name, queue))
    removed = pipe.execute()[0]
    return bool(removed)


def list_limits(client: redis.Redis) -> list[Limit]:
    """Every stored limit, tasks first, by name (a damaged entry is skipped)."""
    raw: dict[Any, Any] = {}
    # One limits hash, or one per queue on a Redis Cluster.
    pipe = client.pipeline(transaction=False)
    for name in scopes(client):
        pipe.hgetall(keys.limits(name))
    for part in pipe.execute():
        raw.update(part)
    out = [_parse(_text(k), _text(v)) for k, v in raw.items()]
    return sorted((x for x in out if x is not None), key=lambda x: (x.kind != "task", x.name))


def usage(client: redis.Redis, now: int | None = None) -> list[LimitUsage]:
    """Each limit with its slots held, its claims in the current window and its
    waiting tasks. A holder counts while its lease is live (the lease set is the truth:
    leases are renewed while tasks run)."""
    now = now_ms() if now is None else now
    limits = list_limits(client)
    if not limits:
        return []
    pipe = client.pipeline(transaction=False)
    for lim in limits:
        queue = scope_queue(lim.scope)
        pipe.zrange(keys.limit_running(lim.scope, queue), 0, -1)
        pipe.zcount(keys.limit_rate(lim.scope, queue), now - (lim.period_ms or 0) + 1, "+inf")
        pipe.llen(keys.limit_waiting(lim.scope, queue))
    replies = pipe.execute()
    holders = [replies[i * 3] for i in range(len(limits))]
    pipe = client.pipeline(transaction=False)
    for lim, ids in zip(limits, holders, strict=True):
        if ids:
            pipe.zmscore(keys.timeout(scope_queue(lim.scope)), ids)
    scores = iter(pipe.execute()) if any(holders) else iter(())
    out = []
    for i, lim in enumerate(limits):
        leases = next(scores) if holders[i] else []
        running = sum(1 for s in leases if s is not None and score_to_ms(s) > now)
        used = int(replies[i * 3 + 1]) if lim.rate is not None else 0
        out.append(LimitUsage(lim, running, used, int(replies[i * 3 + 2])))
    return out


def _parse(scope_name: str, raw: str) -> Limit | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict) or ":" not in scope_name:
        return None
    conc, rate, period = value.get("concurrency"), value.get("rate"), value.get("period_ms")
    return Limit(
        scope_name,
        conc if isinstance(conc, int) else None,
        rate if isinstance(rate, int) and isinstance(period, int) else None,
        period if isinstance(rate, int) and isinstance(period, int) else None,
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
