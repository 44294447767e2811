"""The one place that reaches below wasmtime-py's public API, and its public fallback.

wasmtime-py's ``Func.__call__`` asks the engine for the function's type and boxes every
value on each call (about 12 µs); ``Linker.define_func`` host functions box every
argument the same way. A small task makes three calls and a few host calls, so those
costs would dominate. The fast backend calls through ``wasmtime_func_call_unchecked``
with a raw value array, and host functions are ``unchecked`` callbacks that read raw
arguments: the types were already checked once, when the linker matched the module's
imports. It uses wasmtime-py's own ctypes bindings (``wasmtime._ffi``), so struct
layouts always match the installed library, plus a few private helpers
(``Store._context``, ``Trap._from_ptr``).

Private internals can change in any release, so at import this module checks the
installed wasmtime version and every symbol it uses; when one is missing it logs a
warning and :func:`backend` hands out :class:`PublicBackend`, which does the same with
the public API only (slower, same behaviour: the differential tests run both).
"""

from __future__ import annotations

import ctypes
import errno
import math
import time
from collections.abc import Callable, Sequence
from ctypes import byref
from importlib import metadata
from typing import Any, Protocol

import wasmtime

from runtime.logging_config import get_logger
from runtime.sandbox.capture import current
from runtime.sandbox.exports import CALL_SLOTS, MEMORY

log = get_logger("sandbox")

#: wasmtime-py majors whose private layout the fast backend was written against.
FAST_MAJORS = (50,)

#: A host function: (caller, argument/result values) -> 0, or a trap from ``new_trap``.
HostFunc = Callable[[Any, Any], Any]

_MEMORY = MEMORY.encode()


class CallFailed(Exception):
    """A call into wasm (or an instantiation) ended in a trap or an error."""

    def __init__(self, trap: wasmtime.Trap | None, error: wasmtime.WasmtimeError | None) -> None:
        super().__init__(str(trap or error))
        self.trap = trap
        self.error = error


class Instance(Protocol):
    """One instantiated task module, as a backend sees it."""

    def func(self, name: bytes) -> Any: ...

    def memory(self) -> Any: ...

    def call(self, func: Any, *args: int) -> Sequence[Any]:
        """Results as values with ``.i32``/``.i64``; raises :class:`CallFailed`."""
        ...

    def memory_span(self, memory: Any) -> tuple[int, int]:
        """(address, size in bytes) of a linear memory now; it moves when it grows."""
        ...

    def global_i32(self, name: bytes) -> int | None:
        """The value of an exported i32 global, or None when there is none."""
        ...


class Backend(Protocol):
    name: str

    def instantiate(self, pre: wasmtime.InstancePre, store: wasmtime.Store) -> Instance: ...

    def define(
        self,
        linker: wasmtime.Linker,
        module: str,
        name: str,
        params: list[wasmtime.ValType],
        results: list[wasmtime.ValType],
        func: HostFunc,
    ) -> None: ...

    def caller_span(self, caller: Any, memory: Any) -> tuple[int, int] | None:
        """The calling instance's memory span (``memory`` if known, else its export)."""
        ...

    def new_trap(self, message: str) -> Any:
        """A trap for a host function to return (truthy)."""
        ...

    def set_deadline(self, store: wasmtime.Store, ticks: int, io: Any) -> None:
        """Makes wasm code in ``store`` stop ``ticks`` epoch ticks from now, or sooner
        once ``io`` (its :class:`~runtime.sandbox.capture.TaskIO`) is cancelled."""
        ...

    def set_output(
        self, config: wasmtime.WasiConfig, stream: int, write: Callable[[int, int], bool]
    ) -> None:
        """Sends wasmtime's WASI output on ``stream`` (1 or 2) to ``write(address, size)``,
        which copies what it keeps; a write is reported fully written, or failed (EIO)
        when ``write`` answers False."""
        ...


# -- the fast backend: wasmtime's C API through wasmtime-py's bindings ------------------------

