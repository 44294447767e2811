"""Cancels of running tasks: a worker hears them on one channel and stops the sandbox.

A script that cancels a running task (``cancel.lua``, a flow's cancel) marks it
``cancelled`` and publishes its id on :data:`~runtime.queue.keys.CANCEL_CHANNEL`. Every
worker process subscribes once, on a connection of its own, and a thread hands each id
to the worker: if that task is the one running, its :class:`Interrupt` stops the run;
if it is claimed and not started yet, it never starts. Nothing of this is on the claim
or ack round trips: a task costs one small object and two attribute writes.

A cancel published while the subscription is down (a Redis outage) is not heard: that
task runs to the end and its result is discarded when it is acked, as the record is
already ``cancelled``.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable

import redis

from runtime.clock import now_ms
from runtime.logging_config import get_logger
from runtime.queue import keys

log = get_logger("worker")

#: Cancelled ids remembered for tasks a worker may be about to start (every worker hears
#: every cancel, so this is a bound, not a working set).
RECENT = 4096
#: How long the listener blocks on its connection before it looks at the stop flag (s).
POLL = 0.5


class Interrupt:
    """Stops one task's run from another thread, whether it has started yet or not.

    The sandbox hands :meth:`attach` the run's stop function as it starts; a
    :meth:`request` before that makes the run stop as soon as it attaches."""

    __slots__ = ("_stop", "requested")

    def __init__(self) -> None:
        self.requested = False
        self._stop: Callable[[], None] | None = None

    def attach(self, stop: Callable[[], None]) -> None:
        self._stop = stop
        # request() sets the flag before it reads _stop: one of the two sides calls stop.
        if self.requested:
            stop()

    def request(self) -> None:
        self.requested = True
        stop = self._stop
        if stop is not None:
            stop()


class CancelListener:
    """One subscriber thread per worker process; ``on_cancel`` hears each cancelled id."""

    def __init__(self, client: redis.Redis, on_cancel: Callable[[str], None]) -> None:
        self.redis = client
        self.on_cancel = on_cancel
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: redis.client.PubSub | None = None

    def start(self) -> None:
        """Subscribes before returning (when Redis answers), so a task claimed after this
        cannot be cancelled unheard; then listens on a thread."""
        try:
            self._pubsub = self._subscribe()
        except (redis.RedisError, OSError) as exc:
            log.warning("cannot subscribe to cancels yet", error=str(exc))
        self._thread = threading.Thread(target=self._listen, name="wasmq-cancels", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(POLL * 4)

    def _subscribe(self) -> redis.client.PubSub:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(keys.CANCEL_CHANNEL)
        # The confirmation: from here on, every cancel reaches this connection.
        pubsub.get_message(timeout=POLL)
        return pubsub

    def _listen(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            try:
                if self._pubsub is None:
                    self._pubsub = self._subscribe()
                    log.info("listening for cancels again")
                message = self._pubsub.get_message(timeout=POLL)
                delay = 0.05
            except (redis.RedisError, OSError, ValueError) as exc:
                self._drop(exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            if message is not None and message.get("type") == "message":
                data = message["data"]
                self.on_cancel(data.decode() if isinstance(data, bytes) else str(data))
        self._drop(None)

    def _drop(self, exc: BaseException | None) -> None:
        if exc is not None and self._pubsub is not None:
            log.warning("lost the cancel subscription, retrying", error=str(exc))
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                self._pubsub.close()
            self._pubsub = None


class RecentCancels:
    """Ids cancelled lately and when the cancel was heard, for tasks claimed but not
    started (bounded, thread-safe)."""

    def __init__(self, size: int = RECENT) -> None:
        self._ids: OrderedDict[str, int] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def add(self, task_id: str) -> None:
        with self._lock:
            self._ids[task_id] = now_ms()
            self._ids.move_to_end(task_id)
            while len(self._ids) > self._size:
                self._ids.popitem(last=False)

    def since(self, task_id: str, claimed_ms: int) -> bool:
        """Whether ``task_id`` was cancelled after it was claimed at ``claimed_ms``: a
        cancel of a claimed task is always published after the claim, and an earlier one
        was for another task of the same id (an id enqueued again once the first expired)."""
        heard = self._ids.get(task_id)  # one dict read: atomic, no lock on the hot path
        return heard is not None and heard >= claimed_ms
