"""A handler's own error and progress, from the sandbox through a real worker to what
``wasmq status``, the dead-letter list and the Python client show.

``guest_abi.wat`` (tests/runtime/sandbox/wat) picks what to do by its payload's first
byte; the real registry, sandbox and worker loop run it.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from typer.testing import CliRunner

from runtime.cli import app
from runtime.client import Client
from runtime.errors import TaskFailed
from runtime.modules.registry import Registry
from runtime.output.live import LiveLogPublisher
from runtime.queue import keys
from runtime.queue.broker import Broker
from runtime.queue.task import Task
from runtime.settings import Settings
from runtime.worker.loop import Worker
from tests.support.paths import WAT


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> Iterator[Client]:
    Registry(settings, redis_client).register(WAT / "guest_abi.wat", name="guest")
    stop = threading.Event()
    worker = Worker(settings, [settings.queue], client=redis_client)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    with Client(settings=settings) as c:
        try:
            yield c
        finally:
            stop.set()
            thread.join(10)


def _wait_stage(client: Client, task_id: str, *stages: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while client.status(task_id).stage not in stages:
        assert time.monotonic() < deadline, client.status(task_id)
        time.sleep(0.01)


def _cli(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(app, ["--redis-url", settings.redis_url, *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_progress_shows_while_the_task_runs_and_stays_after(
    client: Client, settings: Settings
) -> None:
    task = client.enqueue("guest", b"s" + struct.pack("<I", 700))
    seen = [(st.stage, st.progress, st.progress_message) for st in client.watch(task.id)]
    assert ("in_progress", 10.0, "") in seen
    assert ("in_progress", 90.0, "almost") in seen
    assert seen[-1] == ("completed", 90.0, "almost")
    status = client.status(task.id)
    assert status.progress_ms is not None and status.retryable is None
    shown = _cli(settings, "status", task.id)
    assert "progress     90% almost" in shown
    assert "outcome      ok" in shown


def test_status_follow_prints_each_report_then_the_final_status(
    client: Client, settings: Settings
) -> None:
    task = client.enqueue("guest", b"s" + struct.pack("<I", 600))
    out = _cli(settings, "status", task.id, "--follow")
    lines = out.splitlines()
    assert any("in_progress" in line and "attempt 1  10%" in line for line in lines), out
    assert any("in_progress" in line and "90% almost" in line for line in lines), out
    assert "stage        completed" in lines


def test_a_terminal_handler_error_is_dead_lettered_as_such(
    client: Client, settings: Settings
) -> None:
    task = client.enqueue("guest", b"t", max_retries=3)
    _wait_stage(client, task.id, "failed")
    status = client.status(task.id)
    assert status.attempts == 1  # terminal: no retry
    assert (status.outcome, status.retryable, status.error) == ("handler", False, "bad input")
    assert status.error_label == "handler error (terminal)"
    with pytest.raises(TaskFailed) as failed:
        client.result(task.id)
    assert failed.value.error_kind == "handler" and failed.value.retryable is False
    assert "handler error (terminal)" in _cli(settings, "dlq", "list")
    assert "outcome      handler error (terminal)" in _cli(settings, "status", task.id)


def test_a_retryable_handler_error_is_retried(client: Client, settings: Settings) -> None:
    task = client.enqueue("guest", b"r", max_retries=1)
    _wait_stage(client, task.id, "retrying")
    status = client.status(task.id)
    assert status.attempts == 1
    assert (status.outcome, status.retryable, status.error) == ("handler", True, "try later")
    assert status.error_label == "handler error (retryable)"


def test_a_late_progress_write_never_touches_an_ended_task(
    redis_client: redis.Redis, broker: Broker
) -> None:
    broker.enqueue(Task(id="late", task_name="job"))
    redis_client.hset(keys.task("late"), mapping={"task_stage": "completed", "worker": "w1"})
    broker.progress([("late", 40.0, "late")], "w1")
    assert redis_client.hget(keys.task("late"), "progress") is None
    redis_client.hset(keys.task("late"), mapping={"task_stage": "in_progress", "worker": "w2"})
    broker.progress([("late", 40.0, "not yours")], "w1")
    assert redis_client.hget(keys.task("late"), "progress") is None
    broker.progress([("late", 41.5, "mine")], "w2")
    assert redis_client.hmget(keys.task("late"), ["progress", "progress_message"]) == [
        b"41.5",
        b"mine",
    ]


def test_a_progress_loop_is_rate_limited_before_redis(redis_client: redis.Redis) -> None:
    writes: list[list[tuple[str, float, str]]] = []
    live = LiveLogPublisher(
        redis_client, delay=0.0, progress_writer=lambda updates: writes.append(list(updates))
    )
    try:
        live.start_task("busy")
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 1.0:
            n += 1
            live.progress("busy", float(n), "")
        loop_end = time.monotonic()
        # The last report is written within an interval of the previous write.
        while writes[-1:] != [[("busy", float(n), "")]] and time.monotonic() - loop_end < 10:
            time.sleep(0.01)
        took = time.monotonic() - started
    finally:
        live.end_task("busy")
        live.close()
    assert n > 1_000
    assert writes[-1] == [("busy", float(n), "")]
    # At most one write per interval (0.25 s), plus the first one.
    assert 2 <= len(writes) <= took / 0.25 + 2, (len(writes), took)
