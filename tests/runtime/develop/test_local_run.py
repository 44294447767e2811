"""Local runs: the worker's sandbox and its limits, resolved from enqueue's flags."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from runtime.develop.local_run import resolve_limits, run_once
from runtime.errors import InvalidTask
from runtime.sandbox.engine import get_engine
from runtime.settings import Settings
from tests.support.paths import TASKS, WAT


def settings(**values: str) -> Settings:
    return Settings.load(values, environ={}, env_file=None)


def test_defaults_come_from_the_settings() -> None:
    limits = resolve_limits(settings(task_timeout="7s", memory_limit="32MiB"), None, None)
    assert (limits.timeout, limits.memory) == (7.0, 32 * 1024**2)


def test_requests_are_parsed_like_enqueue_and_clamped_to_the_ceilings() -> None:
    capped = settings(
        task_timeout="1s", max_task_timeout="2s", memory_limit="8MiB", max_memory_limit="64MiB"
    )
    assert resolve_limits(capped, "250ms", "16MiB").timeout == 0.25
    assert resolve_limits(capped, "250ms", "16MiB").memory == 16 * 1024**2
    over = resolve_limits(capped, "1h", "1GiB")
    assert (over.timeout, over.memory) == (2.0, 64 * 1024**2)


@pytest.mark.parametrize(
    ("timeout", "memory", "message"),
    [
        ("soon", None, "invalid timeout: "),
        ("0s", None, "invalid timeout: it must be greater than zero"),
        (None, "lots", "invalid memory limit: "),
    ],
)
def test_bad_values_are_refused(timeout: str | None, memory: str | None, message: str) -> None:
    with pytest.raises(InvalidTask, match=message):
        resolve_limits(settings(), timeout, memory)


def module(path: Path) -> wasmtime.Module:
    return wasmtime.Module(get_engine(False), bytes(wasmtime.wat2wasm(path.read_text())))


def test_run_once_returns_the_outcome_and_the_limits_it_ran_with() -> None:
    config = settings()
    limits = resolve_limits(config, None, None)
    done = run_once(config, module(TASKS / "echo.wat"), "e" * 64, b"hi", limits, task_name="t")
    assert done.outcome.ok and done.outcome.result == b"hi"
    assert done.limits == limits
    assert done.outcome.memory_bytes == 65536
    assert done.wall_ms >= done.outcome.duration_ms > 0


def test_run_once_honours_the_timeout() -> None:
    config = settings()
    limits = resolve_limits(config, "200ms", None)
    spin = module(WAT / "loop_execute.wat")
    done = run_once(config, spin, "f" * 64, b"", limits, task_name="t")
    assert done.outcome.kind == "timeout", done.outcome.message
    assert 200 <= done.outcome.duration_ms < 2000
