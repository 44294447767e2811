"""The process-wide epoch ticker: wall-time limits are counted in its ticks.

Engines are process-wide, so the ticker is too: one ticker per engine flavour, however
many sandboxes exist (two tickers would make every deadline come twice as fast). A
store's deadline is set in ticks, so wasm code stops between ``timeout`` and
``timeout + TICK`` after it started.

The ticker must not need the GIL: a handler that calls host functions in a tight loop
holds the GIL most of the time, and a Python thread that has to win it back on every
tick falls behind, stretching a 10 s limit to 16 s. On Linux the tick is a POSIX timer
whose expiry calls ``wasmtime_engine_increment_epoch`` directly on a libc thread
(``SIGEV_THREAD``), so no Python code runs per tick at all. Where that is not possible
a Python thread ticks instead and catches up the ticks it missed, so a late tick never
makes a deadline later. Host functions also check the deadline themselves
(:mod:`runtime.sandbox.wasi`), which covers the time a task spends inside the host.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import sys
import threading
import time
from typing import Any

from runtime.logging_config import get_logger
from runtime.sandbox import raw
from runtime.sandbox.engine import get_engine

log = get_logger("sandbox")

#: Tick length (s). Each tick of the native ticker costs a short-lived libc thread, so
#: ticks are as long as the deadline precision allows (limits hold within 100 ms).
TICK = raw.TICK

_lock = threading.Lock()
_users = 0
#: Tasks running now, and whether the native timers are disarmed (see :func:`pause`).
_running = 0
_paused = False
_stop: threading.Event | None = None
_timers: dict[bool, tuple[Any, Any]] = {}
#: "native" (POSIX timers on libc threads) or "thread" (a Python thread); for tests/logs.
mode = ""


def deadline_ticks(timeout: float) -> int:
    """Ticks after the current epoch that make a deadline ``timeout`` seconds away."""
    return math.ceil(timeout / TICK) + 1


# -- native: POSIX timers that call wasmtime directly ---------------------------------------

_SIGEV_THREAD = 2
_CLOCK_MONOTONIC = 1


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


class _SigevThread(ctypes.Structure):
    _fields_ = (("function", ctypes.c_void_p), ("attribute", ctypes.c_void_p))


class _SigevUnion(ctypes.Union):
    _fields_ = (("pad", ctypes.c_int * 12), ("thread", _SigevThread))


class _Sigevent(ctypes.Structure):
    # glibc/musl on 64-bit Linux: union sigval, signo, notify, then the 48-byte union.
    _fields_ = (
        ("value", ctypes.c_void_p),
        ("signo", ctypes.c_int),
        ("notify", ctypes.c_int),
        ("un", _SigevUnion),
    )


def _libc() -> Any:
    lib = ctypes.CDLL(None, use_errno=True)
    if hasattr(lib, "timer_create"):
        return lib
    # Only an old glibc keeps timers in librt; finding it runs ldconfig, so not first.
    rt = ctypes.util.find_library("rt")
    if rt is None:
        return None
    lib = ctypes.CDLL(rt, use_errno=True)
    return lib if hasattr(lib, "timer_create") else None


def _native_supported() -> bool:
    # ``union sigval`` is passed like a pointer (one integer register) on these ABIs,
    # which is what lets the engine pointer reach wasmtime's one-argument function.
    return (
        sys.platform.startswith("linux")
        and ctypes.sizeof(ctypes.c_void_p) == 8
        and ctypes.sizeof(_Sigevent) == 64
        and raw.increment_epoch_address() is not None
    )


def _start_native(fuel: bool) -> bool:
    """A timer ticking the engine of flavour ``fuel``; False when the OS refuses one."""
    libc = _libc()
    if libc is None:
        return False
    libc.timer_create.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    libc.timer_settime.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    libc.timer_delete.argtypes = (ctypes.c_void_p,)
    nsec = int(TICK * 1e9)
    spec = _Itimerspec(_Timespec(0, nsec), _Timespec(0, nsec))
    event = _Sigevent()
    event.value = raw.engine_address(get_engine(fuel))
    event.notify = _SIGEV_THREAD
    event.un.thread.function = raw.increment_epoch_address()
    timer = ctypes.c_void_p()
    if libc.timer_create(_CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer)) != 0:
        return False
    if libc.timer_settime(timer, 0, ctypes.byref(spec), None) != 0:
        libc.timer_delete(timer)
        return False
    _timers[fuel] = (libc, timer)
    return True


def _arm(on: bool) -> None:
    nsec = int(TICK * 1e9) if on else 0
    spec = _Itimerspec(_Timespec(0, nsec), _Timespec(0, nsec))
    for libc, timer in _timers.values():
        libc.timer_settime(timer, 0, ctypes.byref(spec), None)


def begin() -> None:
    """A task starts: the ticker must tick (it is re-armed if an idle worker paused it)."""
    global _running, _paused
    with _lock:
        _running += 1
        if _paused:
            _arm(True)
            _paused = False


def end() -> None:
    global _running
    with _lock:
        _running = max(_running - 1, 0)


def pause() -> None:
    """Disarms the native timers while no task runs: an idle worker then wakes no thread
    a hundred times a second. Deadlines are set from the epoch a task starts at, so the
    ticks missed while paused change none of them."""
    global _paused
    with _lock:
        if mode == "native" and _running == 0 and not _paused and _timers:
            _arm(False)
            _paused = True


def _stop_native() -> None:
    while _timers:
        _, (libc, timer) = _timers.popitem()
        libc.timer_delete(timer)


def ensure(fuel: bool) -> None:
    """Makes sure the engine of flavour ``fuel`` is ticking (metered tasks are rare, so
    its timer starts with the first one)."""
    if mode == "native" and fuel not in _timers:
        with _lock:
            if mode == "native" and fuel not in _timers and not _start_native(fuel):
                _fall_back()


# -- fallback: a Python thread that catches up -----------------------------------------------


def _run(stop: threading.Event) -> None:
    engines = (get_engine(False), get_engine(True))
    ticked = 0
    started = time.monotonic()
    while not stop.wait(TICK):
        # Count ticks by the clock, not by wake-ups: a wake-up delayed by a busy GIL
        # must not make a deadline later.
        due = int((time.monotonic() - started) / TICK)
        for _ in range(max(due - ticked, 1)):
            for engine in engines:
                engine.increment_epoch()
        ticked = max(due, ticked + 1)


def acquire() -> None:
    """Starts the ticker for the first user."""
    global _users
    with _lock:
        _users += 1
        if _stop is None and not _timers:
            _start()


def _start() -> None:
    global mode
    if _native_supported() and _start_native(False):
        mode = "native"
        return
    _fall_back()


def _fall_back() -> None:
    global _stop, mode
    _stop_native()
    if mode != "thread":
        log.warning(
            "epoch ticker runs on a Python thread: a handler that holds the GIL in host"
            " calls can delay wasm-side deadlines (host calls still check them)"
        )
    mode = "thread"
    _stop = threading.Event()
    threading.Thread(target=_run, args=(_stop,), name="wasmq-epoch-ticker", daemon=True).start()


def release() -> None:
    """Stops the ticker when its last user is gone."""
    global _users, _stop
    with _lock:
        _users = max(_users - 1, 0)
        if _users == 0:
            _stop_native()
            if _stop is not None:
                _stop.set()
                _stop = None


def _after_fork() -> None:
    # Neither the thread nor POSIX timers survive a fork; their users did.
    global _lock, _stop, _running, _paused
    _lock = threading.Lock()
    _running = 0
    _paused = False
    had = _stop is not None or bool(_timers)
    _timers.clear()
    _stop = None
    if had:
        _start()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
