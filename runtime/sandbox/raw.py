"""The hot path through wasmtime's C API, below wasmtime-py's convenience layer.

wasmtime-py's ``Func.__call__`` asks the engine for the function's type and boxes every
value on each call (about 12 µs); ``Linker.define_func`` host functions box every
argument the same way. A small task makes three calls and a few host calls, so those
costs would dominate. Here calls go through ``wasmtime_func_call_unchecked`` with a raw
value array, and host functions are ``unchecked`` callbacks that read raw arguments:
the types were already checked once, when the linker matched the module's imports.

The struct layouts and function prototypes are wasmtime-py's own ctypes bindings, so
they always match the installed library.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from ctypes import byref
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

ValArray = Any  # a ctypes array of wasmtime_val_raw_t
#: A host function: (caller pointer, raw argument/result array) -> trap address or 0.
HostFunc = Callable[[Any, Any], int]

_VAL2 = ffi.wasmtime_val_raw_t * 2
_EXTERN_FUNC = int(ffi.WASMTIME_EXTERN_FUNC.value)
_EXTERN_MEMORY = int(ffi.WASMTIME_EXTERN_MEMORY.value)
_TRAP_PTR = ctypes.POINTER(ffi.wasm_trap_t)


class CallFailed(Exception):
    """A call into wasm (or an instantiation) ended in a trap or an error."""

    def __init__(self, trap: wasmtime.Trap | None, error: wasmtime.WasmtimeError | None) -> None:
        super().__init__(str(trap or error))
        self.trap = trap
        self.error = error


def _raise(error: Any, trap: Any) -> None:
    raise CallFailed(
        wasmtime.Trap._from_ptr(trap) if trap else None,
        wasmtime.WasmtimeError._from_ptr(error) if error else None,
    )


def instantiate(pre: wasmtime.InstancePre, ctx: Any) -> Any:
    """A new instance of ``pre`` in the store of ``ctx`` (a raw ``wasmtime_instance_t``)."""
    instance = ffi.wasmtime_instance_t()
    trap = _TRAP_PTR()
    error = ffi.wasmtime_instance_pre_instantiate(pre.ptr(), ctx, byref(instance), byref(trap))
    if error or trap:
        _raise(error, trap)
    return instance


class Exports:
    """Looks up one instance's exports by name (names are bytes)."""

    def __init__(self, ctx: Any, instance: Any) -> None:
        self.ctx = ctx
        self.instance = byref(instance)

    def _get(self, name: bytes, kind: int) -> Any:
        item: Any = ffi.wasmtime_extern_t()
        found = ffi.wasmtime_instance_export_get(
            self.ctx, self.instance, name, len(name), byref(item)
        )
        return item if found and item.kind == kind else None

    def func(self, name: bytes) -> Any:
        item = self._get(name, _EXTERN_FUNC)
        return None if item is None else item.of.func

    def memory(self, name: bytes = b"memory") -> Any:
        item = self._get(name, _EXTERN_MEMORY)
        return None if item is None else item.of.memory


def call(ctx: Any, func: Any, *args: int) -> ValArray:
    """Calls ``func`` with i32 arguments; the results are in the returned array."""
    vals = _VAL2()
    for i, arg in enumerate(args):
        vals[i].i32 = arg
    trap = _TRAP_PTR()
    error = ffi.wasmtime_func_call_unchecked(ctx, byref(func), vals, 2, byref(trap))
    if error or trap:
        _raise(error, trap)
    return vals


def func_type(ctx: Any, func: Any) -> wasmtime.FuncType:
    return wasmtime.FuncType._from_ptr(ffi.wasmtime_func_type(ctx, byref(func)), None)


def memory_span(ctx: Any, memory: Any) -> tuple[int, int]:
    """(address, size in bytes) of a linear memory right now; it moves when it grows."""
    ref = byref(memory)
    base = ctypes.addressof(ffi.wasmtime_memory_data(ctx, ref).contents)
    return base, ffi.wasmtime_memory_data_size(ctx, ref)


def caller_context(caller: Any) -> Any:
    return ffi.wasmtime_caller_context(caller)


def caller_memory(caller: Any) -> Any:
    """The calling instance's exported ``memory``, or None."""
    item: Any = ffi.wasmtime_extern_t()
    if not ffi.wasmtime_caller_export_get(caller, b"memory", 6, byref(item)):
        return None
    return item.of.memory if item.kind == _EXTERN_MEMORY else None


def new_trap(message: str) -> int:
    """A trap for a host function to return (wasmtime takes ownership)."""
    data = message.encode()
    trap = ffi.wasmtime_trap_new(data, len(data))
    return ctypes.cast(trap, ctypes.c_void_p).value or 0


def _no_finalizer(_env: Any) -> None:
    return None


_finalize = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_no_finalizer)


# Callbacks must outlive every linker that holds them.
_keep: list[Any] = []


def define(
    linker: wasmtime.Linker,
    module: str,
    name: str,
    params: list[wasmtime.ValType],
    results: list[wasmtime.ValType],
    func: HostFunc,
) -> None:
    """Defines an unchecked host function in ``linker``.

    ``func(caller, vals)`` reads its arguments from ``vals[i].i32``/``.i64``, writes its
    result into ``vals[0]``, and returns 0 or a trap made by :func:`new_trap`."""

    def trampoline(_env: Any, caller: Any, vals: Any, _n: int) -> int:
        return func(caller, vals)

    callback = ffi.wasmtime_func_unchecked_callback_t(trampoline)
    _keep.append(callback)
    ty = wasmtime.FuncType(params, results)
    mod, nm = module.encode(), name.encode()
    error = ffi.wasmtime_linker_define_func_unchecked(
        linker.ptr(), mod, len(mod), nm, len(nm), ty.ptr(), callback, None, _finalize
    )
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)
