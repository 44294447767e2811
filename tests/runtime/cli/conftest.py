"""``wasmq_main``: the console script's ``main()`` run in this process, as a user runs it.

CliRunner calls the app, not ``main()``, so what ``main()`` adds (one line per error,
the exit codes) is tested through this fixture instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from runtime.cli import main


@dataclass
class Ran:
    """What one ``main()`` call did: its exit code and its two streams."""

    code: int
    stdout: str
    stderr: str


Main = Callable[..., Ran]


@pytest.fixture
def wasmq_main(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Main]:
    """``wasmq_main("list", ...)`` runs ``main()`` with that command line, in ``tmp_path``
    with private dirs; give ``redis_url`` to reach a server (none is started for you)."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith(("WASMQ_", "TASK_QUEUE_")) or key == "REDIS_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("WASMQ_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WASMQ_MODULE_DIR", str(tmp_path / "modules"))
    # main() configures logging to the captured stderr, which closes after the test.
    logging = structlog.get_config() if structlog.is_configured() else None

    def run(*args: str, redis_url: str | None = None) -> Ran:
        argv = ["wasmq", *(["--redis-url", redis_url] if redis_url else []), *args]
        monkeypatch.setattr(sys, "argv", argv)
        capsys.readouterr()
        with pytest.raises(SystemExit) as ended:
            main()
        out, err = capsys.readouterr()
        code = ended.value.code
        return Ran(code if isinstance(code, int) else 1, out, err)

    try:
        yield run
    finally:
        if logging is None:
            structlog.reset_defaults()
        else:
            structlog.configure(**logging)