_FFI_SYMBOLS = (
    "wasmtime_val_raw_t",
    "wasmtime_extern_t",
    "wasmtime_instance_t",
    "wasm_trap_t",
    "WASMTIME_EXTERN_FUNC",
    "WASMTIME_EXTERN_MEMORY",
    "WASMTIME_EXTERN_GLOBAL",
    "WASMTIME_I32",
    "wasmtime_val_t",
    "wasmtime_global_get",
    "wasmtime_instance_pre_instantiate",
    "wasmtime_instance_export_get",
    "wasmtime_func_call_unchecked",
    "wasmtime_memory_data",
    "wasmtime_memory_data_size",
    "wasmtime_caller_context",
    "wasmtime_caller_export_get",
    "wasmtime_trap_new",
    "wasmtime_func_unchecked_callback_t",
    "wasmtime_linker_define_func_unchecked",
    "wasi_config_set_stdout_custom",
    "wasi_config_set_stderr_custom",
    "wasmtime_store_epoch_deadline_callback",
    "wasmtime_context_set_epoch_deadline",
    "wasmtime_context_t",
    "wasmtime_update_deadline_kind_t",
    "wasmtime_error_new",
)


def _fast_problem() -> str:
    """'' when the fast backend can run on the installed wasmtime, else why not."""
    try:
        version = metadata.version("wasmtime")
    except metadata.PackageNotFoundError:
        return "the installed wasmtime has no version metadata"
    try:
        major = int(version.split(".")[0])
    except ValueError:
        return f"unrecognised wasmtime version {version}"
    if major not in FAST_MAJORS:
        return f"wasmtime {version} is not a version the fast path was checked against"
    try:
        from wasmtime import _ffi
    except ImportError:
        return "wasmtime._ffi is missing"
    missing = [name for name in _FFI_SYMBOLS if not hasattr(_ffi, name)]
    if not hasattr(getattr(_ffi, "dll", None), "wasmtime_engine_increment_epoch"):
        missing.append("dll.wasmtime_engine_increment_epoch")
    for owner, attr in (
        (wasmtime.Store, "_context"),
        (wasmtime.Trap, "_from_ptr"),
        (wasmtime.WasmtimeError, "_from_ptr"),
        (wasmtime.InstancePre, "ptr"),
        (wasmtime.Linker, "ptr"),
        (wasmtime.Engine, "ptr"),
        (wasmtime.Store, "ptr"),
        (wasmtime.FuncType, "ptr"),
        (wasmtime.WasiConfig, "ptr"),
    ):
        if not hasattr(owner, attr):
            missing.append(f"{owner.__name__}.{attr}")
    return f"wasmtime-py lacks {', '.join(missing)}" if missing else ""


FAST_PROBLEM = _fast_problem()

if not FAST_PROBLEM:
    from wasmtime import _ffi as ffi

    _VALS = ffi.wasmtime_val_raw_t * CALL_SLOTS
    _EXTERN_FUNC = int(ffi.WASMTIME_EXTERN_FUNC.value)
    _EXTERN_MEMORY = int(ffi.WASMTIME_EXTERN_MEMORY.value)
    _EXTERN_GLOBAL = int(ffi.WASMTIME_EXTERN_GLOBAL.value)
    _KIND_I32 = int(ffi.WASMTIME_I32.value)
    _TRAP_PTR = ctypes.POINTER(ffi.wasm_trap_t)
    _OUTPUT_CALLBACK = ctypes.CFUNCTYPE(
        ctypes.c_ssize_t, ctypes.c_void_p, ctypes.POINTER(ctypes.c_ubyte), ctypes.c_size_t
    )
    _DEADLINE_CALLBACK = ctypes.CFUNCTYPE(
        ctypes.c_size_t,
        ctypes.POINTER(ffi.wasmtime_context_t),
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_uint64),
        ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t),
    )


def _raise(error: Any, trap: Any) -> None:
    raise CallFailed(
        wasmtime.Trap._from_ptr(trap) if trap else None,
        wasmtime.WasmtimeError._from_ptr(error) if error else None,
    )


