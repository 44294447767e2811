"""Task records made the way producers and workers make them, without running a sandbox."""

from __future__ import annotations

import json

import redis

from runtime.clock import now_ms
from runtime.output.chunks import LogChunk, encode_chunk
from runtime.queue import keys
from runtime.queue.broker import Broker, Report
from runtime.queue.task import Stage, Task

#: The digest every task registered by ``register`` points at.
DIGEST = "ab" * 32


def register(client: redis.Redis, *names: str) -> None:
    for name in names:
        client.hset(keys.TASK_REGISTRY, name, json.dumps({"digest": DIGEST, "version": 1}))


def enqueue(broker: Broker, task_id: str, name: str = "job", **kw: object) -> Task:
    task, _ = broker.enqueue(Task(id=task_id, task_name=name, payload=b"{}", **kw))  # type: ignore[arg-type]
    return task


def run(
    broker: Broker,
    ok: bool = True,
    result: bytes = b"",
    logs: list[LogChunk] | None = None,
    queue: str = "default",
    **kw: object,
) -> Task:
    """Claim the next task of ``queue`` and finish it the way a worker does."""
    (task,) = broker.claim([queue], "w-test", 1)
    assert isinstance(task, Task)
    chunks = logs or []
    report = Report(
        task,
        ok=ok,
        result=result,
        started_ms=now_ms(),
        duration_ms=1.5,
        logs=[encode_chunk(c) for c in chunks],
        log_bytes=sum(len(c.data) for c in chunks),
        **kw,  # type: ignore[arg-type]
    )
    broker.finish([report])
    return task


def seed_scheduled(client: redis.Redis, count: int, start: int = 0) -> None:
    """``count`` scheduled entries, as enqueue writes them: 1/2 one-off tasks of queue
    ``default``, 1/4 retries of ``default``, 1/4 cron entries of ``emails``."""
    pipe = client.pipeline(transaction=False)
    due = now_ms() + 3_600_000
    for i in range(start, start + count):
        task_id = f"sched-{i:07d}"
        if i % 4 < 2:
            fields = {"queue": "default", "task_stage": Stage.SCHEDULED, "task_kind": "1"}
        elif i % 4 == 2:
            fields = {"queue": "default", "task_stage": Stage.RETRYING, "task_kind": "0"}
        else:
            fields = {"queue": "emails", "task_stage": Stage.SCHEDULED, "task_kind": "2"}
        fields.update(id=task_id, task_name="job", enqueued_ms=str(i))
        pipe.hset(keys.task(task_id), mapping=fields)
        pipe.zadd(keys.SCHEDULED, {task_id: due + i})
        if len(pipe) >= 2000:
            pipe.execute()
    pipe.sadd(keys.QUEUES, "default", "emails")
    pipe.execute()


def seed_pending(client: redis.Redis, count: int, name: str = "job", prefix: str = "p") -> None:
    """``count`` pending tasks of ``default``, the last one the newest (pushed last)."""
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        task_id = f"{prefix}-{i:07d}"
        fields = {"id": task_id, "task_name": name, "enqueued_ms": str(10_000_000 + i)}
        pipe.hset(keys.task(task_id), mapping=fields)
        pipe.lpush(keys.pending(), task_id)
        if len(pipe) >= 2000:
            pipe.execute()
    pipe.execute()
