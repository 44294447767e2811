"""Flows run by real worker pools: a chord's callback runs once while several processes ack
its last members at the same time, and a SIGKILLed worker in the middle of a chain or of a
chord's last members loses no step and runs none twice but the one it was running.

The task is :data:`RELAY_WAT`: SPIN_WAT (tests/support/pools.py) returning its payload
after the spin, so that every step of a chain spins as long as the first.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import redis

from runtime.modules.registry import Registry
from runtime.queue import keys
from runtime.settings import Settings
from tests.support.pools import SPIN_WAT, Pools, client_for, running_tasks, wait_for

pytestmark = pytest.mark.processes

_DONE = "(return (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 4)))"
RELAY_WAT = SPIN_WAT.replace(_DONE, "(nop)")


@pytest.fixture
def relay(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> None:
    assert RELAY_WAT != SPIN_WAT
    source = tmp_path / "relay.wat"
    source.write_text(RELAY_WAT)
    Registry(settings, redis_client).register(source)


def field(r: redis.Redis, task_id: str, name: str) -> bytes | None:
    value = r.hget(keys.task(task_id), name)
    return value if isinstance(value, bytes) else None


def flow_state(r: redis.Redis, flow_id: str) -> bytes | None:
    value = r.hget(keys.flow(flow_id), "state")
    return value if isinstance(value, bytes) else None


def finished_count(r: redis.Redis, task_id: str) -> int:
    return r.lrange(keys.finished(), 0, -1).count(task_id.encode())


def kill_worker_of(r: redis.Redis, task_id: str) -> None:
    worker = field(r, task_id, "worker")
    assert worker is not None
    os.kill(int(worker.decode().rsplit(":", 2)[1]), signal.SIGKILL)


def test_chord_callback_runs_once_under_several_workers(
    relay: None, redis_client: redis.Redis, redis_url: str, tmp_path: Path, pools: Pools
) -> None:
    client = client_for(redis_url, tmp_path, redis_client)
    pools.start("--concurrency", "3")
    pools.wait_idle(redis_client, 3)
    members = [("relay", {"i": i}) for i in range(24)]
    flow = client.chord(members, "relay")
    assert flow.callback_id is not None
    result = client.result(flow.callback_id, wait=True, timeout=60)
    assert json.loads(result) == [{"i": i} for i in range(24)]
    assert field(redis_client, flow.callback_id, "attempts") == b"1"
    assert finished_count(redis_client, flow.callback_id) == 1
    workers = {field(redis_client, task_id, "worker") for task_id in flow.member_ids}
    assert len(workers) > 1, "one process ran every member: nothing ran concurrently"
    wait_for(lambda: flow_state(redis_client, flow.id) == b"completed", 10, "the flow", pools.logs)


@pytest.mark.slow
def test_sigkilled_worker_loses_no_flow_step(
    relay: None, redis_client: redis.Redis, redis_url: str, tmp_path: Path, pools: Pools
) -> None:
    client = client_for(redis_url, tmp_path, redis_client)
    pools.start("--concurrency", "3")
    pools.wait_idle(redis_client, 3)

    chain = client.chain(*[("relay", "spin:600")] + ["relay"] * 3, timeout="5s")
    killed = chain.member_ids[1]
    wait_for(lambda: killed in running_tasks(redis_client), 30, "step 1 to run", pools.logs)
    kill_worker_of(redis_client, killed)
    wait_for(
        lambda: flow_state(redis_client, chain.id) == b"completed", 60, "the chain", pools.logs
    )
    assert [field(redis_client, i, "attempts") for i in chain.member_ids] == [
        b"1",
        b"2",
        b"1",
        b"1",
    ]
    assert client.result(chain.member_ids[-1]) == b"spin:600"
    assert all(finished_count(redis_client, i) == 1 for i in chain.member_ids)

    # The chord's last members run side by side; one of their workers dies mid-run.
    chord = client.chord([("relay", "spin:800")] * 3, "relay", timeout="5s")
    assert chord.callback_id is not None
    wait_for(
        lambda: set(chord.member_ids) <= running_tasks(redis_client),
        30,
        "every member to run",
        pools.logs,
    )
    kill_worker_of(redis_client, chord.member_ids[2])
    result = client.result(chord.callback_id, wait=True, timeout=60)
    assert json.loads(result) == ["spin:800"] * 3
    assert field(redis_client, chord.callback_id, "attempts") == b"1"
    assert finished_count(redis_client, chord.callback_id) == 1
    assert [field(redis_client, i, "attempts") for i in chord.member_ids] == [b"1", b"1", b"2"]
    assert redis_client.llen(keys.pending()) == 0