class _FastInstance:
    __slots__ = ("ctx", "instance", "ref")

    def __init__(self, ctx: Any, instance: Any) -> None:
        self.ctx = ctx
        self.instance = instance
        self.ref = byref(instance)

    def _get(self, name: bytes, kind: int) -> Any:
        item: Any = ffi.wasmtime_extern_t()
        found = ffi.wasmtime_instance_export_get(self.ctx, self.ref, name, len(name), byref(item))
        return item if found and item.kind == kind else None

    def func(self, name: bytes) -> Any:
        item = self._get(name, _EXTERN_FUNC)
        return None if item is None else item.of.func

    def memory(self) -> Any:
        item = self._get(_MEMORY, _EXTERN_MEMORY)
        return None if item is None else item.of.memory

    def call(self, func: Any, *args: int) -> Any:
        vals = _VALS()
        for i, arg in enumerate(args):
            vals[i].i32 = arg
        trap = _TRAP_PTR()
        error = ffi.wasmtime_func_call_unchecked(
            self.ctx, byref(func), vals, CALL_SLOTS, byref(trap)
        )
        if error or trap:
            _raise(error, trap)
        return vals

    def memory_span(self, memory: Any) -> tuple[int, int]:
        return _span(self.ctx, memory)

    def global_i32(self, name: bytes) -> int | None:
        item = self._get(name, _EXTERN_GLOBAL)
        if item is None:
            return None
        val: Any = ffi.wasmtime_val_t()
        ffi.wasmtime_global_get(self.ctx, byref(item.of.global_), byref(val))
        return int(val.of.i32) if val.kind == _KIND_I32 else None


def _span(ctx: Any, memory: Any) -> tuple[int, int]:
    ref = byref(memory)
    base = ctypes.addressof(ffi.wasmtime_memory_data(ctx, ref).contents)
    return base, ffi.wasmtime_memory_data_size(ctx, ref)


def _no_finalizer(_env: Any) -> None:
    return None


#: The epoch ticker's tick (s): :data:`runtime.sandbox.ticker.TICK` (which imports this
#: module).
TICK = 0.01
#: Epoch ticks per deadline slice: how late a cancel can reach wasm code. A task that
#: ends within one slice costs nothing; a longer one, one callback per slice.
SLICE_TICKS = 5


def _next_slice(_ctx: Any, _env: Any, delta: Any, kind: Any) -> int:
    """wasmtime's epoch-deadline callback: the next slice of the time limit, or an error
    (which ends the call) once the task is cancelled or its deadline has passed.

    A slice counts from the epoch now, not from where the last one ended, so ticks spent
    in a host call would be lost if slices were counted: the task's deadline on the
    clock (the one host calls check) decides instead."""
    reason = b"time limit reached"
    try:
        io = current()
        left = io.deadline - time.monotonic()
        if io.cancelled:
            reason = b"cancelled"
        elif left <= 0:
            io.timed_out = True
        else:
            delta[0] = min(math.ceil(left / TICK), SLICE_TICKS)
            kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
            return 0
    except Exception:
        # An exception cannot cross into wasmtime; ending the call is the safe answer,
        # never a deadline left unset.
        reason = b"deadline callback failed"
    error = ffi.wasmtime_error_new(reason)
    return ctypes.cast(error, ctypes.c_void_p).value or 0


