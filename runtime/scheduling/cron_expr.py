"""Cron expressions: the reference's seconds-first six-field form, five fields, shortcuts.

``*/10 * * * * *`` (seconds first, as robfig/cron with seconds parses it), the standard
five-field ``*/5 * * * *``, the ``@hourly``-style shortcuts and ``@every 30s``.
Times are milliseconds since the epoch; the zone only changes how fields are read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from runtime.errors import InvalidTask
from runtime.units import parse_duration

_SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
    "@minutely": "* * * * *",
}


#: Parsed croniter objects per thread: parsing costs about three times a step, and a
#: scheduler steps the same few expressions every tick. croniter keeps its position in
#: the object, so threads must not share one.
_parsed = threading.local()
_PARSED_MAX = 1000


def _croniter(native: str) -> croniter:
    cache: dict[str, croniter] | None = getattr(_parsed, "cache", None)
    if cache is None:
        cache = _parsed.cache = {}
    it = cache.get(native)
    if it is None:
        if len(cache) >= _PARSED_MAX:
            cache.clear()
        it = cache[native] = croniter(native, datetime(2000, 1, 1, tzinfo=timezone.utc))
    return it


def _zone(name: str) -> tzinfo:
    if name in ("", "UTC", "utc", "Z"):
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidTask(
            f"unknown time zone {name!r}: use an IANA name like Europe/Berlin"
        ) from None


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression in a time zone."""

    expr: str
    tz: str = "UTC"
    _croniter_expr: str = ""
    _every_ms: int = 0

    @classmethod
    def parse(cls, expr: str, tz: str = "UTC") -> CronSchedule:
        """Parse ``expr``; raises :class:`InvalidTask` with the parser's message."""
        text = " ".join(expr.split())
        zone_name = tz or "UTC"
        _zone(zone_name)
        if not text:
            raise InvalidTask("invalid cron expression '': it is empty")
        if text.startswith("@every"):
            try:
                every = parse_duration(text[len("@every") :].strip())
            except ValueError as exc:
                raise InvalidTask(f"invalid cron expression {expr!r}: {exc}") from None
            if every < 1:
                raise InvalidTask(f"invalid cron expression {expr!r}: @every needs at least 1s")
            return cls(text, zone_name, "", int(every * 1000))
        if text.startswith("@"):
            mapped = _SHORTCUTS.get(text.lower())
            if mapped is None:
                raise InvalidTask(
                    f"invalid cron expression {expr!r}: unknown shortcut "
                    f"(use one of {', '.join(sorted(_SHORTCUTS))} or @every 30s)"
                )
            native = mapped
        else:
            fields = text.split(" ")
            if len(fields) == 6:
                # Seconds come first in the reference; croniter wants them last.
                native = " ".join([*fields[1:], fields[0]])
            elif len(fields) == 5:
                native = text
            else:
                raise InvalidTask(
                    f"invalid cron expression {expr!r}: expected 5 fields (min hour day month weekday) "
                    f"or 6 with seconds first, got {len(fields)}"
                )
        try:
            croniter(native, datetime(2000, 1, 1, tzinfo=timezone.utc))
            croniter(native, datetime(2000, 1, 1, tzinfo=timezone.utc)).get_next(datetime)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidTask(f"invalid cron expression {expr!r}: {exc}") from None
        return cls(text, zone_name, native, 0)

    @property
    def zone(self) -> tzinfo:
        return _zone(self.tz)

    def next_after(self, ms: int) -> int:
        """The first firing strictly after ``ms``."""
        if self._every_ms:
            return (ms // self._every_ms + 1) * self._every_ms
        start = datetime.fromtimestamp(ms / 1000, timezone.utc).astimezone(self.zone)
        # croniter works in whole seconds and can repeat a wall time around a DST change:
        # step forward until the answer is strictly later, so the scheduler always advances.
        it = _croniter(self._croniter_expr)
        for _ in range(4):
            # Every call passes its start, which resets all of croniter's position state.
            nxt = it.get_next(datetime, start_time=start)
            out = int(nxt.timestamp() * 1000)
            if out > ms:
                return out
            start = start + timedelta(seconds=1)
        raise InvalidTask(f"cron expression {self.expr!r} does not advance after {ms} ms")

    def missed_between(self, due_ms: int, now_ms: int, cap: int = 1000) -> int:
        """How many firings fall in ``(due_ms, now_ms]`` (at most ``cap``)."""
        if self._every_ms:
            # On a fixed grid the count is arithmetic; stepping would cost ``cap`` steps.
            return max(0, min(cap, now_ms // self._every_ms - due_ms // self._every_ms))
        count = 0
        ms = due_ms
        while count < cap:
            ms = self.next_after(ms)
            if ms > now_ms:
                break
            count += 1
        return count

    def upcoming(self, ms: int, count: int) -> list[int]:
        """The next ``count`` firings strictly after ``ms``."""
        out = []
        for _ in range(count):
            ms = self.next_after(ms)
            out.append(ms)
        return out
