"""The process-wide epoch ticker: wall-time limits are counted in its ticks.

Engines are process-wide, so the ticker is too: one daemon thread advances the epoch of
every engine flavour every :data:`TICK` seconds, however many sandboxes exist (two
tickers would make every deadline come twice as fast). A store's deadline is set in
ticks, so a task stops between ``timeout`` and ``timeout + TICK`` after it started.
"""

from __future__ import annotations

import math
import os
import threading

from runtime.sandbox.engine import get_engine

TICK = 0.005

_lock = threading.Lock()
_users = 0
_stop: threading.Event | None = None


def deadline_ticks(timeout: float) -> int:
    """Ticks after the current epoch that make a deadline ``timeout`` seconds away."""
    return math.ceil(timeout / TICK) + 1


def _run(stop: threading.Event) -> None:
    engines = (get_engine(False), get_engine(True))
    while not stop.wait(TICK):
        for engine in engines:
            engine.increment_epoch()


def acquire() -> None:
    """Starts the ticker for the first user."""
    global _users
    with _lock:
        _users += 1
        if _stop is None:
            _start()


def _start() -> None:
    global _stop
    _stop = threading.Event()
    threading.Thread(target=_run, args=(_stop,), name="wasmq-epoch-ticker", daemon=True).start()


def release() -> None:
    """Stops the ticker when its last user is gone."""
    global _users, _stop
    with _lock:
        _users = max(_users - 1, 0)
        if _users == 0 and _stop is not None:
            _stop.set()
            _stop = None


def _after_fork() -> None:
    # The thread did not survive the fork; its users did.
    global _lock, _stop
    _lock = threading.Lock()
    if _stop is not None:
        _stop = None
        _start()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
