"""Celery: prefork pool of 2 with the Redis broker and the Redis result backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from celery import Celery, group
from celery.result import AsyncResult

from peers.base import PROCESSES, QUEUE, Peer, missing_keys, script, socket_path

URL = f"redis+socket://{socket_path()}"

app = Celery("bench", broker=URL, backend=URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="echo")
def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


class CeleryPeer(Peer):
    name = "celery"
    bulk_api = "group().apply_async()"
    workers = f"celery worker -P prefork -c {PROCESSES}, Redis result backend"

    def enqueue_one(self, payloads: Sequence[dict[str, Any]]) -> list[Any]:
        return [echo.delay(p) for p in payloads]

    def enqueue_bulk(self, payloads: Sequence[dict[str, Any]]) -> list[Any]:
        return list(group(echo.s(p) for p in payloads).apply_async().results)

    def worker_commands(self) -> list[list[str]]:
        return [
            [
                script("celery"),
                "-A",
                "peers.celery",
                "worker",
                "-P",
                "prefork",
                "-c",
                str(PROCESSES),
                "-Q",
                QUEUE,
                "-l",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        ]

    def depth(self, client: redis.Redis) -> int:
        return int(client.llen(QUEUE))

    def unfinished(self, client: redis.Redis, handles: Sequence[AsyncResult]) -> list[Any]:
        keys = [f"celery-task-meta-{h.id}" for h in handles]
        return [handles[i] for i in missing_keys(client, keys)]

    def result(self, handle: AsyncResult) -> Any:
        return handle.get(timeout=10)

    def close(self) -> None:
        app.close()


PEER = CeleryPeer
