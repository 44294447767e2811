"""The demo (``make demo``) on an embedded server as a second run finds it: already running,
with the user's own worker serving ``default``. Every printed result and log line is what
the handlers in tasks/ produce. A first run, which starts the server and stops it, is
``make demo`` in a fresh clone (tests/test_quickstart.py)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.client import Client
from runtime.demo import (
    CRON_RUNS,
    DEMO_QUEUE,
    NEXT_COMMANDS,
    TASKS,
    installed_bin,
    next_steps,
    run,
)
from runtime.queue.task import Stage
from runtime.server import embedded
from runtime.settings import Settings
from tests.support.cli import cli_env
from tests.support.demo_output import WORKER_STOPPED, assert_demo_printed
from tests.support.pools import terminate

#: The handlers the demo runs, without the rest of tasks/ (fewer compiles).
DEMO_SOURCES = ("task_1.go", "task_1_c.c", "task_1_wat.wat")


@pytest.fixture
def demo_tasks(tmp_path: Path) -> Path:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for name in DEMO_SOURCES:
        shutil.copy(TASKS / name, tasks / name)
    return tasks


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Settings]:
    """Settings with no REDIS_URL: the embedded server of ``tmp_path/state``, stopped after
    the test whoever started it."""
    settings = Settings.load(
        {
            "module_dir": tmp_path / "modules",
            "state_dir": tmp_path / "state",
            "wasm_log_dir": tmp_path / "wasm-logs",
        },
        environ={},
        env_file=None,
    )
    try:
        yield settings
    finally:
        embedded.stop(settings.state_dir)


@pytest.fixture
def users_worker(project: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``wasmq worker --concurrency 1`` on the default queue, started as a user starts it:
    no REDIS_URL, so it uses (and supervises) the embedded server."""
    log = (tmp_path / "users-worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from runtime.cli import main; main()", "worker", "-c", "1"],
        env=cli_env(None, tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        terminate(proc, timeout=30)
        log.close()


def default_workers(client: Client, proc: subprocess.Popen[bytes]) -> list[str]:
    """Ids of the live workers serving ``default``, once the user's worker reports in."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the user's worker exited"
        ids = [w.id for w in client.workers() if w.alive and w.queues == ["default"]]
        if ids:
            return ids
        time.sleep(0.1)
    raise AssertionError("the user's worker did not report in within 60s")


def assert_demo_tasks_ran(client: Client, shown_ids: list[str], foreign: set[str]) -> None:
    """Every task the demo showed completed on the demo queue, run by none of ``foreign``."""
    assert len(shown_ids) == 2 + CRON_RUNS
    for task_id in shown_ids:
        status = client.status(task_id)
        assert (status.stage, status.queue) == (Stage.COMPLETED, DEMO_QUEUE), task_id
        assert status.worker and status.worker not in foreign, (task_id, status.worker)


@pytest.mark.toolchain
@pytest.mark.processes
@pytest.mark.slow
def test_a_second_demo_leaves_the_users_server_and_worker_alone(
    project: Settings,
    users_worker: subprocess.Popen[bytes],
    demo_tasks: Path,
    toolchain_cache: Path,
) -> None:
    url = embedded.ensure_running(project.state_dir)
    with Client(url, settings=project) as client:
        users = set(default_workers(client, users_worker))
        printed: list[str] = []
        shown = run(project, demo_tasks, out=printed.append, toolchain_cache=toolchain_cache)

        assert embedded.status(project.state_dir).running
        assert users_worker.poll() is None
        assert_demo_tasks_ran(client, [s.task_id for s in shown], users)
        assert [w.done for w in client.workers() if w.id in users] == [0] * len(users)
        assert client.list_tasks(queue="default") == []
    steps = assert_demo_printed(printed)
    assert [(p.label, p.task_name, p.task_id, p.result, p.log_lines) for p in steps] == [
        (s.label, s.task_name, s.task_id, s.result.decode(), s.log_lines) for s in shown
    ]
    assert printed[0].startswith("using the embedded server already running in ")
    assert "embedded server stopped" not in printed
    # The steps end with the worker's exit, then a blank line and the next steps.
    assert printed[-len(NEXT_COMMANDS) - 3 : -len(NEXT_COMMANDS) - 1] == [WORKER_STOPPED, ""]
    assert printed[-len(NEXT_COMMANDS) - 1 :] == next_steps(*installed_bin())


def test_next_steps_say_how_to_reach_wasmq_only_when_path_does_not(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    hint = next_steps(venv / "bin", on_path=False)
    assert hint[0] == f"wasmq is installed in {venv}/bin: run 'source {venv}/bin/activate', then:"
    assert next_steps(venv / "bin", on_path=True)[0] == "next, try:"
    plain = next_steps(tmp_path, on_path=False)[0]
    assert plain == f"wasmq is installed in {tmp_path}: put it on PATH, then:"
    commands = [line.split("#")[0].strip() for line in hint[1:]]
    assert commands == [command for command, _ in NEXT_COMMANDS]
    assert commands[0] == f"wasmq list --queue {DEMO_QUEUE}"


def test_next_steps_offer_make_shell_for_the_projects_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    monkeypatch.chdir(tmp_path)
    assert next_steps(tmp_path / ".venv" / "bin", on_path=False)[0] == (
        "wasmq is installed in .venv/bin: run 'source .venv/bin/activate' (or 'make shell'), then:"
    )


@pytest.mark.parametrize("command", [command for command, _ in NEXT_COMMANDS])
def test_every_next_step_is_a_command_wasmq_takes(command: str) -> None:
    """Each suggested command parses: its subcommand and every option exist."""
    words = shlex.split(command)
    assert words[0] == "wasmq"
    result = CliRunner().invoke(app, [*words[1:], "--help"], prog_name="wasmq")
    assert result.exit_code == 0, result.output
