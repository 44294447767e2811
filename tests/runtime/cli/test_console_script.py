"""The tests run ``wasmq`` as a fork of a launcher that imported the CLI once
(tests/support/launcher.py): a command prints and returns there exactly what the console
script started afresh does, and one that outlasts its time limit is killed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.paths import TASKS

pytestmark = pytest.mark.processes

#: Arguments and stdin: a result read from stdin and a path relative to the working
#: directory, a wasmq error (exit 1) and a usage error (exit 2), each on stderr.
CASES = [
    (("run", "echo.wat", "--payload", "@-"), '{"name": "é"}'),
    (("status", "no-such-task"), None),
    (("enqueue", "--no-such-option"), None),
]


def untimed(text: str) -> str:
    """``wasmq run``'s report without the time the run took."""
    return re.sub(r"time: [\d.]+ ms", "time: _ ms", text)


def test_a_forked_command_is_the_console_script(cli: Any, tmp_path: Path) -> None:
    shutil.copy(TASKS / "echo.wat", tmp_path / "echo.wat")
    codes = []
    for args, stdin in CASES:
        forked = run_cli(*args, env=cli.env, cwd=tmp_path, input=stdin and stdin.encode())
        fresh = subprocess.run(
            [sys.executable, "-c", "from runtime.cli import main; main()", *args],
            env=cli.env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            input=stdin,
        )
        assert (forked.returncode, forked.stdout, untimed(forked.stderr)) == (
            fresh.returncode,
            fresh.stdout,
            untimed(fresh.stderr),
        )
        codes.append(forked.returncode)
    assert codes == [0, 1, 2]


def test_a_command_past_its_time_limit_is_killed(cli: Any) -> None:
    assert cli("register", str(TASKS / "echo.wat")).returncode == 0
    assert cli("enqueue", "echo", "--payload", "{}", "--id", "unserved").returncode == 0
    # No worker serves it: the wait would last a minute.
    with pytest.raises(subprocess.TimeoutExpired):
        cli("result", "unserved", "--wait", "--timeout", "60", timeout=1)
