"""Runs a module's ``_initialize`` once, inside the sandbox's limits, and reads its state.

The module runs with the same WASI and ``wasmq`` host functions as a task (so the same
containment: the wall-time deadline checked by wasm and by every host call, the memory
limit, the table and instance limits), with no payload, no capabilities, and two inputs
made reproducible:

- clocks are virtual: each starts at a fixed point and advances 1 µs per read, so a
  snapshot's monotonic time is always earlier than any task's (tasks read the host's
  monotonic clock, counted from boot);
- ``random_get`` reads a stream derived from a key, so two runs with the same key see
  the same bytes; :mod:`runtime.snapshot` runs the initializer again with another key,
  and with shifted clocks, to learn whether the state it keeps came from them.

Anything but a clean return (a trap, a timeout, ``proc_exit``, ``wasmq.fail``, output on
stdout or stderr) is a :class:`NotSnapshotted`: the module then runs as built, with its
initializer in every task, as before.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

import wasmtime

from runtime.sandbox import capture, failures, host, raw, ticker, wasi
from runtime.sandbox.capture import TaskIO
from runtime.sandbox.engine import get_engine
from runtime.sandbox.exports import INITIALIZE, MEMORY
from runtime.sandbox.limits import MAX_TABLES, TABLE_ELEMENTS, TaskLimits
from runtime.snapshot.binary import F32, F64, I32, I64

#: Where the virtual clocks start: monotonic at 1 ms, the wall clock at 2025-01-01.
MONOTONIC_START = 1_000_000
REALTIME_START = 1_735_689_600 * 1_000_000_000
#: How far each read advances a virtual clock (ns).
CLOCK_STEP = 1_000
_PACK = {I32: "<i", I64: "<q", F32: "<f", F64: "<d"}
_M32 = 0xFFFFFFFF


class NotSnapshotted(Exception):
    """Why a module is run as built instead of from a snapshot (one line)."""


@dataclass
class State:
    """What ``_initialize`` left behind: linear memory and the mutable globals."""

    memory: bytes
    #: Global index -> the value's little-endian bytes.
    globals: dict[int, bytes]
    init_ms: float = 0.0


class _InitIO(TaskIO):
    """A task's IO plus the reproducible clock and random stream of one run."""

    __slots__ = ("clock_shift", "entropy", "reads", "taken")

    def __init__(self, task_name: str, limits: TaskLimits, entropy: bytes, shift: int) -> None:
        super().__init__(task_name, 0, time.monotonic() + limits.timeout, None, _backend())
        self.entropy = entropy
        self.clock_shift = shift
        self.reads = 0
        self.taken = 0


def _backend() -> raw.Backend:
    return raw.backend("auto")


def _clock_time_get(caller: Any, vals: Any) -> int:
    io = cast(_InitIO, capture.current())
    clock = vals[0].i32
    if clock not in (0, 1, 2, 3):
        vals[0].i32 = wasi.EINVAL
        return 0
    base, size = wasi.memory_span(caller)
    out = vals[2].i32 & _M32
    wasi.check_span(size, out, 8)
    io.reads += 1
    start = REALTIME_START if clock == 0 else MONOTONIC_START
    ctypes.c_uint64.from_address(base + out).value = start + io.clock_shift + io.reads * CLOCK_STEP
    vals[0].i32 = wasi.SUCCESS
    return 0


def _random_get(caller: Any, vals: Any) -> int:
    io = cast(_InitIO, capture.current())

    def stream(piece: int) -> bytes:
        block = hashlib.shake_256(io.entropy + struct.pack("<Q", io.taken)).digest(piece)
        io.taken += 1
        return block

    return wasi.fill_random(caller, vals, stream)


_OVERRIDES = {"clock_time_get": _clock_time_get, "random_get": _random_get}
_linker: wasmtime.Linker | None = None
_lock = threading.Lock()


def _get_linker() -> wasmtime.Linker:
    global _linker
    with _lock:
        if _linker is None:
            backend = _backend()
            linker = wasmtime.Linker(get_engine(False))
            wasi.define(linker, backend)
            host.define(linker, backend)
            linker.allow_shadowing = True
            types = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64()}
            for name, func in _OVERRIDES.items():
                params, results = wasi.signature(name)
                backend.define(
                    linker,
                    wasi.MODULE,
                    name,
                    [types[p] for p in params],
                    [types[r] for r in results],
                    wasi.guarded(name, func),
                )
            _linker = linker
        return _linker


@dataclass
class Run:
    """One run of the initializer: the instrumented module and where its globals are."""

    module: wasmtime.Module
    task_name: str
    limits: TaskLimits
    #: Global index -> (the export naming it, its value type).
    globals: dict[int, tuple[str, int]] = field(default_factory=dict)

    def state(self, entropy: bytes, clock_shift: int = 0) -> State:
        """Instantiate, run ``_initialize`` and read memory and globals."""
        io = _InitIO(self.task_name, self.limits, entropy, clock_shift)
        store = wasmtime.Store(get_engine(False))
        store.set_limits(
            memory_size=self.limits.memory,
            table_elements=TABLE_ELEMENTS,
            instances=1,
            tables=MAX_TABLES,
            memories=1,
        )
        store.set_epoch_deadline(ticker.deadline_ticks(self.limits.timeout))
        ticker.acquire()
        capture.enter(io)
        ticker.begin()
        started = time.perf_counter()
        try:
            instance = _get_linker().instantiate(store, self.module)
            exported = instance.exports(store)
            init = exported[INITIALIZE.name]
            assert isinstance(init, wasmtime.Func)
            init(store)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            raise NotSnapshotted(_why(exc, io, self.limits.timeout)) from None
        finally:
            ticker.end()
            capture.enter(None)
            ticker.release()
        init_ms = (time.perf_counter() - started) * 1000.0
        _check_clean(io)
        memory = exported[MEMORY]
        assert isinstance(memory, wasmtime.Memory)
        data = ctypes.string_at(memory.data_ptr(store), memory.data_len(store))
        values = {}
        for index, (export, kind) in self.globals.items():
            g = exported[export]
            assert isinstance(g, wasmtime.Global)
            value = g.value(store)
            if kind in (F32, F64) and isinstance(value, float) and math.isnan(value):
                raise NotSnapshotted(f"global {index} holds NaN after its initialization")
            values[index] = struct.pack(_PACK[kind], value)
        return State(data, values, init_ms)


def _why(exc: Exception, io: TaskIO, timeout: float) -> str:
    if io.timed_out or "interrupt" in str(exc):
        return f"its initialization ran past the task time limit ({timeout:g} s)"
    if io.exit_code is not None:
        return f"its initialization exited with code {io.exit_code}"
    if io.host_error:
        return f"its initialization failed in the host: {io.host_error}"
    return f"its initialization failed: {failures.reason(exc)}"


def _check_clean(io: TaskIO) -> None:
    if io.exit_code is not None:
        raise NotSnapshotted(f"its initialization exited with code {io.exit_code}")
    if io.handler_error is not None:
        raise NotSnapshotted("its initialization reported an error (wasmq.fail)")
    if io.kept or io.dropped:
        raise NotSnapshotted(
            "its initialization writes output, which a snapshot would drop from every task"
        )
