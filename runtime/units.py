"""Parsing of the durations, sizes and booleans that settings and the CLI accept, and
their forms for people to read.

Durations take Go's form (``30s``, ``1m30s``, ``250ms``, ``1h``), a day suffix
(``7d``) and bare numbers of seconds (``2.5``), because the reference producer
writes Go duration strings into Redis.
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "ki": 1024,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mi": 1024**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gi": 1024**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ti": 1024**4,
    "tib": 1024**4,
}
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def parse_duration(text: str | float | int | timedelta) -> float:
    """Seconds in ``text``; raises ``ValueError`` for anything else (negative included)."""
    if isinstance(text, timedelta):
        seconds = text.total_seconds()
    elif isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    elif isinstance(text, (int, float)):
        seconds = float(text)
    else:
        value = text.strip()
        if _NUMBER.fullmatch(value):
            seconds = float(value)
        else:
            pos = 0
            seconds = 0.0
            for match in _DURATION_PART.finditer(value):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
                pos = match.end()
            if pos != len(value) or pos == 0:
                raise ValueError(f"not a duration: {text!r} (use forms like 30s, 1m30s, 250ms, 7d)")
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError(f"not a non-negative duration: {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest Go-style duration string for ``seconds`` (``1m30s``, ``250ms``)."""
    # Fixed-point, never exponent notation ("1e-07s"), which no duration parser reads;
    # nanoseconds are the finest unit Go writes.
    seconds = round(seconds, 9)
    if seconds < 1 and seconds != 0:
        return _fixed(seconds * 1000, 6) + "ms"
    whole = int(seconds)
    frac = seconds - whole
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if secs or frac or not out:
        out += _fixed(secs + frac, 9) + "s"
    return out


def _fixed(value: float, places: int) -> str:
    return f"{value:.{places}f}".rstrip("0").rstrip(".") or "0"


def format_size(n: int | None) -> str:
    """A byte count as people read it: ``512 B``, ``1.5 KiB``, ``16.0 MiB``, ``2.0 GiB``."""
    if n is None:
        return "-"
    if n < 0:
        return "-" + format_size(-n)
    if n < 1024:
        return f"{n} B"
    # The unit is chosen by the rounded figure, so no size reads "1024.0 KiB".
    for unit, scale in (("KiB", 1024), ("MiB", 1024**2)):
        if round(n / scale, 1) < 1024:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1024**3:.1f} GiB"


#: Sub-minute units of :func:`human_duration`, finest first, each shown to 3 significant
#: digits and left for the next as soon as it would need 4.
_SMALL_UNITS = (("µs", 1e-6, 1000.0), ("ms", 1e-3, 1000.0), ("s", 1.0, 60.0))


def human_duration(seconds: float | None) -> str:
    """A duration as people read it: ``850 µs``, ``12.3 ms``, ``8.02 s``, ``2 min 05 s``,
    ``3 h 10 min``, ``2 d 4 h``; ``-`` for None. Unlike :func:`format_duration`, not
    meant to be parsed back."""
    if seconds is None or seconds != seconds:
        return "-"
    if seconds < 0:
        return "-" + human_duration(-seconds)
    if seconds == float("inf"):
        return "forever"
    if seconds == 0:
        return "0 s"
    for unit, scale, below in _SMALL_UNITS:
        text = _significant(seconds / scale)
        if float(text) < below:
            return f"{text} {unit}"
    # Round once at the coarsest unit shown, so 59.6 s is 1 min 00 s, never 0 min 60 s.
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    minutes = round(seconds / 60)
    if minutes < 24 * 60:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    hours = round(seconds / 3600)
    return f"{hours // 24} d {hours % 24} h"


def human_age(seconds: float | None) -> str:
    """How long ago something happened: ``0.3 s ago``, ``42 s ago``, ``2 min 05 s ago``;
    ``in ...`` for a time ahead (clocks of two machines disagree); ``-`` for None."""
    if seconds is None or seconds != seconds:
        return "-"
    if seconds < 0:
        return "in " + human_duration(-seconds)
    if round(seconds, 1) < 10:
        return f"{seconds:.1f} s ago"
    if round(seconds) < 60:
        return f"{round(seconds)} s ago"
    return human_duration(max(seconds, 60.0)) + " ago"


def _significant(value: float) -> str:
    """``value`` to 3 significant digits, fixed-point (``850``, ``12.3``, ``8.02``)."""
    places = 2
    while places > 0 and round(value, places) >= 10 ** (3 - places):
        places -= 1
    return f"{value:.{places}f}"


def parse_size(text: str | int) -> int:
    """Bytes in ``text`` (``1MiB``, ``512k``, ``1048576``); raises ``ValueError``."""
    if isinstance(text, bool):
        raise ValueError(f"not a size: {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"not a non-negative size: {text!r}")
        return text
    match = _SIZE.fullmatch(text.strip())
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (use forms like 1048576, 512KiB, 128MiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")
