"""The Sandbox: runs one task in a fresh, bounded wasm instance and never raises.

Per task: a fresh ``Store`` (memory limit, epoch deadline, optional fuel), a new instance
from a cached ``InstancePre`` (imports are resolved once per module), then
``_initialize`` (when exported), ``alloc(len)``, the payload copied in, ``execute``,
and the result copied out after a bounds check. Nothing survives from one task to the
next but the compiled module.

Two paths:

- isolated tasks (the usual case) link against our own preview1 functions
  (:mod:`runtime.sandbox.wasi`): output goes straight into the task's capture buffer;
- tasks whose module the operator granted capabilities (directories, environment) use
  wasmtime's complete WASI, with stdout/stderr through its output callbacks (slower).

Retry convention for handlers (see :mod:`runtime.sandbox.outcome`): ``proc_exit(75)``
(EX_TEMPFAIL) asks for a retry; any other non-zero exit code fails terminally. Traps
and timeouts are retried; memory_limit, bad_result and instantiate failures are not.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import wasmtime

from runtime.log import get_logger
from runtime.sandbox import capture, raw, ticker, wasi
from runtime.sandbox.capture import TaskIO
from runtime.sandbox.engine import get_engine
from runtime.sandbox.failures import bad_result, classify, instantiate_failed, size_text
from runtime.sandbox.limits import Capabilities, TaskLimits
from runtime.sandbox.outcome import STDERR, STDOUT, LogChunk, Outcome
from runtime.settings import Settings

log = get_logger("sandbox")

#: Prepared modules kept per process.
PREPARED_SLOTS = 512
_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF

_SIGNATURES = {
    "alloc": ((("i32",), ("i32",)), True),
    "execute": ((("i32", "i32"), ("i64",)), True),
    "_initialize": (((), ()), False),
}


@dataclass
class Prepared:
    """A module ready to instantiate, or why it cannot be."""

    pre: wasmtime.InstancePre | None
    problem: str = ""
    has_initialize: bool = False


def _check_exports(module: wasmtime.Module) -> tuple[str, bool]:
    """('' or the problem, has _initialize): calls below skip type checks, so check here."""
    exports = {e.name: e.type for e in module.exports}
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        return "it does not export a memory named 'memory'", False
    for name, ((params, results), required) in _SIGNATURES.items():
        ty = exports.get(name)
        if ty is None and not required:
            continue
        if not isinstance(ty, wasmtime.FuncType):
            return f"it does not export the function {name}", False
        got = (tuple(str(p) for p in ty.params), tuple(str(r) for r in ty.results))
        if got != (params, results):
            want = f"({', '.join(params)}) -> ({', '.join(results)})"
            return f"its {name} is not {want}", False
    return "", "_initialize" in exports


class Sandbox:
    """Runs tasks; one per worker process (thread-safe, tasks may run on several threads)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._prepared: OrderedDict[tuple[str, bool, bool], Prepared] = OrderedDict()
        self._linkers: dict[tuple[bool, bool], wasmtime.Linker] = {}
        self._lock = threading.Lock()
        self._closed = False
        ticker.acquire()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            ticker.release()

    # -- preparation ---------------------------------------------------------------------

    def _linker(self, fuel: bool, full_wasi: bool) -> wasmtime.Linker:
        key = (fuel, full_wasi)
        linker = self._linkers.get(key)
        if linker is None:
            linker = wasmtime.Linker(get_engine(fuel))
            if full_wasi:
                linker.define_wasi()
            else:
                wasi.define(linker)
            self._linkers[key] = linker
        return linker

    def prepare(
        self, module: wasmtime.Module, digest: str, fuel: bool, full_wasi: bool
    ) -> Prepared:
        """The cached ``InstancePre`` of ``module`` for this engine flavour and WASI path."""
        key = (digest, fuel, full_wasi)
        with self._lock:
            prepared = self._prepared.get(key)
            if prepared is not None:
                self._prepared.move_to_end(key)
                return prepared
            problem, has_init = _check_exports(module)
            if problem:
                prepared = Prepared(None, problem)
            else:
                try:
                    pre = self._linker(fuel, full_wasi).instantiate_pre(module)
                    prepared = Prepared(pre, has_initialize=has_init)
                except wasmtime.WasmtimeError as exc:
                    prepared = Prepared(None, str(exc).strip().splitlines()[0])
            self._prepared[key] = prepared
            while len(self._prepared) > PREPARED_SLOTS:
                self._prepared.popitem(last=False)
            return prepared

    # -- running -------------------------------------------------------------------------

    def run(
        self,
        module: wasmtime.Module,
        digest: str,
        payload: bytes,
        limits: TaskLimits,
        *,
        task_name: str,
        capabilities: Capabilities | None = None,
        on_output: Callable[[LogChunk], None] | None = None,
    ) -> Outcome:
        """Runs one task; every failure is an :class:`Outcome`, never an exception."""
        started = time.perf_counter()
        io = TaskIO(task_name, limits.logs, time.monotonic() + limits.timeout, on_output)
        try:
            outcome = self._run(module, digest, payload, limits, io, capabilities)
        except Exception as exc:
            log.exception("sandbox failed", task_name=task_name)
            outcome = Outcome("internal", message=f"The sandbox failed running the task: {exc}.")
        outcome.logs = io.logs()
        outcome.log_bytes = io.kept
        outcome.log_dropped = io.dropped
        outcome.duration_ms = (time.perf_counter() - started) * 1000.0
        return outcome

    def _run(
        self,
        module: wasmtime.Module,
        digest: str,
        payload: bytes,
        limits: TaskLimits,
        io: TaskIO,
        capabilities: Capabilities | None,
    ) -> Outcome:
        fuel = limits.fuel > 0
        full_wasi = bool(capabilities)
        prepared = self.prepare(module, digest, fuel, full_wasi)
        if prepared.pre is None:
            return instantiate_failed(prepared.problem)
        store = wasmtime.Store(get_engine(fuel))
        store.set_limits(memory_size=limits.memory)
        store.set_epoch_deadline(ticker.deadline_ticks(limits.timeout))
        if fuel:
            store.set_fuel(limits.fuel)
        if capabilities:
            store.set_wasi(_wasi_config(io, capabilities))
        ctx = store._context()
        phase = "instantiate"
        capture.enter(io)
        try:
            instance = raw.instantiate(prepared.pre, ctx)
            exports = raw.Exports(ctx, instance)
            memory = io.memory = exports.memory()
            if prepared.has_initialize:
                phase = "_initialize"
                raw.call(ctx, exports.func(b"_initialize"))
            phase = "alloc"
            size = len(payload)
            ptr = raw.call(ctx, exports.func(b"alloc"), size)[0].i32 & _M32
            base, mem_size = raw.memory_span(ctx, memory)
            if ptr + size > mem_size:
                return bad_result(
                    f"alloc returned {ptr}, where a {size}-byte payload does not fit in the"
                    f" task's {mem_size}-byte memory.",
                    "alloc",
                )
            ctypes.memmove(base + ptr, payload, size)
            phase = "execute"
            packed = raw.call(ctx, exports.func(b"execute"), ptr, size)[0].i64 & _M64
            return _result(packed, *raw.memory_span(ctx, memory), limits)
        except raw.CallFailed as failure:
            mem = io.memory
            final_size = None if mem is None else raw.memory_span(ctx, mem)[1]
            return classify(failure, io, phase, final_size, limits)
        finally:
            capture.enter(None)


def _result(packed: int, base: int, mem_size: int, limits: TaskLimits) -> Outcome:
    ptr, length = packed >> 32, packed & _M32
    if ptr + length > mem_size:
        return bad_result(
            f"execute returned a result at offset {ptr} of length {length}, outside the"
            f" task's {mem_size}-byte memory."
        )
    if length > limits.result:
        return bad_result(
            f"The task's result is {length} bytes, over its result limit of"
            f" {size_text(limits.result)}."
        )
    return Outcome("ok", result=ctypes.string_at(base + ptr, length), phase="execute")


def _wasi_config(io: TaskIO, capabilities: Capabilities) -> wasmtime.WasiConfig:
    """wasmtime's WASI for a task with capabilities, writing into the same capture."""
    config = wasmtime.WasiConfig()
    config.argv = [io.argv0[:-1].decode()]
    config.env = list(capabilities.env.items())
    for host, guest, readonly in capabilities.dirs:
        config.preopen_dir(host, guest, not readonly)

    def sink(stream: int) -> Callable[[bytes], Any]:
        def write(data: bytes) -> int:
            io.write(stream, data)
            return len(data)

        return write

    config.stdout_custom = sink(STDOUT)
    config.stderr_custom = sink(STDERR)
    return config
