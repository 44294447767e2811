"""Following a task's output as it is printed: the live stream, then the stored list.

Stream entries carry ``n`` (the chunk's index in the task's output, which is also its
index in the stored list), so a follower can switch to the stored list without
repeating or skipping chunks; an entry with ``e`` marks the end of an attempt.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import redis
from redis.client import PubSub

from runtime.output.chunks import LogChunk, decode_chunk, stream_number
from runtime.queue import keys
from runtime.queue.task import TERMINAL_STAGES

FOLLOW_BLOCK_MS = 100


def _stage(client: redis.Redis, task_id: str) -> str:
    raw = client.hget(keys.task(task_id), "task_stage")
    return raw.decode() if isinstance(raw, bytes) else ""


def follow(
    client: redis.Redis, task_id: str, stream: str | int | None = None
) -> Iterator[LogChunk]:
    """Yield a task's chunks as it prints them, then the stored rest; return when it ends.

    A task that is already over (or ends before it is ever streamed) yields its stored
    chunks. A task whose record disappears ends the iteration too. When an attempt
    ends and the task will be retried, the next attempt's output follows.
    """
    wanted = stream_number(stream)
    stream_key = keys.log_stream(task_id)
    last_id = b"0-0"
    next_index = 0
    while True:
        stage = _stage(client, task_id)
        if not stage or stage in TERMINAL_STAGES:
            break
        reply = client.xread({stream_key: last_id}, count=500, block=FOLLOW_BLOCK_MS)
        entries = reply[0][1] if reply else []
        over = False
        for entry_id, fields in entries:
            last_id = entry_id
            if b"e" in fields:
                _wait_done(client, task_id)
                if _stage(client, task_id) in TERMINAL_STAGES:
                    over = True
                    break
                next_index = 0  # a retry: its chunks are numbered from zero again
                continue
            index = int(fields.get(b"n", next_index))
            if index < next_index:
                continue
            next_index = index + 1
            chunk = LogChunk(int(fields[b"s"]), int(fields[b"t"]), fields[b"d"])
            if wanted is None or chunk.stream == wanted:
                yield chunk
        if over:
            break
    for raw in client.lrange(keys.logs(task_id), next_index, -1):
        chunk = decode_chunk(raw)
        if wanted is None or chunk.stream == wanted:
            yield chunk


def subscribe_done(client: redis.Redis, task_id: str, timeout: float = 5.0) -> PubSub:
    """A pub/sub connection subscribed to ``task_done:<id>``, the subscription confirmed.

    Confirmed means the server has registered it, so a stage read after this call and
    a wait on the connection cannot miss the ack's publish between them.
    """
    pubsub = client.pubsub()
    pubsub.subscribe(keys.done_channel(task_id))
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        message = pubsub.get_message(timeout=max(left, 0.0))
        if (message is not None and message["type"] == "subscribe") or left <= 0:
            return pubsub


def wait_message(pubsub: PubSub, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for a published message; True if one came."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        message = pubsub.get_message(timeout=left)
        if message is not None and message["type"] == "message":
            return True


def _wait_done(client: redis.Redis, task_id: str, timeout: float = 1.0) -> None:
    """After an attempt's end marker, wait (event-driven) for the ack to publish the stage."""
    pubsub = subscribe_done(client, task_id, timeout)
    try:
        if _stage(client, task_id) not in TERMINAL_STAGES:
            wait_message(pubsub, timeout)
    finally:
        pubsub.close()
