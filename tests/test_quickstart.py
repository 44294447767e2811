"""The README's quick start, as a new user meets it: ``make demo`` in a fresh clone.

The clone is the repository's files as they are in the working tree (uncommitted edits
count), committed to a new git repository; ``make demo`` there builds its own venv from
requirements/dev.lock, so this needs the package index, as CI has. Only the toolchains'
build caches are shared with the rest of the suite, so Go and Zig do not start cold.

It is also the suite's run of the demo on a server that was not running: the demo starts
it, shows every task's result and logs, and stops it again; the tasks outlive it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from runtime.demo import DEMO_QUEUE, NEXT_COMMANDS
from runtime.server import embedded
from tests.support.demo_output import WORKER_STOPPED, assert_demo_printed

pytestmark = [pytest.mark.slow, pytest.mark.processes, pytest.mark.toolchain]

ROOT = Path(__file__).resolve().parent.parent
#: This machine's pip configuration may name index locations that do not exist; pip says
#: so on every install. That is the machine's, not the project's.
MACHINE_PIP_WARNING = re.compile(r"^WARNING: Location '[^']*' is ignored: ")
#: The demo's lines that can open its output, after make's and the install's.
DEMO_OPENING = re.compile(r"^(embedded server started in |using the embedded server |registering )")
HINT = "wasmq is installed in .venv/bin: run 'source .venv/bin/activate' (or 'make shell'), then:"


def fresh_clone(dest: Path) -> Path:
    """The repository's files, working-tree contents, committed to a new repository."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is gone
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git = ["git", "-c", "user.name=wasmq", "-c", "user.email=wasmq@example.invalid"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "clone"]):
        subprocess.run([*git, *command], cwd=dest, check=True, capture_output=True)
    return dest


def user_env(toolchain_cache: Path) -> dict[str, str]:
    """A user's shell: no wasmq settings, no make of ours around it, PATH as it is."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WASMQ_", "TASK_QUEUE_", "MAKE", "VIRTUAL_ENV"))
        and k not in ("REDIS_URL", "MFLAGS")
    }
    env["WASMQ_TOOLCHAIN_CACHE"] = str(toolchain_cache)
    return env


def first_screen(lines: list[str]) -> list[str]:
    """What ``make demo`` prints before the demo's own first line."""
    for number, line in enumerate(lines):
        if DEMO_OPENING.match(line):
            return lines[:number]
    raise AssertionError("the demo never started:\n" + "\n".join(lines))


def test_make_demo_in_a_fresh_clone(tmp_path: Path, toolchain_cache: Path) -> None:
    clone = fresh_clone(tmp_path / "wasmq")
    env = user_env(toolchain_cache)
    began = time.monotonic()
    demo = subprocess.run(
        ["make", "demo"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=280,
    )
    took = time.monotonic() - began
    lines = demo.stdout.splitlines()
    assert demo.returncode == 0, demo.stdout
    print(f"make demo in a fresh clone took {took:.0f}s")

    screen = first_screen(lines)
    noisy = [s for s in screen if "warning" in s.lower() and not MACHINE_PIP_WARNING.match(s)]
    assert not noisy, "\n".join(noisy)
    assert not [s for s in screen if s.startswith((".venv/", "test -x", "touch "))], screen
    assert (
        screen[0] == "setting up .venv from requirements/dev.lock (first run only: about a minute)"
    )

    assert lines[len(screen)] == "embedded server started in .wasmq/ (the demo stops it at the end)"
    steps = assert_demo_printed(lines)
    width = max(len(command) for command, _ in NEXT_COMMANDS)
    hint = [HINT, *(f"  {command:<{width}}  # {what}" for command, what in NEXT_COMMANDS)]
    assert lines[-len(hint) :] == hint
    # The demo started the project's server, so it stopped it, after its worker.
    assert lines[-len(hint) - 3 : -len(hint)] == [WORKER_STOPPED, "embedded server stopped", ""]
    assert not embedded.status(clone / ".wasmq").running

    try:
        wasmq = str(clone / ".venv" / "bin" / "wasmq")
        listed = subprocess.run(
            [wasmq, "list", "--queue", "demo", "--json"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        # The server's data outlives it: the next command starts it again and finds them.
        found = {task["id"]: task for task in tasks_of(json.loads(listed.stdout))}
        for task_id in (step.task_id for step in steps):
            task = found.get(task_id)
            assert task, f"{task_id} is not listed"
            assert (task["stage"], task["queue"]) == ("completed", DEMO_QUEUE), task
            assert task["worker"], task
    finally:
        embedded.stop(clone / ".wasmq")


def tasks_of(listing: object) -> list[dict[str, object]]:
    """The task objects of ``wasmq list --json``: the list itself, or the list it holds."""
    if isinstance(listing, dict):
        listing = next(v for v in listing.values() if isinstance(v, list))
    assert isinstance(listing, list)
    return listing
