"""The task module contract, checked before a module is accepted into the registry.

A task module is a WASI preview 1 reactor: it exports ``memory``,
``alloc(i32) -> i32`` and ``execute(i32, i32) -> i64``, may export ``_initialize()``,
and imports nothing but ``wasi_snapshot_preview1`` functions. Other exports (globals a
toolchain leaves behind, helper functions) are harmless and allowed, except ``_start``:
a module with ``_start`` is a WASI *command*, whose ``main`` would never run here.
"""

from __future__ import annotations

import wasmtime

from runtime.errors import RegistryError

WASI_MODULE = "wasi_snapshot_preview1"

#: Every function of WASI preview 1; an import outside this list cannot be linked.
WASI_FUNCTIONS = frozenset(
    (
        "args_get",
        "args_sizes_get",
        "environ_get",
        "environ_sizes_get",
        "clock_res_get",
        "clock_time_get",
        "fd_advise",
        "fd_allocate",
        "fd_close",
        "fd_datasync",
        "fd_fdstat_get",
        "fd_fdstat_set_flags",
        "fd_fdstat_set_rights",
        "fd_filestat_get",
        "fd_filestat_set_size",
        "fd_filestat_set_times",
        "fd_pread",
        "fd_prestat_get",
        "fd_prestat_dir_name",
        "fd_pwrite",
        "fd_read",
        "fd_readdir",
        "fd_renumber",
        "fd_seek",
        "fd_sync",
        "fd_tell",
        "fd_write",
        "path_create_directory",
        "path_filestat_get",
        "path_filestat_set_times",
        "path_link",
        "path_open",
        "path_readlink",
        "path_remove_directory",
        "path_rename",
        "path_symlink",
        "path_unlink_file",
        "poll_oneoff",
        "proc_exit",
        "proc_raise",
        "sched_yield",
        "random_get",
        "sock_accept",
        "sock_recv",
        "sock_send",
        "sock_shutdown",
    )
)

#: Required function exports: name -> (params, results).
REQUIRED_FUNCTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "alloc": (("i32",), ("i32",)),
    "execute": (("i32", "i32"), ("i64",)),
}
OPTIONAL_FUNCTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "_initialize": ((), ()),
}


def compile_checked(engine: wasmtime.Engine, data: bytes) -> wasmtime.Module:
    """Compile ``data`` and check it against the contract; raise RegistryError if not."""
    try:
        module = wasmtime.Module(engine, data)
    except wasmtime.WasmtimeError as exc:
        raise RegistryError(f"the module is not valid WebAssembly: {_reason(str(exc))}") from None
    check_module(module)
    return module


def check_module(module: wasmtime.Module) -> None:
    """Raise :class:`RegistryError` naming the first contract violation of ``module``."""
    _check_imports(module)
    exports = {e.name: e.type for e in module.exports}
    memory = exports.get("memory")
    if memory is None:
        raise RegistryError("the module does not export `memory` (its linear memory)")
    if not isinstance(memory, wasmtime.MemoryType):
        raise RegistryError("the module's `memory` export is not a memory")
    if memory.is_64:
        raise RegistryError("the module's `memory` is a 64-bit memory; tasks use 32-bit memory")
    if "_start" in exports:
        raise RegistryError(
            "unexpected export `_start`: the module is a WASI command; build it as a reactor "
            "(Go: -buildmode=c-shared, C/Zig: -mexec-model=reactor)"
        )
    for name, signature in REQUIRED_FUNCTIONS.items():
        if name not in exports:
            raise RegistryError(
                f"the module does not export `{name}` ({_show(signature)}); "
                "task modules export memory, alloc and execute"
            )
        _check_function(name, exports[name], signature)
    for name, signature in OPTIONAL_FUNCTIONS.items():
        if name in exports:
            _check_function(name, exports[name], signature)


def _check_imports(module: wasmtime.Module) -> None:
    for imp in module.imports:
        what = f"{imp.module}.{imp.name}"
        if imp.module != WASI_MODULE:
            raise RegistryError(
                f"unexpected import `{what}`: task modules may import only {WASI_MODULE} functions"
            )
        if not isinstance(imp.type, wasmtime.FuncType):
            raise RegistryError(f"unexpected import `{what}`: only functions may be imported")
        if imp.name not in WASI_FUNCTIONS:
            raise RegistryError(f"unexpected import `{what}`: not a WASI preview 1 function")


def _check_function(name: str, kind: object, expected: tuple[tuple[str, ...], ...]) -> None:
    if not isinstance(kind, wasmtime.FuncType):
        raise RegistryError(f"the module's `{name}` export is not a function")
    actual = (tuple(str(p) for p in kind.params), tuple(str(r) for r in kind.results))
    if actual != expected:
        raise RegistryError(
            f"the module's `{name}` export has type {_show(actual)}; expected {_show(expected)}"
        )


def _show(signature: tuple[tuple[str, ...], ...]) -> str:
    params, results = signature
    shown = f"({', '.join(params)})"
    if results:
        shown += f" -> {', '.join(results)}"
    return shown


def _reason(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"
