"""The level a command logs at: warnings for one-shot commands, info for the long-running
ones, more with ``-v``/``-vv``, and an explicit level over all of them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from runtime.cli.context import AppState
from tests.support.logs import restored_logging


@pytest.fixture(autouse=True)
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TASK_QUEUE_LOG_LEVEL", raising=False)
    with restored_logging():
        yield


def level(command: str, verbose: int = 0, flag: str | None = None) -> str:
    state = AppState({"log_level": flag}, verbose=verbose, command=command)
    return state.settings().log_level


@pytest.mark.parametrize(
    ("command", "verbose", "expected"),
    [
        ("list", 0, "warning"),
        ("register", 1, "info"),
        ("enqueue", 2, "debug"),
        ("enqueue", 5, "debug"),
        ("worker", 0, "info"),
        ("scheduler", 0, "info"),
        ("reaper", 0, "info"),
        ("worker", 2, "debug"),
    ],
)
def test_the_default_level_follows_the_command_and_v(
    command: str, verbose: int, expected: str
) -> None:
    assert level(command, verbose) == expected


def test_an_explicit_level_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert level("list", 2, flag="error") == "error"
    assert level("worker", 0, flag="warning") == "warning"
    monkeypatch.setenv("TASK_QUEUE_LOG_LEVEL", "info")
    assert level("list") == "info"
    assert level("worker", 2) == "info"


def test_the_level_reaches_the_logging_configuration() -> None:
    level("list")
    structlog_level = structlog.get_config()["wrapper_class"]
    assert structlog_level is structlog.make_filtering_bound_logger(logging.WARNING)
    assert logging.getLogger().level == logging.WARNING


def test_a_level_in_the_env_file_wins_even_the_default_one(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()  # the project root, where .env is looked for
    (tmp_path / ".env").write_text("TASK_QUEUE_LOG_LEVEL=info\n")
    assert level("list") == "info"
    (tmp_path / ".env").write_text("TASK_QUEUE_LOG_LEVEL=error\n")
    assert level("list", 2) == "error"
    (tmp_path / ".env").write_text("WASMQ_QUEUE=other\n")
    assert level("list") == "warning"
