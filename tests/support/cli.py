"""Running ``wasmq`` as a user does: a subprocess with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


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


def in_process_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **extra: str) -> dict[str, str]:
    """For the CLI run in this process: work in ``tmp_path``, with no wasmq setting from
    the environment; returns the private dirs' settings to pass to each invocation."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith(("WASMQ_", "TASK_QUEUE_")) or key == "REDIS_URL":
            monkeypatch.delenv(key)
    return {
        "WASMQ_MODULE_DIR": str(tmp_path / "modules"),
        "WASMQ_STATE_DIR": str(tmp_path / "state"),
        "TASK_QUEUE_WASM_LOG_DIR": str(tmp_path / "wasm-logs"),
        **extra,
    }
