"""The wall clock as the queue records it: milliseconds since the Unix epoch.

Every stored time (creation, start and finish of attempts, lease deadlines, scheduled
times, heartbeats, log chunks) comes from :func:`now_ms`, so times written by different
parts of the system compare exactly. Durations and deadlines inside one process use
``time.monotonic`` instead: the wall clock can jump.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    """Milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000
