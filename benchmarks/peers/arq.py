"""arq: two worker processes with fast polling (1 ms instead of the default 500 ms)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

import redis
from arq import create_pool
from arq.connections import RedisSettings
from arq.constants import default_queue_name, result_key_prefix
from arq.jobs import Job

from peers.asyncio_loop import Loop
from peers.base import PROCESSES, Peer, missing_keys, redis_url, script

POLL_DELAY = 0.001
# How many enqueue_job calls run at once in the "bulk" case (arq has no batch API).
CONCURRENCY = 100


async def echo(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    return payload


class WorkerSettings:
    functions: ClassVar[list[Any]] = [echo]
    redis_settings = RedisSettings.from_dsn(redis_url())
    poll_delay = POLL_DELAY
    keep_result = 3600


class ArqPeer(Peer):
    name = "arq"
    bulk_api = f"asyncio.gather(enqueue_job) x{CONCURRENCY}"
    workers = f"{PROCESSES} x arq worker, poll_delay={POLL_DELAY}s, max_jobs=10"

    def __init__(self) -> None:
        self.loop = Loop()
        self.pool = self.loop.run(create_pool(WorkerSettings.redis_settings))

    def enqueue_one(self, payloads: Sequence[dict[str, Any]]) -> list[Any]:
        async def each() -> list[Any]:
            return [await self.pool.enqueue_job("echo", p) for p in payloads]

        return self.loop.run(each())

    def enqueue_bulk(self, payloads: Sequence[dict[str, Any]]) -> list[Any]:
        async def gather() -> list[Any]:
            jobs: list[Any] = []
            for start in range(0, len(payloads), CONCURRENCY):
                chunk = payloads[start : start + CONCURRENCY]
                jobs += await asyncio.gather(*(self.pool.enqueue_job("echo", p) for p in chunk))
            return jobs

        return self.loop.run(gather())

    def worker_commands(self) -> list[list[str]]:
        return [[script("arq"), "peers.arq.WorkerSettings"]] * PROCESSES

    def depth(self, client: redis.Redis) -> int:
        return int(client.zcard(default_queue_name))

    def unfinished(self, client: redis.Redis, handles: Sequence[Job]) -> list[Any]:
        keys = [result_key_prefix + job.job_id for job in handles]
        return [handles[i] for i in missing_keys(client, keys)]

    def result(self, handle: Job) -> Any:
        return self.loop.run(handle.result(timeout=10))

    def close(self) -> None:
        self.loop.run(self.pool.aclose())
        self.loop.close()


PEER = ArqPeer
