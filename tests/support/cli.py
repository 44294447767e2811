"""Running ``wasmq`` as a user does: a process of its own with a clean environment
(forked from tests/support/launcher.py, which has the CLI imported already)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import launcher


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
    """Run ``wasmq ARGS`` in a process of its own (the console script's module), forked
    from the launcher when the environment allows, as ``subprocess.run`` would."""
    command = [sys.executable, "-c", "from runtime.cli import main; main()", *args]
    text = input.decode() if input is not None else None
    if launcher.forkable(env):
        # The launcher forks on the test's behalf: the tiers' guard sees that fork here.
        sys.audit("os.fork")
        code, out, err = launcher.launcher().run(
            list(args), env=env, cwd=cwd, timeout=timeout, input=text
        )
        proc = subprocess.CompletedProcess(command, code, as_text(out), as_text(err))
    else:
        proc = subprocess.run(
            command,
            env=env,
            cwd=cwd,
            capture_output=True,
            timeout=timeout,
            input=text,
            text=True,
        )
    if check and proc.returncode != 0:
        raise AssertionError(f"wasmq {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def as_text(data: bytes) -> str:
    """Output as ``subprocess.run(text=True)`` decodes it: the locale's encoding, universal
    newlines."""
    return io.TextIOWrapper(io.BytesIO(data)).read()


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
