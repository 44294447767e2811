"""Task logs end to end: a real worker runs a WAT module that prints to both streams.

Covers: order across streams, truncation marker, log file at the reference path (and
in the completion event), the mirror prefix, ``logs --follow`` seeing a line before the
task ends, ``enqueue --wait`` and ``result --wait``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from runtime.queue import keys
from runtime.queue.task import Limits
from runtime.settings import Settings
from tests.support.cli import cli_env
from tests.support.paths import OUTPUT_WASM
from tests.support.pools import terminate

pytestmark = pytest.mark.processes

WAT = OUTPUT_WASM / "print_spin.wat"
WASMQ = [sys.executable, "-c", "from runtime.cli import main; main()"]


@pytest.fixture
def env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    return cli_env(
        redis_url,
        tmp_path,
        TASK_QUEUE_SAVE_WASM_LOGS="true",
        TASK_QUEUE_MIRROR_WASM_LOGS="true",
        WASMQ_DRAIN_TIMEOUT="5s",
    )


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path, cli: Any) -> Iterator[Path]:
    """Registers ``print_spin`` and runs one worker process; yields its output file."""
    cli("register", str(WAT), check=True)
    out = tmp_path / "worker.log"
    with open(out, "wb") as handle:
        proc = subprocess.Popen(
            [*WASMQ, "worker", "--concurrency", "1"],
            env=env,
            cwd=tmp_path,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        yield out
    finally:
        terminate(proc, timeout=20)


def enqueue_wait(cli: Any, payload: str) -> tuple[str, str]:
    """``wasmq enqueue print_spin --wait``: (task id, result)."""
    proc = cli(
        "enqueue", "print_spin", "--payload", payload, "--wait", "--wait-timeout", "60s", check=True
    )
    assert proc.stderr.startswith("enqueued ")
    task_id = proc.stderr.split()[1]
    return task_id, proc.stdout


def test_both_streams_in_order_file_and_mirror(cli: Any, worker: Path, settings: Settings) -> None:
    task_id, result = enqueue_wait(cli, "both")
    assert result == "ok\n"  # text results end with a newline (--raw writes them exactly)
    lines = cli("logs", task_id, check=True).stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "stdout | out 1",
        "stderr | err 1",
        "stdout | out 2",
    ]
    chunks = json.loads(cli("logs", task_id, "--json", check=True).stdout)
    assert [(c["stream"], c["data"]) for c in chunks] == [
        ("stdout", "out 1\n"),
        ("stderr", "err 1\n"),
        ("stdout", "out 2\n"),
    ]
    assert [c["ts_ms"] for c in chunks] == sorted(c["ts_ms"] for c in chunks)
    stderr_only = cli("logs", task_id, "--stream", "stderr", check=True).stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stderr_only] == ["stderr | err 1"]

    # The reference layout: TASK_QUEUE_WASM_LOG_DIR/<task-name>/<task-id>.log.
    path = settings.wasm_log_dir / "print_spin" / f"{task_id}.log"
    assert [line.split(" ", 1)[1] for line in path.read_text().splitlines()] == [
        "stdout | out 1",
        "stderr | err 1",
        "stdout | out 2",
    ]
    status = json.loads(cli("status", task_id, "--json", check=True).stdout)
    assert Path(status["log_file"]).resolve() == path.resolve()
    assert status["log_bytes"] == 18 and status["log_dropped_bytes"] == 0

    deadline = time.monotonic() + 10
    while f"[print_spin {task_id}] stderr: err 1" not in worker.read_text(errors="replace"):
        assert time.monotonic() < deadline, worker.read_text(errors="replace")
        time.sleep(0.05)
    text = worker.read_text(errors="replace")
    assert f"[print_spin {task_id}] stdout: out 1" in text
    assert f"[print_spin {task_id}] stdout: out 2" in text
    assert str(path.name) in text  # the completion event names the saved file


def test_truncation_is_marked(
    cli: Any, worker: Path, redis_client: redis.Redis, settings: Settings
) -> None:
    from runtime.client import Client

    client = Client(settings=settings, client=redis_client)
    task = client.enqueue("print_spin", b"flood", limits=Limits(logs=100))
    assert client.wait_result(task.id, timeout=60) == b"ok"
    status = client.status(task.id)
    assert status.log_bytes <= 100 and status.log_dropped == 400 - status.log_bytes
    lines = cli("logs", task.id, check=True).stdout.splitlines()
    assert lines[-1] == f"[output truncated: {status.log_dropped} bytes dropped at the log limit]"
    saved = (settings.wasm_log_dir / "print_spin" / f"{task.id}.log").read_text()
    assert saved.splitlines()[-1] == lines[-1]


def test_follow_sees_a_line_before_the_task_ends(
    cli: Any, worker: Path, env: dict[str, str], tmp_path: Path, redis_client: redis.Redis
) -> None:
    enqueue_wait(cli, "both")  # the worker is up and the module loaded
    # Scheduled a moment ahead, so the follower is already waiting when the task starts.
    task_id = cli(
        "enqueue", "print_spin", "--payload", "spin", "--in", "1s", check=True
    ).stdout.strip()
    with subprocess.Popen(
        [*WASMQ, "logs", task_id, "--follow"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as follower:
        assert follower.stdout is not None and follower.stderr is not None
        first = follower.stdout.readline().decode()
        first_at = time.monotonic()
        # The line arrived while the task was still spinning.
        stage = redis_client.hget(keys.task(task_id), "task_stage")
        assert first.split(" ", 1)[1] == "stdout | before\n"
        assert stage == b"in_progress"
        rest = follower.stdout.read().decode()
        assert follower.wait(timeout=30) == 0, follower.stderr.read()
        ended_at = time.monotonic()
    assert ended_at - first_at > 0.7  # the task spins one second after the first line
    assert [line.split(" ", 1)[1] for line in rest.splitlines()] == ["stderr | after"]
    assert redis_client.hget(keys.task(task_id), "task_stage") == b"completed"
    assert cli("result", task_id, "--wait", "--timeout", "5s", check=True).stdout == "done\n"
