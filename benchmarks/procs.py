"""Worker processes, each command in its own process group, all killed on the way out.

Every group started here is remembered until it is stopped, so ``stop_all`` (run from
``finally`` and at exit, Ctrl-C included) leaves no worker behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

_live: dict[int, subprocess.Popen[bytes]] = {}


def start(
    command: list[str], *, cwd: Path, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _live[proc.pid] = proc
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM the group, then SIGKILL whatever is left of it (forked children too)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    _live.pop(proc.pid, None)


def stop_all() -> None:
    for proc in list(_live.values()):
        stop(proc)


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


atexit.register(stop_all)
signal.signal(signal.SIGTERM, _terminated)
