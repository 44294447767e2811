"""The worker registry: each worker process reports itself alive and renews its leases.

A worker's record is the hash ``wasmq:worker:<id>`` (host, pid, queues, current task,
done and failed counts, start time, last heartbeat) plus its score in ``wasmq:workers``.
The record expires a few heartbeats after the last one, so a SIGKILLed worker shows as
not alive and then disappears. The same thread moves the lease deadlines of the tasks
the worker holds, so a batch claimed together never expires while it waits its turn.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import redis

from runtime import clock
from runtime.logging_config import get_logger
from runtime.queue import keys
from runtime.queue.task import lease_score

log = get_logger("worker")

#: A worker is alive while its last heartbeat is at most this many intervals old.
ALIVE_INTERVALS = 3


@dataclass
class WorkerStats:
    """Counters the worker updates in memory; the heartbeat publishes them."""

    done: int = 0
    failed: int = 0
    #: Claim calls made, and how many of them found nothing (the herd shows here).
    claims: int = 0
    empty_claims: int = 0
    current_task: str = ""
    current_name: str = ""


@dataclass
class WorkerInfo:
    """One row of ``wasmq workers``."""

    id: str
    host: str
    pid: int
    queues: list[str]
    current_task: str
    current_name: str
    done: int
    failed: int
    started_ms: int
    heartbeat_ms: int
    alive: bool

    def to_json(self) -> dict[str, object]:
        """Absent text is null, as in every ``--json``."""
        out = asdict(self)
        out["current_task"] = self.current_task or None
        out["current_name"] = self.current_name or None
        return out


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}"


class Heartbeat:
    """Background thread: heartbeat every ``interval`` s, lease renewal as often as needed.

    ``leases`` returns ``{task id: new deadline ms}`` for the tasks to renew now.
    """

    def __init__(
        self,
        client: redis.Redis,
        worker_id: str,
        queues: list[str],
        stats: WorkerStats,
        interval: float,
        leases: Callable[[], dict[str, int]] | None = None,
        renew_every: float | None = None,
    ) -> None:
        self.client = client
        self.worker_id = worker_id
        self.queues = queues
        self.stats = stats
        self.interval = max(interval, 0.05)
        self.leases = leases
        self.renew_every = min(self.interval, renew_every or self.interval)
        self.started_ms = clock.now_ms()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wasmq-heartbeat", daemon=True)
        self._down = False

    def start(self) -> None:
        try:
            self.beat()
        except redis.RedisError as exc:
            self._note_failure(exc)
        self._thread.start()

    def stop(self, deregister: bool = True) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if deregister:
            try:
                pipe = self.client.pipeline(transaction=False)
                pipe.zrem(keys.WORKERS, self.worker_id)
                pipe.delete(keys.worker(self.worker_id))
                pipe.execute()
            except redis.RedisError:
                pass

    def beat(self) -> None:
        now = clock.now_ms()
        s = self.stats
        record = {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": ",".join(self.queues),
            "current_task": s.current_task,
            "current_name": s.current_name,
            "done": s.done,
            "failed": s.failed,
            "claims": s.claims,
            "empty_claims": s.empty_claims,
            "started_ms": self.started_ms,
            "heartbeat_ms": now,
        }
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(keys.worker(self.worker_id), mapping=record)  # type: ignore[arg-type]
        pipe.pexpire(keys.worker(self.worker_id), int(self.interval * 1000 * ALIVE_INTERVALS * 4))
        pipe.zadd(keys.WORKERS, {self.worker_id: now})
        pipe.execute()

    def renew(self) -> None:
        """Moves the lease deadlines ``leases`` gives; the one place leases are renewed.

        Only ids still in the lease set move: a task acked, released or recovered since
        is not leased again."""
        if self.leases is None:
            return
        deadlines = self.leases()
        if not deadlines:
            return
        # Tagged layout: each queue has its lease set, named by the tag the ids carry.
        by_set: dict[str, dict[str, int]] = {}
        for task_id, deadline in deadlines.items():
            lease_set = keys.timeout(keys.id_tag(task_id))
            by_set.setdefault(lease_set, {})[task_id] = lease_score(deadline)
        pipe = self.client.pipeline(transaction=False)
        for lease_set, part in by_set.items():
            pipe.zadd(lease_set, part, xx=True)  # type: ignore[arg-type]
        pipe.execute()

    def _run(self) -> None:
        next_beat = time.monotonic() + self.interval
        while not self._stop.wait(self.renew_every):
            try:
                self.renew()
                if time.monotonic() >= next_beat:
                    self.beat()
                    next_beat = time.monotonic() + self.interval
                if self._down:
                    self._down = False
                    log.info("heartbeat restored", worker_id=self.worker_id)
            except redis.RedisError as exc:
                self._note_failure(exc)

    def _note_failure(self, exc: Exception) -> None:
        if not self._down:
            self._down = True
            log.warning("heartbeat failed: Redis unavailable", error=str(exc))


def list_workers(
    client: redis.Redis, interval: float, now_ms: int | None = None
) -> list[WorkerInfo]:
    """Every registered worker, alive first; records that expired are pruned."""
    now = clock.now_ms() if now_ms is None else now_ms
    ids = [i.decode() for i in client.zrange(keys.WORKERS, 0, -1)]  # type: ignore[union-attr]
    pipe = client.pipeline(transaction=False)
    for worker_id in ids:
        pipe.hgetall(keys.worker(worker_id))
    out: list[WorkerInfo] = []
    gone: list[str] = []
    for worker_id, raw in zip(ids, pipe.execute(), strict=True):
        if not raw:
            gone.append(worker_id)
            continue
        h = {k.decode(): v.decode("utf-8", "replace") for k, v in raw.items()}
        heartbeat = _int(h.get("heartbeat_ms"))
        out.append(
            WorkerInfo(
                id=worker_id,
                host=h.get("host", ""),
                pid=_int(h.get("pid")),
                queues=[q for q in h.get("queues", "").split(",") if q],
                current_task=h.get("current_task", ""),
                current_name=h.get("current_name", ""),
                done=_int(h.get("done")),
                failed=_int(h.get("failed")),
                started_ms=_int(h.get("started_ms")),
                heartbeat_ms=heartbeat,
                alive=now - heartbeat <= interval * 1000 * ALIVE_INTERVALS,
            )
        )
    if gone:
        client.zrem(keys.WORKERS, *gone)
    out.sort(key=lambda w: (not w.alive, w.id))
    return out


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
