"""What the tagged (Redis Cluster) layout needs beyond key names.

In the tagged layout every key of a queue hashes to the queue's slot (``keys.tag``), and
the scripts derive per-task keys from task ids. So ids carry their queue's tag
(:func:`tagged_id`), and the registry the queue's scripts read is a copy in the queue's
slot (:class:`Mirrors`), refreshed when the registry's generation moves. In the
reference layout every function here leaves things as they are.
"""

from __future__ import annotations

import time
import uuid

import redis

from runtime.errors import InvalidTask
from runtime.queue import keys

#: How long a client trusts the registry generation it read (s): a registration
#: reaches enqueues of other processes within this, and at once on "not registered".
GENERATION_TTL = 1.0
#: Field of a mirror that holds the generation it was copied at ("" is no task name).
GENERATION_FIELD = ""


def new_id(queue: str) -> str:
    """A fresh task (or flow, or cron entry) id for ``queue``."""
    return tagged_id(uuid.uuid4().hex, queue)


def tagged_id(task_id: str, queue: str) -> str:
    """``task_id`` as the layout needs it: unchanged in the reference layout, behind
    ``{<queue>}`` in the tagged one (an id that has the tag already keeps it; one with
    another queue's tag is refused, as its keys would be in another slot)."""
    if not keys.tagged():
        return task_id
    found = keys.id_tag(task_id)
    if found is None:
        return keys.tag(queue) + task_id
    if found != queue:
        raise InvalidTask(
            f"task id {task_id!r} belongs to queue {found!r}, not {queue!r}; "
            "leave out the {...} prefix or enqueue to that queue"
        )
    return task_id


def bump_generation(client: redis.Redis) -> None:
    """Tell every client that the registry changed (tagged layout: mirrors copy it again)."""
    if keys.tagged():
        client.incr(keys.registry_generation())


class Mirrors:
    """Keeps the per-queue registry mirrors of one client up to date, and adds the
    queues it writes to the shared queue-names set (scripts cannot, in a cluster)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._checked: dict[str, float] = {}
        self._named: set[str] = set()

    def ensure(self, queue: str, *, force: bool = False, fresh: bool = False) -> None:
        """Make ``queue``'s mirror the registry's current copy: checked at most once per
        :data:`GENERATION_TTL`, or now with ``fresh`` (callers whose script cannot say
        "not registered", as a cron firing falls back to the entry's own version), and
        copied again whatever its generation with ``force`` (a script said it)."""
        if not keys.tagged():
            return
        if queue not in self._named:
            self.client.sadd(keys.QUEUES, queue)
            self._named.add(queue)
        now = time.monotonic()
        recent = now - self._checked.get(queue, -GENERATION_TTL) < GENERATION_TTL
        if recent and not (force or fresh):
            return
        mirror = keys.registry_mirror(queue)
        generation = self.client.get(keys.registry_generation()) or b"0"
        copied = self.client.hget(mirror, GENERATION_FIELD)
        if force or copied != generation:
            # Read after the generation: a copy is never older than the generation it
            # claims; a racing older copy is replaced at the next check.
            records = self.client.hgetall(keys.registry())
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(mirror)
            pipe.hset(mirror, mapping={**records, GENERATION_FIELD: generation})  # type: ignore[dict-item]
            pipe.execute()
        self._checked[queue] = now


def scopes(client: redis.Redis) -> list[str | None]:
    """The queues whose keys hold what the reference layout keeps in one shared key
    (scheduled sets, leases, limits, cron sets): every known queue when tagged, and
    ``[None]`` (the shared keys) otherwise."""
    if not keys.tagged():
        return [None]
    names = {q.decode() for q in client.smembers(keys.QUEUES)}  # type: ignore[union-attr]
    return [keys.DEFAULT_QUEUE, *sorted(names - {keys.DEFAULT_QUEUE})]