class FastBackend:
    """Calls and host functions through wasmtime's unchecked C API."""

    name = "fast"

    def __init__(self) -> None:
        self._finalize = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_no_finalizer)
        self._next_slice = _DEADLINE_CALLBACK(_next_slice)
        # Callbacks must outlive every linker that holds them.
        self._keep: list[Any] = []

    def instantiate(self, pre: wasmtime.InstancePre, store: wasmtime.Store) -> _FastInstance:
        ctx = store._context()
        instance = ffi.wasmtime_instance_t()
        trap = _TRAP_PTR()
        error = ffi.wasmtime_instance_pre_instantiate(pre.ptr(), ctx, byref(instance), byref(trap))
        if error or trap:
            _raise(error, trap)
        return _FastInstance(ctx, instance)

    def define(
        self,
        linker: wasmtime.Linker,
        module: str,
        name: str,
        params: list[wasmtime.ValType],
        results: list[wasmtime.ValType],
        func: HostFunc,
    ) -> None:
        def trampoline(_env: Any, caller: Any, vals: Any, _n: int) -> int:
            trap: int = func(caller, vals)
            return trap

        callback = ffi.wasmtime_func_unchecked_callback_t(trampoline)
        self._keep.append(callback)
        ty = wasmtime.FuncType(params, results)
        mod, nm = module.encode(), name.encode()
        error = ffi.wasmtime_linker_define_func_unchecked(
            linker.ptr(), mod, len(mod), nm, len(nm), ty.ptr(), callback, None, self._finalize
        )
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)

    def set_deadline(self, store: wasmtime.Store, ticks: int, io: Any) -> None:
        # Another thread cannot touch a running store, so a cancel is seen between
        # slices: each slice's end calls back into Python, which gives the next or stops.
        if ticks > SLICE_TICKS:
            ticks = SLICE_TICKS
            ffi.wasmtime_store_epoch_deadline_callback(
                store.ptr(), self._next_slice, None, self._finalize
            )
        ffi.wasmtime_context_set_epoch_deadline(store._context(), ticks)

    def caller_span(self, caller: Any, memory: Any) -> tuple[int, int] | None:
        if memory is None:
            item: Any = ffi.wasmtime_extern_t()
            if not ffi.wasmtime_caller_export_get(caller, _MEMORY, len(_MEMORY), byref(item)):
                return None
            if item.kind != _EXTERN_MEMORY:
                return None
            memory = item.of.memory
        return _span(ffi.wasmtime_caller_context(caller), memory)

    def new_trap(self, message: str) -> int:
        data = message.encode()
        trap = ffi.wasmtime_trap_new(data, len(data))
        return ctypes.cast(trap, ctypes.c_void_p).value or 0

    def set_output(
        self, config: wasmtime.WasiConfig, stream: int, write: Callable[[int, int], bool]
    ) -> None:
        # wasmtime-py's stdout_custom copies every buffer whole into a bytes object first
        # (a 64 MiB copy per call); this callback lets the capture copy only what it keeps.
        def call(_env: Any, ptr: Any, size: int) -> int:
            if write(ctypes.cast(ptr, ctypes.c_void_p).value or 0, size):
                return size
            return -errno.EIO

        callback = _OUTPUT_CALLBACK(call)
        self._keep.append(callback)
        setter = (
            ffi.wasi_config_set_stdout_custom if stream == 1 else ffi.wasi_config_set_stderr_custom
        )
        setter(config.ptr(), callback, None, self._finalize)


# -- the public backend: wasmtime-py's documented API only ------------------------------------


class _Val:
    """One argument/result slot, shaped like ``wasmtime_val_raw_t`` for host functions."""

    __slots__ = ("f64", "i32", "i64")

    def __init__(self, value: float = 0) -> None:
        # An f64 argument (wasmq.progress) fills only the f64 slot.
        self.i32: int = value if isinstance(value, int) else 0
        self.i64: int = self.i32
        self.f64: float = value


