"""Shell completion through click's completion protocol, as the installed script calls it:
``_WASMQ_COMPLETE=complete_bash`` with ``COMP_WORDS`` and ``COMP_CWORD``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from runtime.cli import app
from runtime.queue import keys
from runtime.queue.task import Stage
from runtime.settings import Settings
from tests.support.cli import cli_env, run_cli

DIGEST = "ab" * 32


def complete(line: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash completion offers for the last word of ``line`` (empty for a new word)."""
    words = line.split(" ")
    result = CliRunner().invoke(
        app,
        [],
        prog_name="wasmq",
        env={
            "_WASMQ_COMPLETE": "complete_bash",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
            **(env or {}),
        },
    )
    assert result.exit_code == 0, result.output
    return result.stdout.split()


@pytest.fixture
def seeded(redis_client: redis.Redis) -> None:
    for name in ("task_1", "task_2", "resize"):
        redis_client.hset(keys.TASK_REGISTRY, name, json.dumps({"digest": DIGEST, "version": 1}))
    redis_client.sadd(keys.QUEUES, "fast", "slow")


def test_task_names_complete_from_redis(settings: Settings, seeded: None) -> None:
    url = settings.redis_url
    assert complete(f"wasmq --redis-url {url} enqueue ta") == ["task_1", "task_2"]
    assert complete(f"wasmq --redis-url {url} enqueue r") == ["resize"]
    assert complete(f"wasmq --redis-url {url} tasks rm task_") == ["task_1", "task_2"]
    assert complete("wasmq enqueue ta", env={"REDIS_URL": url}) == ["task_1", "task_2"]


def test_queue_names_and_choices_complete(settings: Settings, seeded: None) -> None:
    url = settings.redis_url
    assert complete(f"wasmq --redis-url {url} list --queue ") == ["default", "fast", "slow"]
    assert complete("wasmq list --stage ") == [s.value for s in Stage]
    assert complete("wasmq list --stage f") == ["failed"]
    assert complete("wasmq --log-format ") == ["pretty", "json"]
    assert complete("wasmq enq") == ["enqueue"]


def test_cron_ids_complete(settings: Settings, redis_client: redis.Redis, seeded: None) -> None:
    from runtime.client import Client

    client = Client(settings=settings, client=redis_client)
    entry = client.cron("task_1", "@hourly", b"", id="nightly-report")
    assert complete(f"wasmq --redis-url {settings.redis_url} cron rm ni") == [entry.id]


def test_completion_without_a_server_is_silent_and_empty(tmp_path: Path) -> None:
    # Nothing listens there; the embedded server is not started for a completion.
    dead = f"unix://{tmp_path}/nothing.sock"
    assert complete(f"wasmq --redis-url {dead} enqueue ta") == []
    assert complete("wasmq enqueue ta", env={"WASMQ_STATE_DIR": str(tmp_path / "s")}) == []
    assert not (tmp_path / "s").exists()


@pytest.mark.processes
def test_the_console_script_completes_against_a_real_server(
    redis_url: str, seeded: None, tmp_path: Path
) -> None:
    env: dict[str, Any] = cli_env(redis_url, tmp_path)
    env.update(_WASMQ_COMPLETE="complete_bash", COMP_WORDS="wasmq enqueue ta", COMP_CWORD="2")
    proc = run_cli(env=env)
    assert (proc.returncode, proc.stdout.split(), proc.stderr) == (0, ["task_1", "task_2"], "")
    shown = run_cli("--show-completion", "bash", env=cli_env(redis_url, tmp_path))
    assert shown.returncode == 0 and "_WASMQ_COMPLETE=complete_bash" in shown.stdout
