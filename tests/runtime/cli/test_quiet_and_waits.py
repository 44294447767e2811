"""What a new user sees on stderr: one-shot commands quiet unless ``-v``, every log line in
the chosen format (worker processes included), a status line on slow steps, and waits that
end their output with a newline, name ``--wait-timeout`` and say when no worker serves
the queue. Real ``wasmq`` subprocesses against the private server."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from runtime.queue.broker import Broker
from tests.support import seeding
from tests.support.cli import cli_env, run_cli
from tests.support.paths import TASKS
from tests.support.pools import FAST, SPIN_WAT, Pools

pytestmark = pytest.mark.processes

ECHO = str(TASKS / "echo.wat")
WASMQ = (sys.executable, "-c", "from runtime.cli import main; main()")


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every non-empty line parsed as one JSON log object (fails on any other line)."""
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    for line in lines:
        assert isinstance(line, dict) and {"level", "event"} <= set(line), line
    return lines


@pytest.mark.slow  # several wasmq processes
def test_one_shot_commands_log_warnings_only_unless_asked(cli: Any, tmp_path: Path) -> None:
    assert cli("register", ECHO, check=True).stderr == ""
    assert "task registered" in cli("-v", "register", ECHO, check=True).stderr
    assert "task registered" in cli("--verbose", "register", ECHO, check=True).stderr
    from_env = run_cli(
        "register", ECHO, env={**cli.env, "TASK_QUEUE_LOG_LEVEL": "info"}, cwd=tmp_path
    )
    assert "task registered" in from_env.stderr
    # An explicit level wins over -v.
    assert cli("--log-level", "warning", "-vv", "register", ECHO, check=True).stderr == ""


def test_verbose_one_shot_in_json_writes_json_lines_only(cli: Any) -> None:
    proc = cli("-v", "--log-format", "json", "register", ECHO, check=True)
    events = json_lines(proc.stderr)
    (registered,) = [e for e in events if e["event"] == "task registered"]
    assert registered["level"] == "info" and registered["component"] == "registry"
    assert proc.stdout.startswith("registered echo v")


@pytest.fixture
def json_pools(redis_url: str, tmp_path: Path) -> Iterator[Pools]:
    pools = Pools(cli_env(redis_url, tmp_path, TASK_QUEUE_LOG_FORMAT="json", **FAST), tmp_path)
    try:
        yield pools
    finally:
        pools.stop_all()


