"""Parsing of the durations, sizes and booleans that settings and the CLI accept.

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


def format_size(n: int) -> str:
    """A byte count as people read it: ``512 B``, ``1.5 KiB``, ``16.0 MiB``."""
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024**2:.1f} MiB"


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
