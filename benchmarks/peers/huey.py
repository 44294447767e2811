"""Huey: RedisHuey (blocking BRPOP), consumer with 2 worker processes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from huey import RedisHuey
from huey.api import Result

from peers.base import PROCESSES, QUEUE, Peer, redis_url, script

huey = RedisHuey(QUEUE, url=redis_url(), results=True)


@huey.task()
def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


class HueyPeer(Peer):
    name = "huey"
    bulk_api = "task.map()"
    workers = f"huey_consumer -k process -w {PROCESSES}"

    def enqueue_one(self, payloads: Sequence[dict[str, Any]]) -> list[Any]:
        return [echo(p) for p in payloads]

    def enqueue_bulk(self, payloads: Sequence[dict[str, Any]]) -> list[Any]:
        return list(echo.map(payloads))

    def worker_commands(self) -> list[list[str]]:
        return [[script("huey_consumer"), "peers.huey.huey", "-k", "process", "-w", str(PROCESSES)]]

    def depth(self, client: redis.Redis) -> int:
        return int(client.llen(huey.storage.queue_key))

    def unfinished(self, client: redis.Redis, handles: Sequence[Result]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for handle in handles:
            pipe.hexists(huey.storage.result_key, handle.id)
        return [h for h, found in zip(handles, pipe.execute(), strict=True) if not found]

    def result(self, handle: Result) -> Any:
        return handle.get(preserve=True)


PEER = HueyPeer