@pytest.mark.slow
def test_a_json_worker_writes_nothing_but_json_lines(
    cli: Any, json_pools: Pools, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A pool (supervisor, worker processes, scheduler, reaper, embedded-server watch
    off) registers a directory, runs a task to the end and stops: its whole output is
    JSON log lines. ``enqueue --wait`` meanwhile ends the result with a newline and, a
    worker serving the queue, warns of nothing."""
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "spin.wat").write_text(SPIN_WAT)
    pool = json_pools.start("-c", "2", "--registry", str(sources))
    json_pools.wait_idle(redis_client, 2)

    waited = cli("enqueue", "spin", "--payload", "hello", "--wait", "--wait-timeout", "60")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout == "hello\n"
    assert "warning" not in waited.stderr

    pool.send_signal(signal.SIGTERM)
    assert pool.wait(timeout=30) == 0
    events = json_lines(json_pools.logs())
    names = [e["event"] for e in events]
    assert "task registered" in names and "worker pool started" in names
    assert names.count("worker started") == 2 and names.count("worker stopped") == 2
    assert names[-1] == "worker pool stopped"


def test_a_wait_no_worker_serves_warns_shows_progress_and_names_wait_timeout(
    cli: Any, redis_client: redis.Redis
) -> None:
    seeding.register(redis_client, "echo")
    proc = cli("enqueue", "echo", "--queue", "lonely", "--wait", "--wait-timeout", "2")
    assert proc.returncode == 1 and proc.stdout == ""
    enqueued, warning, waiting, error = proc.stderr.splitlines()
    task_id = enqueued.removeprefix("enqueued ")
    assert warning == (
        "warning: no live worker serves queue 'lonely'; start one with: wasmq worker --queue lonely"
    )
    # Not a terminal: one plain line once the wait passed a second, nothing more.
    assert waiting == f"waiting for {task_id} (pending)..."
    assert error.startswith(f"error: task {task_id} is still pending after 2")
    assert error.endswith("; wait longer with --wait-timeout")


@pytest.mark.slow  # several wasmq processes
def test_result_wait_warns_and_a_short_wait_shows_no_status_line(
    cli: Any, redis_client: redis.Redis
) -> None:
    seeding.register(redis_client, "echo")
    task_id = cli("enqueue", "echo", "-q", "later", check=True).stdout.strip()
    for flag in ("--wait-timeout", "--timeout"):
        proc = cli("result", task_id, "--wait", flag, "0.5")
        assert proc.returncode == 1
        warning, error = proc.stderr.splitlines()
        assert warning.startswith("warning: no live worker serves queue 'later';")
        assert error.endswith("; wait longer with --wait-timeout")


@pytest.mark.slow  # several wasmq processes
def test_result_text_ends_a_line_and_raw_or_binary_bytes_stay_exact(
    cli: Any, broker: Broker, tmp_path: Path
) -> None:
    results = {"text-1": b"the text", "line-1": b"a line\n", "bin-1": b"\x89PNG\r\n\x1a\n\0\xff"}
    for task_id, result in results.items():
        seeding.enqueue(broker, task_id)
        seeding.run(broker, result=result)

    def stdout(*args: str) -> bytes:
        proc = subprocess.run(
            [*WASMQ, *args],
            env=cli.env,
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert stdout("result", "text-1") == b"the text\n"
    assert stdout("result", "text-1", "--raw") == b"the text"
    assert stdout("result", "line-1") == b"a line\n"
    assert stdout("result", "bin-1") == results["bin-1"]
    assert stdout("result", "text-1", "--wait") == b"the text\n"


def test_on_a_terminal_a_wait_draws_a_status_line_and_erases_it(
    cli: Any, redis_client: redis.Redis, tmp_path: Path
) -> None:
    seeding.register(redis_client, "echo")
    parent, child = pty.openpty()
    proc = subprocess.Popen(
        [*WASMQ, "enqueue", "echo", "--wait", "--wait-timeout", "2"],
        env=cli.env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=child,
    )
    os.close(child)
    chunks = []
    try:
        while True:
            try:
                data = os.read(parent, 4096)
            except OSError:  # EIO: the command ended and closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=60) == 1
    finally:
        os.close(parent)
        if proc.poll() is None:
            proc.kill()
    screen = b"".join(chunks).decode()
    task_id = re.search(r"enqueued (\w+)", screen)
    assert task_id is not None, screen
    draw = re.escape("\r\x1b[K") + r". waiting for " + task_id[1] + r" \(pending\) (\d) s"
    seconds = [int(s) for s in re.findall(draw, screen)]
    assert seconds and seconds[0] == 1 and len(seconds) >= 3, screen
    # Erased before the error line: nothing of the status is left on screen.
    assert re.search(draw + re.escape("\r\x1b[K") + "error: task ", screen), screen
    assert "(pending)..." not in screen


@pytest.mark.toolchain
@pytest.mark.slow
def test_a_slow_go_compile_writes_one_plain_line(
    cli: Any, toolchain_cache: Path, tmp_path: Path
) -> None:
    env = {**cli.env, "WASMQ_TOOLCHAIN_CACHE": str(toolchain_cache), "WASMQ_GO_TOOLCHAIN": "go"}
    proc = run_cli("register", str(TASKS / "greet.go"), ECHO, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # Only the Go compile passes a second; the WAT one is quick and says nothing.
    assert proc.stderr.splitlines() == ["[1/2] compiling greet.go (go)..."]
