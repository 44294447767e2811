"""Settings precedence (flags > env > .env > defaults) and one-line errors naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import SettingsError
from runtime.project import Project
from runtime.settings import Settings, read_env_file


def test_defaults_match_the_reference_names(tmp_path: Path) -> None:
    s = Settings.load(environ={}, env_file=None, project=Project(tmp_path, "git", None))
    assert s.redis_url is None
    assert s.log_level == "info"
    assert s.log_format == "pretty"
    assert s.save_wasm_logs is False
    # The reference's relative names, in the project root.
    assert s.module_dir == tmp_path / "wasm_task_functions"
    assert s.state_dir == tmp_path / ".wasmq"
    assert s.wasm_log_dir == tmp_path / "runtime-logs" / "wasm"
    assert Settings.state_dir == Path(".wasmq")
    assert s.task_timeout == 30.0
    assert s.memory_limit == 128 * 1024**2


def test_precedence_flag_over_env_over_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# comment\nTASK_QUEUE_LOG_LEVEL=debug\nexport WASMQ_TASK_TIMEOUT='45s'\n"
        'TASK_QUEUE_LOG_FORMAT="json"\n'
    )
    only_file = Settings.load(environ={}, env_file=dotenv)
    assert (only_file.log_level, only_file.task_timeout, only_file.log_format) == (
        "debug",
        45.0,
        "json",
    )
    env = Settings.load(environ={"TASK_QUEUE_LOG_LEVEL": "error"}, env_file=dotenv)
    assert env.log_level == "error"
    assert env.task_timeout == 45.0
    flag = Settings.load(
        {"log_level": "warning"}, environ={"TASK_QUEUE_LOG_LEVEL": "error"}, env_file=dotenv
    )
    assert flag.log_level == "warning"
    unset_flag = Settings.load({"log_level": None}, environ={"TASK_QUEUE_LOG_LEVEL": "error"})
    assert unset_flag.log_level == "error"


def test_reference_bare_host_port_url_is_accepted() -> None:
    s = Settings.load(environ={"REDIS_URL": "localhost:6379"}, env_file=None)
    assert s.redis_url == "redis://localhost:6379"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"REDIS_URL": "http://example"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://host:99999"}, "REDIS_URL"),
        ({"TASK_QUEUE_LOG_FORMAT": "xml"}, "TASK_QUEUE_LOG_FORMAT"),
        ({"TASK_QUEUE_LOG_LEVEL": "loud"}, "TASK_QUEUE_LOG_LEVEL"),
        ({"WASMQ_TASK_TIMEOUT": "-5s"}, "WASMQ_TASK_TIMEOUT"),
        ({"WASMQ_TASK_TIMEOUT": "-5"}, "WASMQ_TASK_TIMEOUT"),
        ({"WASMQ_MEMORY_LIMIT": "lots"}, "WASMQ_MEMORY_LIMIT"),
        ({"TASK_QUEUE_SAVE_WASM_LOGS": "perhaps"}, "TASK_QUEUE_SAVE_WASM_LOGS"),
        ({"WASMQ_QUEUE": "no spaces"}, "WASMQ_QUEUE"),
        ({"WASMQ_MEMORY_LIMIT": "2GiB"}, "WASMQ_MAX_MEMORY_LIMIT"),
    ],
)
def test_invalid_values_name_the_setting(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.load(environ=env, env_file=None)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_invalid_flag_names_the_flag() -> None:
    with pytest.raises(SettingsError, match="--task-timeout"):
        Settings.load({"task_timeout": -1.0}, environ={}, env_file=None)


def test_malformed_dotenv_line_is_reported_with_its_line(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("GOOD=1\nthis line has no equals sign\n")
    with pytest.raises(SettingsError, match=r"\.env:2"):
        read_env_file(dotenv)


@pytest.mark.processes
def test_cli_stops_with_one_line_naming_the_setting(cli) -> None:  # type: ignore[no-untyped-def]
    env = dict(cli.env, TASK_QUEUE_LOG_FORMAT="xml")
    from tests.support.cli import run_cli

    proc = run_cli("server", "status", env=env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "TASK_QUEUE_LOG_FORMAT" in lines[0]
    assert "Traceback" not in proc.stderr


def test_describe_lists_every_setting_once() -> None:
    rows = Settings.describe()
    names = [name for name, _, _ in rows]
    assert len(names) == len(set(names))
    assert {"REDIS_URL", "TASK_QUEUE_WASM_LOG_DIR", "WASMQ_MODULE_DIR", "WASMQ_STATE_DIR"} <= set(
        names
    )
