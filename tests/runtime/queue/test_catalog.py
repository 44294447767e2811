"""The task index: every way a task is created lands in it; browse pages by time through
it with filters and cursors; the reaper's trim bounds it."""

from __future__ import annotations

import dataclasses
import json

import pytest
import redis

from runtime.client import Client
from runtime.clock import now_ms
from runtime.errors import InvalidTask
from runtime.queue import catalog, keys
from runtime.queue.broker import Broker, Report
from runtime.queue.task import Stage, Task
from runtime.settings import Settings

DIGEST = "cd" * 32


@pytest.fixture
def client(redis_client: redis.Redis, settings: Settings) -> Client:
    for name in ("echo", "resize", "mail"):
        redis_client.hset(
            keys.TASK_REGISTRY, name, json.dumps({"name": name, "digest": DIGEST, "version": 1})
        )
    return Client(settings=settings, client=redis_client)


def test_enqueue_cron_and_flows_index_every_task(client: Client, redis_client: redis.Redis) -> None:
    t = client.enqueue("echo", b"x", queue="a")
    later = client.schedule("resize", b"", delay=3600)
    flow = client.chain(("echo", b"1"), ("mail", b"2"))
    assert redis_client.zscore(keys.index_queue("a"), t.id) is not None
    assert redis_client.zscore(keys.index_name("echo"), t.id) is not None
    assert redis_client.zscore(keys.index_name("resize"), later.id) is not None
    first = redis_client.lindex(keys.flow_members(flow.id), 0)
    assert first is not None
    assert redis_client.zscore(keys.index_name("echo"), first) is not None
    # The chain's second step is created by the ack of the first: the index gets it then.
    broker = Broker(redis_client, client.settings)
    claimed = [x for x in broker.claim(["default"], "w1", 1) if isinstance(x, Task)]
    assert [c.id for c in claimed] == [first.decode()]
    assert broker.finish([Report(claimed[0], ok=True, result=b"r", started_ms=now_ms())]) == [
        Stage.COMPLETED
    ]
    names = redis_client.zrange(keys.index_name("mail"), 0, -1)
    assert len(names) == 1 and names[0].decode().startswith(flow.id)


def test_browse_pages_newest_first_with_cursors_across_queues(client: Client) -> None:
    ids = []
    for i in range(23):
        ids.append(client.enqueue("echo" if i % 2 else "resize", b"", queue=f"q{i % 3}").id)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = client.browse(limit=5, cursor=cursor)
        seen += [t.id for t in page.tasks]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    # Ties in the same millisecond are ordered by id; every task is shown exactly once.
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen)) == 23
    assert pages == 5
    enq = [t.enqueued_ms or 0 for t in client.browse(limit=23).tasks]
    assert enq == sorted(enq, reverse=True)


def test_browse_filters_by_queue_name_stage_and_time(
    client: Client, redis_client: redis.Redis
) -> None:
    a = [client.enqueue("echo", b"", queue="a").id for _ in range(4)]
    b = [client.enqueue("mail", b"", queue="b").id for _ in range(3)]
    client.enqueue("echo", b"", queue="b")
    assert sorted(t.id for t in client.browse(queue="a").tasks) == sorted(a)
    assert sorted(t.id for t in client.browse(task="mail").tasks) == sorted(b)
    both = client.browse(task="echo", queue="b").tasks
    assert [t.queue for t in both] == ["b"]
    # Stage: read from the records (the index has none), here one completed task.
    broker = Broker(redis_client, client.settings)
    got = [x for x in broker.claim(["a"], "w1", 1) if isinstance(x, Task)]
    broker.finish([Report(got[0], ok=True, result=b"", started_ms=now_ms())])
    done = client.browse(stage="completed").tasks
    assert [t.id for t in done] == [got[0].id]
    # Time: move one task's index entry an hour back and ask for the last 10 minutes.
    old = b[0]
    redis_client.zadd(keys.index_name("mail"), {old: now_ms() - 3_600_000})
    recent = client.browse(task="mail", since_ms=now_ms() - 600_000).tasks
    assert old not in {t.id for t in recent} and len(recent) == 2
    earlier = client.browse(task="mail", until_ms=now_ms() - 600_000).tasks
    assert [t.id for t in earlier] == [old]


def test_a_page_that_spends_its_scan_budget_says_so_and_continues(client: Client) -> None:
    for _ in range(30):
        client.enqueue("echo", b"", queue="a")
    page = client.browse(stage="completed", limit=5, scan=10)
    assert page.tasks == [] and page.budget_spent and page.scanned == 10
    assert page.next_cursor is not None
    rest = client.browse(stage="pending", cursor=page.next_cursor, limit=100)
    assert len(rest.tasks) == 20 and rest.next_cursor is None


def test_gone_records_are_skipped_and_trim_bounds_the_index(
    client: Client, redis_client: redis.Redis, settings: Settings
) -> None:
    ids = [client.enqueue("echo", b"", queue="a").id for _ in range(6)]
    redis_client.delete(keys.task(ids[-1]))
    assert ids[-1] not in {t.id for t in client.browse(queue="a").tasks}
    assert len(client.browse(queue="a").tasks) == 5
    redis_client.zadd(keys.index_queue("a"), {"ancient": 1})
    small = dataclasses.replace(settings, index_max=3)
    dropped = catalog.trim(redis_client, small, now_ms())
    # "ancient" by age, then the oldest by count, in both the queue and the name index.
    assert dropped == 1 + 3 + 3
    assert redis_client.zcard(keys.index_queue("a")) == 3
    assert redis_client.zcard(keys.index_name("echo")) == 3


def test_bad_browse_arguments_are_refused_in_one_line(client: Client) -> None:
    with pytest.raises(InvalidTask, match="cursor 'nope' is not MS:ID"):
        client.browse(cursor="nope")
    with pytest.raises(InvalidTask, match="invalid stage 'done'"):
        client.browse(stage="done")
