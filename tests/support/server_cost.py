"""What the server does for one call: the commands it ran and the bytes it sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import redis

T = TypeVar("T")


def server_work(client: redis.Redis, action: Callable[[], T]) -> tuple[T, dict[str, int], int]:
    """What ``action`` returned, the commands the server ran meanwhile (name -> calls;
    commands run by scripts included) and the bytes it sent, from INFO deltas (the INFO
    calls themselves are left out of the calls; a few KB of their replies are in the bytes)."""

    def snapshot() -> tuple[dict[str, int], int]:
        stats = client.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        return calls, int(client.info("stats")["total_net_output_bytes"])

    calls_before, sent_before = snapshot()
    value = action()
    calls_after, sent_after = snapshot()
    calls = {
        name: n - calls_before.get(name, 0)
        for name, n in calls_after.items()
        if n != calls_before.get(name, 0) and name != "info"
    }
    return value, calls, sent_after - sent_before
