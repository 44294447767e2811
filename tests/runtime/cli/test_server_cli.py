"""One embedded server per project: commands run from any subdirectory share it, one run
outside any project uses the per-user one, a new empty server is announced once, and
``wasmq server status`` lists every server of the user."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner, Result

from runtime.cli import app
from runtime.server import embedded, roster
from tests.support.paths import TASKS

pytestmark = pytest.mark.processes

NEW_SERVER = "wasmq: started a new embedded server in "

Invoke = Callable[..., Result]


@pytest.fixture
def user_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A per-user root of this test alone, and no wasmq setting in the environment."""
    for name in list(os.environ):
        if name.startswith(("WASMQ_", "TASK_QUEUE_")) or name == "REDIS_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "wasmq"


@pytest.fixture
def wasmq(user_state: Path) -> Iterator[Invoke]:
    """``wasmq(*args)`` runs the CLI in this process, in the working directory; every
    embedded server started meanwhile is stopped at the end."""
    logging = structlog.get_config() if structlog.is_configured() else None

    def invoke(*args: str) -> Result:
        try:
            return CliRunner().invoke(app, list(args), catch_exceptions=False)
        finally:
            # The CLI logs to the runner's stderr, which closes after each call.
            if logging is None:
                structlog.reset_defaults()
            else:
                structlog.configure(**logging)

    try:
        yield invoke
    finally:
        for state_dir in roster.recorded():
            embedded.stop(state_dir)


def project(base: Path, name: str, marker: str = ".git") -> Path:
    root = base / name
    (root / marker).mkdir(parents=True)
    (root / "sub" / "deeper").mkdir(parents=True)
    return root.resolve()


def current(result: Result) -> dict[str, object]:
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def test_a_subdirectory_uses_the_project_server_modules_and_tasks(
    wasmq: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path, "proj")
    source = root / "echo.wat"
    source.write_bytes((TASKS / "echo.wat").read_bytes())
    monkeypatch.chdir(root)
    registered = wasmq("register", "echo.wat")
    assert registered.exit_code == 0, registered.output
    assert registered.stderr.count(NEW_SERVER) == 1
    assert f"{NEW_SERVER}{root / '.wasmq'} (empty: register tasks with" in registered.stderr

    monkeypatch.chdir(root / "sub" / "deeper")
    listed = wasmq("tasks")
    assert listed.exit_code == 0, listed.output
    assert "echo" in listed.stdout
    assert NEW_SERVER not in listed.stderr
    status = current(wasmq("server", "status", "--json"))["current"]
    assert isinstance(status, dict)
    assert status["running"] is True
    assert status["state_dir"] == str(root / ".wasmq")
    assert status["socket"] == str(root / ".wasmq" / "valkey.sock")
    assert (root / "wasm_task_functions" / "echo.wasm").is_file()
    assert not (root / "sub" / "deeper" / ".wasmq").exists()
    assert not (root / "sub" / "deeper" / "wasm_task_functions").exists()


def test_outside_any_project_the_per_user_server_announced_once(
    wasmq: Invoke, user_state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for parent in tmp_path.resolve().parents:
        if (parent / ".wasmq").is_dir() or (parent / ".git").exists():
            pytest.skip(f"needs a temporary directory outside any project; {parent} is one")
    (tmp_path / "lone").mkdir()
    monkeypatch.chdir(tmp_path / "lone")
    state_dir = user_state / ".wasmq"
    first = wasmq("server", "start")
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == f"unix://{state_dir / 'valkey.sock'}"
    assert first.stderr.count(NEW_SERVER) == 1
    assert str(state_dir) in first.stderr
    again = wasmq("server", "start")
    assert again.exit_code == 0 and NEW_SERVER not in again.stderr
    # Stopped and started again, it holds data: not new, so quiet.
    assert wasmq("server", "stop").stdout.strip() == "stopped"
    restarted = wasmq("server", "start")
    assert restarted.exit_code == 0, restarted.output
    assert NEW_SERVER not in restarted.stderr
    assert embedded.status(state_dir).running
    assert not (tmp_path / "lone" / ".wasmq").exists()


def test_status_lists_the_servers_of_two_projects_and_marks_this_ones(
    wasmq: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = project(tmp_path, "first"), project(tmp_path, "second", ".wasmq")
    for root in (first, second):
        monkeypatch.chdir(root / "sub")
        assert wasmq("server", "start").exit_code == 0

    monkeypatch.chdir(first / "sub" / "deeper")
    data = current(wasmq("server", "status", "--json"))
    servers = data["servers"]
    assert isinstance(servers, list)
    listed = {s["state_dir"]: s for s in servers}
    assert set(listed) == {str(first / ".wasmq"), str(second / ".wasmq")}
    assert listed[str(first / ".wasmq")]["used_here"] is True
    assert listed[str(second / ".wasmq")]["used_here"] is False
    assert all(s["running"] and s["pid"] and s["keys"] is not None for s in servers)

    text = wasmq("server", "status")
    assert text.exit_code == 0, text.output
    rows = [line for line in text.stdout.splitlines() if ".wasmq" in line and "pid" not in line]
    assert sorted(row[0] for row in rows) == [" ", "*"]
    assert next(row for row in rows if row.startswith("*")).split()[1] == str(first / ".wasmq")

    # A server stopped leaves the list, and the roster drops a server found dead.
    monkeypatch.chdir(second)
    assert wasmq("server", "stop").stdout.strip() == "stopped"
    monkeypatch.chdir(first)
    after = current(wasmq("server", "status", "--json"))["servers"]
    assert isinstance(after, list)
    assert [s["state_dir"] for s in after] == [str(first / ".wasmq")]
    assert roster.recorded() == [first / ".wasmq"]


def test_status_of_a_project_without_a_server_exits_3_and_lists_the_others(
    wasmq: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, idle = project(tmp_path, "running"), project(tmp_path, "idle")
    monkeypatch.chdir(running)
    assert wasmq("server", "start").exit_code == 0
    monkeypatch.chdir(idle / "sub")
    text = wasmq("server", "status")
    assert text.exit_code == 3
    assert f"not running  (state dir {idle / '.wasmq'})" in text.stdout
    assert f"  {running / '.wasmq'}" in text.stdout
    data = current(wasmq("server", "status", "--json"))
    assert data["current"] == {**data["current"], "running": False}  # type: ignore[dict-item]
    assert [s["state_dir"] for s in data["servers"]] == [str(running / ".wasmq")]  # type: ignore[attr-defined, index]


def test_env_file_of_the_project_places_the_server_beside_it(
    wasmq: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path, "proj")
    (root / ".env").write_text("WASMQ_STATE_DIR=var/server\n")
    monkeypatch.chdir(root / "sub" / "deeper")
    started = wasmq("server", "start")
    assert started.exit_code == 0, started.output
    assert f"{NEW_SERVER}{root / 'var' / 'server'} " in started.stderr
    assert embedded.status(root / "var" / "server").running
    assert not (root / ".wasmq").exists()
