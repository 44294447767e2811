"""The test tiers: the markers are registered and enforced, and a test that starts, signals
or compiles without its marker fails (tests/support/tiers.py), so `make test-fast` stays fast."""

from __future__ import annotations

import ctypes.util
import multiprocessing
import os
import platform
import signal
import subprocess
from pathlib import Path

import pytest

from compiler.base import probe
from compiler.isolation import Sandbox
from tests.support.cli import cli_env, run_cli
from tests.support.paths import ROOT
from tests.support.tiers import UnmarkedSpawn

TIERS = {"toolchain", "processes", "slow"}
#: Above the largest pid_max Linux allows: a signal to it reaches no process.
NO_PROCESS = 2**22 + 1


def test_the_tier_markers_are_registered_and_unknown_markers_refused(
    pytestconfig: pytest.Config,
) -> None:
    registered = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert registered >= TIERS
    assert "--strict-markers" in pytestconfig.getini("addopts")


def test_make_test_fast_deselects_every_tier() -> None:
    makefile = (ROOT / "Makefile").read_text()
    rest = makefile.partition("\ntest-fast:")[2]
    assert rest, "the Makefile has no test-fast target"
    recipe = rest.splitlines()[1].strip()
    assert (
        recipe == '$(BIN)/pytest -m "not toolchain and not processes and not slow" $(PYTEST_ARGS)'
    )


def test_an_unmarked_test_cannot_start_a_process() -> None:
    with pytest.raises(UnmarkedSpawn, match=r"subprocess\.Popen but is not marked processes"):
        subprocess.run(["true"], check=True)


def test_an_unmarked_test_cannot_start_a_multiprocessing_child() -> None:
    child = multiprocessing.get_context("spawn").Process(target=print)
    with pytest.raises(UnmarkedSpawn, match="not marked processes"):
        child.start()


def test_an_unmarked_test_cannot_signal_a_process_but_may_probe_one() -> None:
    os.kill(os.getpid(), 0)
    with pytest.raises(UnmarkedSpawn, match=r"os\.kill but is not marked processes"):
        os.kill(NO_PROCESS, signal.SIGTERM)


def test_an_unmarked_test_cannot_run_the_cli(tmp_path: Path) -> None:
    # Forked by the shared launcher, the command is still this test's process.
    with pytest.raises(UnmarkedSpawn, match=r"os\.fork but is not marked processes"):
        run_cli("--version", env=cli_env(None, tmp_path))


def test_the_standard_librarys_host_lookups_need_no_marker() -> None:
    # platform runs file (croniter asks on import), ctypes.util runs ldconfig (the ticker asks).
    assert platform.architecture()[0] in {"32bit", "64bit"}
    ctypes.util.find_library("rt")


@pytest.mark.processes
def test_a_toolchain_run_needs_the_toolchain_marker_even_in_the_processes_tier() -> None:
    with pytest.raises(UnmarkedSpawn, match="not marked toolchain"):
        probe(["true"], sandbox=Sandbox(None), env={})


@pytest.mark.processes
def test_a_marked_test_starts_processes() -> None:
    assert subprocess.run(["true"], check=False).returncode == 0
