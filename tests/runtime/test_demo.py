"""The demo's own steps (``make demo``) against the private server: every printed result
and log line is what the handlers in tasks/ produce."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.demo import CRON_RUNS, run_demo
from runtime.settings import Settings

pytestmark = [pytest.mark.toolchain, pytest.mark.processes, pytest.mark.slow]


@pytest.fixture(scope="session")
def toolchain_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / "toolchain-cache"
    path.mkdir(exist_ok=True)
    return path


def test_demo_steps_print_results_and_logs(settings: Settings, toolchain_cache: Path) -> None:
    printed: list[str] = []
    shown = run_demo(settings, out=printed.append, toolchain_cache=toolchain_cache)

    expected = [("immediate", "task_1", "demo", "Go"), ("scheduled", "task_1_c", "later", "C")]
    expected += [(f"cron run {n}", "task_1_wat", "cron", "WAT") for n in range(1, CRON_RUNS + 1)]
    assert [(s.label, s.task_name) for s in shown] == [(e[0], e[1]) for e in expected]
    for item, (_, _, name, language) in zip(shown, expected, strict=True):
        assert json.loads(item.result) == {"message": f"Hello, {name}!"}
        assert len(item.log_lines) == 1
        assert item.log_lines[0].endswith(f" stdout | Hello, {name}! (from task_1 in {language})")
        assert f"  result: {item.result.decode()}" in printed
        assert f"    {item.log_lines[0]}" in printed
    cron_ids = [s.task_id for s in shown[2:]]
    assert all(i.startswith("demo-cron:") for i in cron_ids)
    assert len(set(cron_ids)) == CRON_RUNS
    assert printed[-1] == "worker stopped (exit code 0)"
    assert any(line.startswith("cron entry demo-cron removed") for line in printed)
