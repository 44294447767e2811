"""The guard of the test tiers: a test that starts or signals processes must carry the marker.

``make test-fast`` deselects tests marked ``toolchain``, ``processes`` or ``slow``; it stays
fast, and runs without the system deps, only while every test that spawns is marked. Python's
audit hooks see each spawn and signal, so an unmarked test fails at its first one, in every
run, rather than quietly slowing the fast tier down.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

#: What :func:`install`'s wrapper of ``start`` checks: the spawn method raises no audit event.
PROCESS_START = "multiprocessing.Process.start"
SPAWN_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.posix_spawn",
        "os.spawn",
        "os.exec",
        "os.fork",
        "os.forkpty",
        PROCESS_START,
    }
)
SIGNAL_EVENTS = frozenset({"os.kill", "os.killpg"})
#: Where a spawn comes from when it runs a toolchain (or bubblewrap around one).
TOOLCHAIN_PACKAGE = "compiler"
#: Standard modules that run a program to answer a question about the host: ``ctypes.util``
#: runs ldconfig to find a library (the ticker, on an old glibc), ``platform.architecture``
#: runs file (croniter asks on import). Any tier may ask; no test runs those processes.
LOOKUP_PACKAGES = frozenset({"ctypes", "platform"})


class UnmarkedSpawn(Exception):
    """A test started or signalled a process without the marker that says it does."""


_test = ""
_markers: frozenset[str] | None = None
_installed = False


@contextmanager
def watching(test: str, markers: frozenset[str] | None) -> Iterator[None]:
    """Refuse, while it runs, the spawns and signals that ``markers`` do not allow; None
    refuses nothing."""
    global _test, _markers
    outer = _test, _markers
    _test, _markers = test, markers
    try:
        yield
    finally:
        _test, _markers = outer


@contextmanager
def unwatched() -> Iterator[None]:
    """For what every tier shares, such as the session's server: whichever test comes first
    starts it, whichever comes last stops it."""
    with watching("", None):
        yield


def needed_marker(event: str, args: tuple[Any, ...]) -> str | None:
    """The marker a test needs to cause audit ``event``, or None when it needs none."""
    if event in SIGNAL_EVENTS:
        if args[1] == 0:
            return None  # signal 0 only asks whether a process is alive
    elif event not in SPAWN_EVENTS:
        return None
    callers = _calling_packages()
    if callers & LOOKUP_PACKAGES:
        return None
    return "toolchain" if TOOLCHAIN_PACKAGE in callers else "processes"


def _calling_packages() -> set[str]:
    """The top-level packages of the modules on the stack."""
    packages = set()
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        packages.add(str(frame.f_globals.get("__name__", "")).partition(".")[0])
        frame = frame.f_back
    return packages


def _check(event: str, args: tuple[Any, ...]) -> None:
    if _markers is None:
        return
    needed = needed_marker(event, args)
    if needed is not None and needed not in _markers:
        raise UnmarkedSpawn(f"{_test} causes {event} but is not marked {needed}")


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Called for every audited event (imports, opens, ...): the cheap tests first.
    if _markers is not None and (event in SPAWN_EVENTS or event in SIGNAL_EVENTS):
        _check(event, args)


def _checked_start(start: Callable[[BaseProcess], None]) -> Callable[[BaseProcess], None]:
    def checked(process: BaseProcess) -> None:
        _check(PROCESS_START, (process,))
        start(process)

    return checked


def install() -> None:
    """Watch spawns and signals for the rest of this interpreter's life (audit hooks stay)."""
    global _installed
    if _installed:
        return
    _installed = True
    sys.addaudithook(_audit)
    BaseProcess.start = _checked_start(BaseProcess.start)  # type: ignore[method-assign, assignment]
