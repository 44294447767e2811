"""RQ: two SimpleWorker processes (no fork per job)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from rq import Queue
from rq.job import Job

from peers.base import PROCESSES, QUEUE, Peer, missing_keys, redis_url, script


def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


class RqPeer(Peer):
    name = "rq"
    bulk_api = "Queue.enqueue_many()"
    workers = f"{PROCESSES} x rq worker -w SimpleWorker"

    def __init__(self) -> None:
        self.connection = redis.Redis.from_url(redis_url())
        self.queue = Queue(QUEUE, connection=self.connection)

    def enqueue_one(self, payloads: Sequence[dict[str, Any]]) -> list[Any]:
        return [self.queue.enqueue(echo, p) for p in payloads]

    def enqueue_bulk(self, payloads: Sequence[dict[str, Any]]) -> list[Any]:
        data = [Queue.prepare_data(echo, args=(p,)) for p in payloads]
        return list(self.queue.enqueue_many(data))

    def worker_commands(self) -> list[list[str]]:
        command = [
            script("rq"),
            "worker",
            "--url",
            redis_url(),
            "--worker-class",
            "rq.worker.SimpleWorker",
            "--logging_level",
            "WARNING",
            QUEUE,
        ]
        return [command] * PROCESSES

    def depth(self, client: redis.Redis) -> int:
        return int(client.llen(self.queue.key))

    def unfinished(self, client: redis.Redis, handles: Sequence[Job]) -> list[Any]:
        keys = [f"rq:results:{job.id}" for job in handles]
        return [handles[i] for i in missing_keys(client, keys)]

    def result(self, handle: Job) -> Any:
        return handle.latest_result().return_value  # type: ignore[union-attr]

    def close(self) -> None:
        self.connection.close()


PEER = RqPeer
