"""The Sandbox: runs one task in a fresh, bounded wasm instance and never raises.

Per task: a fresh ``Store`` (memory limit, epoch deadline, optional fuel), a new instance
from a cached ``InstancePre`` (imports are resolved once per module), then
``_initialize`` (when exported), ``alloc(len)``, the payload copied in, ``execute``,
and the result copied out after a bounds check: the exports :mod:`runtime.sandbox.exports`
lists, which registration checks. Nothing survives from one task to the next but the
compiled module.

Two paths:

- isolated tasks (the usual case) link against our own preview1 functions
  (:mod:`runtime.sandbox.wasi`): output goes straight into the task's capture buffer;
- tasks whose module the operator granted capabilities (directories, environment) use
  wasmtime's complete WASI, except for the calls it does not bound (sleeps, random
  fills: :data:`runtime.sandbox.wasi.SHADOWED`), with stdout/stderr through an output
  callback that copies only what the log limit keeps (slower).

Every store is limited as a whole, not only its linear memory: one instance, one memory
(of at most the task's memory limit), at most :data:`~runtime.sandbox.limits.MAX_TABLES`
tables of at most :data:`~runtime.sandbox.limits.TABLE_ELEMENTS` elements each.

A run can be stopped from another thread (a cancelled task: ``run``'s ``interrupt``):
host calls and sleeps stop at once, and wasm code at the end of its current deadline
slice, as the store's epoch deadline is given in slices of
:data:`~runtime.sandbox.raw.SLICE_TICKS` ticks, each checked against the task's
deadline and cancel flag by a callback (a task shorter than one slice never calls it).

Retry convention for handlers (see :mod:`runtime.sandbox.outcome`): ``proc_exit(75)``
(EX_TEMPFAIL) asks for a retry; any other non-zero exit code fails terminally. Traps
and timeouts are retried; memory_limit, bad_result and instantiate failures are not.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import wasmtime

from runtime.errors import RegistryError
from runtime.logging_config import get_logger
from runtime.modules import contract
from runtime.output.chunks import STDERR, STDOUT, LogChunk
from runtime.queue.task import OutcomeKind
from runtime.sandbox import capture, host, raw, ticker, wasi
from runtime.sandbox.capture import ProgressHook, TaskIO
from runtime.sandbox.engine import get_engine
from runtime.sandbox.exports import ALLOC, EXECUTE, INITIALIZE
from runtime.sandbox.failures import (
    STACK_POINTER,
    alloc_problem,
    bad_result,
    cancelled,
    classify,
    instantiate_failed,
    result_problem,
)
from runtime.sandbox.limits import MAX_TABLES, TABLE_ELEMENTS, Capabilities, TaskLimits
from runtime.sandbox.outcome import Outcome
from runtime.settings import Settings

log = get_logger("sandbox")

#: Prepared modules kept per process.
PREPARED_SLOTS = 512
_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


@dataclass
class Prepared:
    """A module ready to instantiate, or why it cannot be."""

    pre: wasmtime.InstancePre | None
    problem: str = ""
    has_initialize: bool = False
    #: Whether it exports its stack pointer (see :func:`~runtime.sandbox.failures.in_stack`).
    has_stack_pointer: bool = False


def _check(module: wasmtime.Module) -> tuple[str, bool, bool]:
    """('' or the problem, has _initialize, exports its stack pointer): calls below skip
    type checks, so check here, against the same contract registration checks (a module
    cached before a rule was added is refused here too)."""
    try:
        contract.check_module(module)
    except RegistryError as exc:
        return str(exc), False, False
    names = {e.name for e in module.exports}
    return "", INITIALIZE.name in names, STACK_POINTER.decode() in names


class Interruptible(Protocol):
    """What a caller passes to stop a run from another thread: the run hands it its
    ``stop`` function as it starts (calling it at once if a stop was already asked)."""

    def attach(self, stop: Callable[[], None]) -> None: ...


class Sandbox:
    """Runs tasks; one per worker process (thread-safe, tasks may run on several threads)."""

    def __init__(self, settings: Settings, *, wasi_impl: str = "own") -> None:
        """``wasi_impl="wasmtime"`` runs every task on wasmtime's WASI (for comparisons)."""
        self.settings = settings
        self.backend = raw.backend(settings.sandbox_api)
        self.wasi_impl = wasi_impl
        self._prepared: OrderedDict[tuple[str, bool, bool], Prepared] = OrderedDict()
        self._linkers: dict[tuple[bool, bool], wasmtime.Linker] = {}
        self._lock = threading.Lock()
        self._closed = False
        ticker.acquire()

    def idle(self) -> None:
        """The caller expects no task for a while: stop the epoch ticker's wake-ups."""
        ticker.pause()

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
                linker.allow_shadowing = True
                wasi.define(linker, self.backend, only=wasi.SHADOWED)
            else:
                wasi.define(linker, self.backend)
            host.define(linker, self.backend)
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
            problem, has_init, has_sp = _check(module)
            if problem:
                prepared = Prepared(None, problem)
            else:
                try:
                    pre = self._linker(fuel, full_wasi).instantiate_pre(module)
                    prepared = Prepared(pre, has_initialize=has_init, has_stack_pointer=has_sp)
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
        on_progress: ProgressHook | None = None,
        interrupt: Interruptible | None = None,
    ) -> Outcome:
        """Runs one task; every failure is an :class:`Outcome`, never an exception.

        ``on_output`` hears each piece of output and ``on_progress`` each progress report
        as they happen, on this thread. ``interrupt`` lets another thread stop the run
        (outcome ``cancelled``): host calls and sleeps stop at once, wasm code within
        :data:`~runtime.sandbox.raw.SLICE_TICKS` ticks."""
        started = time.perf_counter()
        io = TaskIO(
            task_name,
            limits.logs,
            time.monotonic() + limits.timeout,
            on_output,
            self.backend,
            on_progress,
        )
        if interrupt is not None:
            interrupt.attach(io.cancel)
        try:
            outcome = self._run(module, digest, payload, limits, io, capabilities)
        except Exception as exc:
            log.exception("sandbox failed", task_name=task_name)
            message = f"The sandbox failed running the task: {exc}."
            outcome = Outcome(OutcomeKind.INTERNAL, message=message)
        if outcome.ok and io.handler_error is not None:
            retryable, said = io.handler_error
            outcome = Outcome(
                OutcomeKind.HANDLER,
                message=said or "The handler reported an error without a message.",
                retryable=retryable,
                phase=outcome.phase,
            )
        outcome.progress = io.progress
        outcome.memory_bytes = io.memory_size
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
        if io.cancelled:
            return cancelled("instantiate")
        fuel = limits.fuel > 0
        full_wasi = bool(capabilities) or self.wasi_impl == "wasmtime"
        prepared = self.prepare(module, digest, fuel, full_wasi)
        if prepared.pre is None:
            return instantiate_failed(prepared.problem)
        if fuel:
            ticker.ensure(True)
        store = wasmtime.Store(get_engine(fuel))
        store.set_limits(
            memory_size=limits.memory,
            table_elements=TABLE_ELEMENTS,
            instances=1,
            tables=MAX_TABLES,
            memories=1,
        )
        self.backend.set_deadline(store, ticker.deadline_ticks(limits.timeout), io)
        if fuel:
            store.set_fuel(limits.fuel)
        if full_wasi:
            io.files = True
            store.set_wasi(_wasi_config(io, capabilities or Capabilities(), self.backend))
        phase = "instantiate"
        instance: raw.Instance | None = None
        capture.enter(io)
        ticker.begin()
        try:
            instance = self.backend.instantiate(prepared.pre, store)
            memory = io.memory = instance.memory()
            if prepared.has_initialize:
                phase = INITIALIZE.name
                instance.call(instance.func(INITIALIZE.symbol))
            phase = ALLOC.name
            size = len(payload)
            ptr = instance.call(instance.func(ALLOC.symbol), size)[0].i32 & _M32
            base, mem_size = instance.memory_span(memory)
            io.memory_size = mem_size
            stack_top = instance.global_i32(STACK_POINTER) if prepared.has_stack_pointer else None
            problem = alloc_problem(ptr, size, mem_size, stack_top)
            if problem:
                return bad_result(problem, ALLOC.name)
            ctypes.memmove(base + ptr, payload, size)
            phase = EXECUTE.name
            packed = instance.call(instance.func(EXECUTE.symbol), ptr, size)[0].i64 & _M64
            base, mem_size = instance.memory_span(memory)
            io.memory_size = mem_size
            if stack_top is not None:
                stack_top = instance.global_i32(STACK_POINTER)
            return _result(packed, base, mem_size, limits, stack_top)
        except raw.CallFailed as failure:
            mem = io.memory
            final_size = None
            if mem is not None and instance is not None:
                final_size = io.memory_size = instance.memory_span(mem)[1]
            return classify(failure, io, phase, final_size, limits)
        finally:
            ticker.end()
            capture.enter(None)


def _result(
    packed: int, base: int, mem_size: int, limits: TaskLimits, stack_top: int | None
) -> Outcome:
    ptr, length = packed >> 32, packed & _M32
    problem = result_problem(ptr, length, mem_size, limits.result, stack_top)
    if problem:
        return bad_result(problem)
    result = ctypes.string_at(base + ptr, length)
    return Outcome(OutcomeKind.OK, result=result, phase=EXECUTE.name)


def _wasi_config(
    io: TaskIO, capabilities: Capabilities, backend: raw.Backend
) -> wasmtime.WasiConfig:
    """wasmtime's WASI for a task with capabilities, writing into the same capture."""
    config = wasmtime.WasiConfig()
    config.argv = [io.argv0[:-1].decode()]
    config.env = list(capabilities.env.items())
    for outside, guest, readonly in capabilities.dirs:
        config.preopen_dir(outside, guest, not readonly)
    for stream in (STDOUT, STDERR):
        backend.set_output(config, stream, functools.partial(io.write_from, stream))
    return config
