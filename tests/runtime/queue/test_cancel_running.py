"""Cancelling a running task stops it: a real worker process interrupts the sandbox.

The task (:data:`STUCK_WAT`) prints a line, then never ends on its own: payload ``loop``
spins in wasm code, ``sleep`` sleeps a minute in a host call, anything else returns at
once. A cancel must stop the run within the deadline slice, keep what it printed and
leave the worker free for the next task.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import pytest
import redis

from runtime.modules.registry import Registry
from runtime.output.chunks import read_logs
from runtime.queue import keys
from runtime.queue.broker import Broker
from runtime.queue.task import Stage
from runtime.settings import Settings
from tests.support.pools import Pools, client_for, running_tasks, wait_for
from tests.support.standins import enqueue, make_worker

STUCK_WAT = """
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 300) "started\\n")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param $p i32) (param $l i32) (result i64)
    (i32.store (i32.const 400) (i32.const 300))
    (i32.store (i32.const 404) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 400) (i32.const 1) (i32.const 408)))
    (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 108))  ;; "l": spin in wasm
      (then (loop $forever (br $forever))))
    (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 115))  ;; "s": sleep 60 s
      (then
        (i32.store8 (i32.const 8) (i32.const 0))
        (i32.store (i32.const 16) (i32.const 1))
        (i64.store (i32.const 24) (i64.const 60000000000))
        (i32.store16 (i32.const 40) (i32.const 0))
        (drop (call $poll (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 204)))))
    (i64.or (i64.shl (i64.const 300) (i64.const 32)) (i64.const 7))))
"""


@pytest.mark.processes
def test_cancel_stops_a_running_task_and_keeps_its_output(
    settings: Settings, redis_client: redis.Redis, redis_url: str, tmp_path: Path, pools: Pools
) -> None:
    source = tmp_path / "stuck.wat"
    source.write_text(STUCK_WAT)
    Registry(settings, redis_client).register(source)
    client = client_for(redis_url, tmp_path, redis_client)
    pools.start("--concurrency", "1")
    pools.wait_idle(redis_client, 1)
    latencies = {}
    for payload in (b"loop", b"sleep"):
        task_id = client.enqueue("stuck", payload, timeout="60s").id
        wait_for(lambda i=task_id: i in running_tasks(redis_client), 30, "a run", pools.logs)
        cancelled_ms = int(time.time() * 1000)
        # The client waits for the worker to record the stop.
        assert client.cancel(task_id, wait=2.0) == "stopped", pools.logs()[-3000:]
        raw = redis_client.hgetall(keys.task(task_id))
        assert raw[b"task_stage"] == b"cancelled" and raw[b"error_kind"] == b"cancelled"
        assert b"cancelled while it ran" in raw[b"error"]
        # Stopped by the worker: the run ended soon after the cancel, not at its limit.
        stopped_ms = int(raw[b"started_ms"]) + float(raw[b"duration_ms"])
        latencies[payload.decode()] = stopped_ms - cancelled_ms
        assert stopped_ms - cancelled_ms < 2000, latencies
        assert b"".join(c.data for c in read_logs(redis_client, task_id)) == b"started\n"
        assert not redis_client.exists(keys.result(task_id))
    # The worker goes on with the next task.
    after = client.enqueue("stuck", b"quick")
    wait_for(
        lambda: redis_client.hget(keys.task(after.id), "task_stage") == b"completed",
        30,
        "the next task",
        pools.logs,
    )
    assert redis_client.get(keys.result(after.id)) == b"started"
    assert redis_client.llen(keys.processing()) == 0
    assert redis_client.zcard(keys.TIMEOUT) == 0
    print(f"cancel to stop (ms): {latencies}")


def test_a_task_cancelled_before_its_worker_starts_it_never_starts(
    broker: Broker, redis_client: redis.Redis, settings: Settings
) -> None:
    # Claimed together: the second waits behind the first, already in_progress.
    enqueue(broker, "first", {"result": "a", "sleep": 0.5})
    enqueue(broker, "second", {"result": "b"})
    worker = make_worker(redis_client, dataclasses.replace(settings, claim_batch=2))
    worker._task_seconds = 0.001  # a worker that has measured fast tasks claims batches
    thread = threading.Thread(target=worker.run, args=(threading.Event(),))
    worker.burst = True
    thread.start()
    try:
        wait_for(
            lambda: redis_client.hget(keys.task("second"), "task_stage") == b"in_progress",
            5,
            "both tasks to be claimed",
            lambda: "",
        )
        assert broker.cancel("second")[0] == "marked"
    finally:
        thread.join(10)
    assert not thread.is_alive()
    assert redis_client.hget(keys.task("first"), "task_stage") == Stage.COMPLETED.encode()
    raw = redis_client.hgetall(keys.task("second"))
    assert raw[b"task_stage"] == b"cancelled"
    assert raw[b"error_kind"] == b"cancelled"
    assert raw[b"error"] == b"The task was cancelled before it started."
    runs = [json.loads(p) for p in worker.sandbox.runs]  # type: ignore[attr-defined]
    assert runs == [{"result": "a", "sleep": 0.5}]
    assert redis_client.llen(keys.processing()) == 0
