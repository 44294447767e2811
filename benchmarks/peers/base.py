"""What every peer queue module provides to the harness, and helpers they share.

A peer module defines its task (``echo``: the payload dict back, result stored) at import
time from ``BENCH_REDIS_URL``, so the same module serves the harness (producer side) and
the worker processes it starts (consumer side).
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

BENCH_DIR = Path(__file__).resolve().parent.parent
QUEUE = "bench"
# Two cores: every peer gets two worker processes, as wasmq does.
PROCESSES = 2


def redis_url() -> str:
    """The server every system shares, as set by run.py before it imports a peer."""
    return os.environ["BENCH_REDIS_URL"]


def socket_path() -> str:
    """Filesystem path of the server's unix socket (``unix://`` URL only)."""
    url = redis_url()
    if not url.startswith("unix://"):
        raise ValueError(f"expected a unix:// URL, got {url}")
    return url[len("unix://") :].split("?", 1)[0]


def script(name: str) -> str:
    """A console script installed beside the running interpreter (same venv)."""
    return str(Path(sys.executable).parent / name)


def missing_keys(client: redis.Redis, keys: Sequence[str]) -> list[int]:
    """Indexes of ``keys`` that do not exist yet (one pipelined round trip)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.exists(key)
    return [i for i, found in enumerate(pipe.execute()) if not found]


class Peer(ABC):
    """One competing queue, driven the same way as every other.

    ``enqueue_*`` return opaque handles in payload order; ``unfinished`` filters the
    handles whose result is not stored yet; ``result`` reads one stored result back.
    """

    name: str
    #: What the "bulk" column measured for this peer (its API for many jobs at once).
    bulk_api: str
    #: Worker settings, reported with the results.
    workers: str

    @abstractmethod
    def enqueue_one(self, payloads: Sequence[dict[str, Any]]) -> list[Any]:
        """Enqueue each payload with its own call, as an application would."""

    @abstractmethod
    def enqueue_bulk(self, payloads: Sequence[dict[str, Any]]) -> list[Any]:
        """Enqueue all payloads with the peer's many-at-once API."""

    @abstractmethod
    def worker_commands(self) -> list[list[str]]:
        """Commands that start the workers; each runs in its own process group."""

    @abstractmethod
    def depth(self, client: redis.Redis) -> int:
        """Jobs still waiting in the queue (not yet taken by a worker)."""

    @abstractmethod
    def unfinished(self, client: redis.Redis, handles: Sequence[Any]) -> list[Any]:
        """The handles whose result is not stored yet."""

    @abstractmethod
    def result(self, handle: Any) -> Any:
        """The stored result of one job, through the peer's own API."""

    def before_workers(self, client: redis.Redis) -> None:
        """Last step before the workers start on the backlog."""
        return

    def close(self) -> None:
        """Release connections (and event loops) the producer side holds."""
        return
