"""Dramatiq: RedisBroker with the Results middleware, 2 worker processes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

from peers.base import PROCESSES, QUEUE, Peer, missing_keys, redis_url, script

# Dramatiq's default. Fewer threads is slower: each process prefetches 2 x threads
# messages and backs off (sleeps) whenever that many are still unacknowledged.
THREADS = 8

backend = RedisBackend(url=redis_url())
broker = RedisBroker(url=redis_url())
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, store_results=True, max_retries=0)
def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


class DramatiqPeer(Peer):
    name = "dramatiq"
    bulk_api = "group().run()"
    workers = f"dramatiq --processes {PROCESSES} --threads {THREADS}, Results(RedisBackend)"

    def enqueue_one(self, payloads: Sequence[dict[str, Any]]) -> list[Any]:
        return [echo.send(p) for p in payloads]

    def enqueue_bulk(self, payloads: Sequence[dict[str, Any]]) -> list[Any]:
        messages = [echo.message(p) for p in payloads]
        dramatiq.group(messages).run()
        return messages

    def worker_commands(self) -> list[list[str]]:
        return [
            [
                script("dramatiq"),
                "peers.dramatiq",
                "--processes",
                str(PROCESSES),
                "--threads",
                str(THREADS),
                "--queues",
                QUEUE,
            ]
        ]

    def depth(self, client: redis.Redis) -> int:
        return int(client.llen(f"{broker.namespace}:{QUEUE}"))

    def unfinished(self, client: redis.Redis, handles: Sequence[Any]) -> list[Any]:
        keys = [backend.build_message_key(m) for m in handles]
        return [handles[i] for i in missing_keys(client, keys)]

    def result(self, handle: Any) -> Any:
        return handle.get_result(backend=backend)


PEER = DramatiqPeer
