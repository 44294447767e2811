"""Documented maxima of the queue counts a user gives (CLI flags and the Python client).

A count past its ceiling is almost always a typo (an extra zero, a timestamp pasted in
the wrong field) and would otherwise be accepted and cost Redis, memory or hours: one
line refuses it instead, naming the ceiling. Time and memory limits of a task need no
ceiling here: the worker clamps them to ``WASMQ_MAX_TASK_TIMEOUT`` and
``WASMQ_MAX_MEMORY_LIMIT``. The CLI's own counts (``worker -c``, ``bench -n``) have theirs
next to their options.
"""

from __future__ import annotations

from runtime.errors import InvalidTask

#: Retries after a task's first attempt. Backoff doubles per retry up to its cap (5 min
#: by default), so a hundred retries already span hours; more only keeps a broken task
#: alive.
MAX_RETRIES = 100
#: Tasks one ``list`` (``-n``) shows: a page for a person or a script, not an export.
LIST_LIMIT = 10_000
#: Ids ``list`` reads from each list to find filtered matches (``--scan``).
LIST_SCAN = 1_000_000
#: Dead letters one ``dlq list`` returns (``--limit``).
DLQ_LIMIT = 10_000


def check_at_most(what: str, value: int, ceiling: int) -> int:
    """``value`` when it is at most ``ceiling``; otherwise one line naming the ceiling."""
    if value > ceiling:
        raise InvalidTask(f"invalid {what} {value}: the most allowed is {ceiling}")
    return value
