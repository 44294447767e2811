"""SAQ: two worker processes (``saq --workers 2``), default concurrency 10 each."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis
from redis.asyncio import Redis as AsyncRedis
from saq.job import Job, Status
from saq.queue.redis import RedisQueue

from peers.asyncio_loop import Loop
from peers.base import PROCESSES, QUEUE, Peer, redis_url, script

CONCURRENCY = 100


async def echo(ctx: dict[str, Any], *, payload: dict[str, Any]) -> dict[str, Any]:
    return payload


def make_queue() -> RedisQueue:
    # Queue.from_url only accepts redis:// URLs; the client itself takes the unix socket.
    return RedisQueue(AsyncRedis.from_url(redis_url()), name=QUEUE)


# The worker processes build their own queue from these settings.
settings = {
    "queue": make_queue(),
    "functions": [echo],
    "concurrency": 10,
}


class SaqPeer(Peer):
    name = "saq"
    bulk_api = f"asyncio.gather(enqueue) x{CONCURRENCY}"
    workers = f"saq --workers {PROCESSES}, concurrency 10"

    def __init__(self) -> None:
        self.loop = Loop()
        self.queue = make_queue()
        self.loop.run(self.queue.connect())

    def enqueue_one(self, payloads: Sequence[dict[str, Any]]) -> list[Any]:
        async def each() -> list[Any]:
            return [await self.queue.enqueue("echo", payload=p) for p in payloads]

        return self.loop.run(each())

    def enqueue_bulk(self, payloads: Sequence[dict[str, Any]]) -> list[Any]:
        async def gather() -> list[Any]:
            jobs: list[Any] = []
            for start in range(0, len(payloads), CONCURRENCY):
                chunk = payloads[start : start + CONCURRENCY]
                jobs += await asyncio.gather(
                    *(self.queue.enqueue("echo", payload=p) for p in chunk)
                )
            return jobs

        return self.loop.run(gather())

    def worker_commands(self) -> list[list[str]]:
        return [[script("saq"), "peers.saq.settings", "--workers", str(PROCESSES)]]

    def before_workers(self, client: redis.Redis) -> None:
        # A starting worker sweeps the active list at once and aborts every job another
        # worker has just moved there but not yet marked active (a start-up race on a
        # backlog). A deployment that has been up a while holds the sweep lock, as here.
        client.set(self.queue.namespace("sweep"), 1, ex=60)

    def depth(self, client: redis.Redis) -> int:
        return int(client.llen(self.queue.namespace("queued")))

    def unfinished(self, client: redis.Redis, handles: Sequence[Job]) -> list[Any]:
        jobs = self.loop.run(self.queue.jobs([job.key for job in handles]))
        return [
            h
            for h, job in zip(handles, jobs, strict=True)
            if job is None or job.status != Status.COMPLETE
        ]

    def result(self, handle: Job) -> Any:
        job = self.loop.run(self.queue.job(handle.key))
        return None if job is None else job.result

    def close(self) -> None:
        self.loop.run(self.queue.disconnect())
        self.loop.close()


PEER = SaqPeer
