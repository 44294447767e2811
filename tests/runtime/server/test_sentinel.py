"""A failover under a real worker pool: a master, one replica and three sentinels; every
enqueue waits for the replica (``WASMQ_REPLICA_ACKS=1``), the master is SIGKILLed while
the pool works, the sentinels promote the replica and every acknowledged task still ends
completed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from runtime.client import Client
from runtime.errors import NotReplicated
from runtime.queue import keys
from runtime.server.connection import connect
from runtime.settings import Settings
from tests.support.cli import cli_env
from tests.support.pools import FAST, Pools, register_spin
from tests.support.servers import SERVICE, Servers, free_port, wait_until

pytestmark = pytest.mark.processes

TASKS = 60
BIG = b"x" * 20_000


def completed(client: redis.Redis, ids: list[str]) -> int:
    pipe = client.pipeline(transaction=False)
    for task_id in ids:
        pipe.hget(keys.task(task_id), "task_stage")
    return sum(stage == b"completed" for stage in pipe.execute())


def in_sync(port: int) -> bool:
    replica = redis.Redis(port=port, socket_timeout=1)
    try:
        return replica.info("replication").get("master_link_status") == "up"
    finally:
        replica.close()


def sentinels_ready(ports: list[int], replica: int) -> bool:
    """Every sentinel sees the replica and the two other sentinels: only then can they
    agree the master is down and elect one of them to fail over."""
    for port in ports:
        sentinel = redis.Redis(port=port, socket_timeout=1)
        try:
            state = sentinel.sentinel_master(SERVICE)
            replicas = sentinel.sentinel_slaves(SERVICE)
        finally:
            sentinel.close()
        if int(state["num-other-sentinels"]) < 2 or not any(
            int(r["port"]) == replica and "s_down" not in r["flags"] for r in replicas
        ):
            return False
    return True


def test_pool_rides_through_a_failover_losing_no_acknowledged_task(tmp_path: Path) -> None:
    root = tmp_path / "servers"
    root.mkdir()
    servers = Servers(root)
    master, replica = free_port(), free_port()
    sentinel_ports = [free_port() for _ in range(3)]
    url = "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in sentinel_ports) + f"/{SERVICE}"
    env = cli_env(url, tmp_path, **FAST, WASMQ_REPLICA_ACKS="1", WASMQ_CONNECT_TIMEOUT="10s")
    pools = Pools(env, tmp_path)
    try:
        # No 5 s pause before the first sync: the replica is in sync at once.
        master_proc = servers.valkey(master, "--repl-diskless-sync-delay", "0")
        servers.valkey(replica, "--replicaof", "127.0.0.1", str(master))
        wait_until(lambda: in_sync(replica), 15, "the replica")
        for port in sentinel_ports:
            servers.sentinel(port, master)
        wait_until(lambda: sentinels_ready(sentinel_ports, replica), 15, "the sentinels")

        settings = Settings.load({}, environ=env, env_file=None)
        client = connect(settings)
        register_spin(settings, client, tmp_path)
        producer = Client(settings=settings, client=client)
        # Each batch returns only once the replica has it (WAIT), so all of it survives.
        tasks = producer.enqueue_many([("spin", b"spin:40")] * (TASKS - 4), timeout="2s")
        # Payloads and results this large are written beside the scripts, in a MULTI.
        tasks += producer.enqueue_many([("spin", BIG)] * 4, timeout="2s")
        ids = [task.id for task in tasks]

        pools.start("--concurrency", "2")
        wait_until(lambda: completed(client, ids) >= TASKS // 4, 30, "the pool to start")
        master_proc.kill()
        master_proc.wait()
        killed = time.monotonic()

        def all_done() -> bool:
            return completed(client, ids) == TASKS

        try:
            wait_until(all_done, 20, "every task to complete after the failover")
        except AssertionError:
            raise AssertionError(
                f"{completed(client, ids)} of {TASKS} completed\n"
                f"{pools.logs()[-3000:]}\n{servers.logs()}"
            ) from None
        elapsed = time.monotonic() - killed
        promoted = redis.Redis(port=sentinel_ports[0]).sentinel_get_master_addr_by_name(SERVICE)
        assert int(promoted[1]) == replica
        assert all(proc.poll() is None for proc in pools.procs), pools.logs()[-3000:]
        assert "Redis unavailable, retrying" in pools.logs()
        assert elapsed < 15
        assert client.get(keys.result(ids[-1])) == BIG

        # With the replica gone, an enqueue cannot be confirmed: it says so in one line.
        with pytest.raises(NotReplicated, match="WASMQ_REPLICA_ACKS=1") as refused:
            producer.enqueue("spin", b"x")
        assert "\n" not in str(refused.value)
        client.close()
    finally:
        pools.stop_all()
        servers.stop_all()