class _PublicInstance:
    __slots__ = ("exports", "store")

    def __init__(self, store: wasmtime.Store, instance: wasmtime.Instance) -> None:
        self.store = store
        self.exports = instance.exports(store)

    def func(self, name: bytes) -> Any:
        item = self.exports.get(name.decode())
        return item if isinstance(item, wasmtime.Func) else None

    def memory(self) -> Any:
        item = self.exports.get(MEMORY)
        return item if isinstance(item, wasmtime.Memory) else None

    def call(self, func: Any, *args: int) -> list[_Val]:
        try:
            result = func(self.store, *args)
        except wasmtime.Trap as trap:
            raise CallFailed(trap, None) from None
        except wasmtime.WasmtimeError as error:
            raise CallFailed(None, error) from None
        return [_Val(result if isinstance(result, int) else 0)]

    def memory_span(self, memory: Any) -> tuple[int, int]:
        return _public_span(self.store, memory)

    def global_i32(self, name: bytes) -> int | None:
        item = self.exports.get(name.decode())
        if not isinstance(item, wasmtime.Global):
            return None
        value = item.value(self.store)
        return value if isinstance(value, int) else None


def _public_span(store: Any, memory: wasmtime.Memory) -> tuple[int, int]:
    size = memory.data_len(store)
    if not size:
        return 0, 0
    return ctypes.addressof(memory.data_ptr(store).contents), size


class PublicBackend:
    """The same operations through wasmtime-py's public API."""

    name = "public"

    def instantiate(self, pre: wasmtime.InstancePre, store: wasmtime.Store) -> _PublicInstance:
        try:
            return _PublicInstance(store, pre.instantiate(store))
        except wasmtime.Trap as trap:
            raise CallFailed(trap, None) from None
        except wasmtime.WasmtimeError as error:
            raise CallFailed(None, error) from None

    def define(
        self,
        linker: wasmtime.Linker,
        module: str,
        name: str,
        params: list[wasmtime.ValType],
        results: list[wasmtime.ValType],
        func: HostFunc,
    ) -> None:
        returns = bool(results)

        def host(caller: wasmtime.Caller, *args: float) -> int | None:
            vals = [_Val(a) for a in args] or [_Val()]
            trap = func(caller, vals)
            if trap:
                raise wasmtime.Trap(str(trap))
            return vals[0].i32 if returns else None

        linker.define_func(module, name, wasmtime.FuncType(params, results), host, True)

    def set_deadline(self, store: wasmtime.Store, ticks: int, io: Any) -> None:
        # The public API has no deadline callback: a cancel stops host calls and sleeps
        # at once, and wasm code at its time limit.
        store.set_epoch_deadline(ticks)

    def caller_span(self, caller: Any, memory: Any) -> tuple[int, int] | None:
        if memory is None:
            memory = caller.get(MEMORY)
            if not isinstance(memory, wasmtime.Memory):
                return None
        return _public_span(caller, memory)

    def new_trap(self, message: str) -> str:
        return message

    def set_output(
        self, config: wasmtime.WasiConfig, stream: int, write: Callable[[int, int], bool]
    ) -> None:
        def sink(data: bytes) -> int:
            # c_char_p points into the bytes object itself: no second copy.
            if write(ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0, len(data)):
                return len(data)
            return -errno.EIO

        if stream == 1:
            config.stdout_custom = sink
        else:
            config.stderr_custom = sink


_backends: dict[str, Backend] = {}
_warned = False


def backend(name: str = "auto") -> Backend:
    """The backend for ``name``: ``auto`` (fast when possible) or ``public``."""
    global _warned
    key = "fast" if name == "auto" and not FAST_PROBLEM else "public"
    if name == "auto" and FAST_PROBLEM and not _warned:
        _warned = True
        log.warning("sandbox runs on wasmtime-py's public API (slower)", reason=FAST_PROBLEM)
    found = _backends.get(key)
    if found is None:
        found = FastBackend() if key == "fast" else PublicBackend()
        _backends[key] = found
    return found


def increment_epoch_address() -> int | None:
    """The C address of ``wasmtime_engine_increment_epoch`` (None without the fast path)."""
    if FAST_PROBLEM:
        return None
    address: int | None = ctypes.cast(
        ffi.dll.wasmtime_engine_increment_epoch, ctypes.c_void_p
    ).value
    return address


def engine_address(engine: wasmtime.Engine) -> int:
    address: int = ctypes.cast(engine.ptr(), ctypes.c_void_p).value or 0
    return address
