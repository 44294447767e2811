"""The task module contract, checked before a module is accepted into the registry.

A task module is a WASI preview 1 reactor: it exports what
:mod:`runtime.sandbox.exports` lists (``memory``, ``alloc(i32) -> i32`` and
``execute(i32, i32) -> i64``, optionally ``_initialize()``), and imports nothing but
the ``wasi_snapshot_preview1`` functions :data:`runtime.sandbox.wasi.FUNCTIONS` lists and
the ``wasmq`` host functions :data:`runtime.sandbox.host.FUNCTIONS` lists, each with its
exact signature. A ``wasmq`` import this wasmq does not know means the module was built
for a newer guest ABI: it is refused with that said, by registration and by workers. Other exports (globals a toolchain leaves
behind, helper functions) are harmless and allowed, except ``_start``: a module with
``_start`` is a WASI *command*, whose ``main`` would never run here.

What can never run is refused here rather than failing every attempt later: a wrong
import signature, imported or shared memories (the engine has threads and multi-memory
off, so validation refuses those), more tables than a task may create, a table or a
memory whose initial size is over what a task may have.
"""

from __future__ import annotations

import wasmtime

from runtime.errors import RegistryError
from runtime.sandbox import exports, host, wasi
from runtime.sandbox.limits import MAX_TABLES, TABLE_ELEMENTS
from runtime.snapshot.binary import BinaryError, read_u32, v128_signature

#: Function exports in the order they are checked: the required ones first.
_CHECKED = sorted(exports.FUNCTIONS, key=lambda f: not f.required)
_REQUIRED_NAMES = [exports.MEMORY, *(f.name for f in _CHECKED if f.required)]
#: What every task module exports, in words ("memory, alloc and execute").
_REQUIRED = f"{', '.join(_REQUIRED_NAMES[:-1])} and {_REQUIRED_NAMES[-1]}"


def compile_checked(
    engine: wasmtime.Engine, data: bytes, memory_ceiling: int | None = None
) -> wasmtime.Module:
    """Compile ``data`` and check it against the contract; raise RegistryError if not.

    ``memory_ceiling`` (bytes) refuses a memory that starts larger than any task may
    have (``WASMQ_MAX_MEMORY_LIMIT``)."""
    try:
        module = wasmtime.Module(engine, data)
    except wasmtime.WasmtimeError as exc:
        reason = _reason(str(exc))
        for marker, feature in _REFUSED_FEATURES:
            if marker in reason:
                raise RegistryError(
                    f"the module uses {feature}, which task modules may not use ({reason});"
                    " build it for plain wasm32-wasi"
                ) from None
        raise RegistryError(f"the module is not valid WebAssembly: {reason}") from None
    check_signatures(data)
    check_module(module, memory_ceiling)
    _check_tables(data)
    return module


def check_signatures(data: bytes) -> None:
    """Refuse a (valid) module whose imports or exported functions take or return v128.

    No task function does, and wasmtime-py aborts the process when asked to describe a
    v128 type, so this reads the binary before :func:`check_module` asks wasmtime."""
    try:
        found = v128_signature(data)
    except (BinaryError, IndexError):
        raise RegistryError("the module's type, import or export section cannot be read") from None
    if found:
        raise RegistryError(
            f"the module's {found} takes or returns a v128; task modules import and export"
            " functions of i32, i64, f32 and f64 only"
        )


def check_module(module: wasmtime.Module, memory_ceiling: int | None = None) -> None:
    """Raise :class:`RegistryError` naming the first contract violation of ``module``."""
    _check_imports(module)
    found = {e.name: e.type for e in module.exports}
    _check_memory(found.get(exports.MEMORY), memory_ceiling)
    if "_start" in found:
        raise RegistryError(
            "unexpected export `_start`: the module is a WASI command; build it as a reactor "
            "(Go: -buildmode=c-shared, C/Zig: -mexec-model=reactor)"
        )
    for export in _CHECKED:
        if export.name in found:
            _check_function(export.name, found[export.name], export.signature)
        elif export.required:
            raise RegistryError(
                f"the module does not export `{export.name}` ({_show(export.signature)}); "
                f"task modules export {_REQUIRED}"
            )


def _check_memory(memory: object, memory_ceiling: int | None) -> None:
    if memory is None:
        raise RegistryError(f"the module does not export `{exports.MEMORY}` (its linear memory)")
    if not isinstance(memory, wasmtime.MemoryType):
        raise RegistryError(f"the module's `{exports.MEMORY}` export is not a memory")
    if memory.is_64:
        raise RegistryError(
            f"the module's `{exports.MEMORY}` is a 64-bit memory; tasks use 32-bit memory"
        )
    if memory.is_shared:
        raise RegistryError(
            f"the module's `{exports.MEMORY}` is shared; tasks use one unshared memory"
        )
    initial = memory.limits.min * PAGE
    if memory_ceiling is not None and initial > memory_ceiling:
        raise RegistryError(
            f"the module's memory starts at {initial} bytes, over the largest memory limit a"
            f" task may have ({memory_ceiling} bytes, WASMQ_MAX_MEMORY_LIMIT); shrink its"
            " initial memory"
        )


def _check_imports(module: wasmtime.Module) -> None:
    for imp in module.imports:
        what = f"{imp.module}.{imp.name}"
        if imp.module not in (wasi.MODULE, host.MODULE):
            raise RegistryError(
                f"unexpected import `{what}`: task modules may import only {wasi.MODULE} and"
                f" {host.MODULE} functions"
            )
        if not isinstance(imp.type, wasmtime.FuncType):
            raise RegistryError(
                f"unexpected import `{what}`: only functions may be imported (a task's memory"
                " and tables are its own)"
            )
        actual = (tuple(str(p) for p in imp.type.params), tuple(str(r) for r in imp.type.results))
        if imp.module == host.MODULE:
            _check_host_import(what, imp.name or "", actual)
            continue
        if imp.name not in wasi.FUNCTIONS:
            raise RegistryError(f"unexpected import `{what}`: not a WASI preview 1 function")
        expected = wasi.signature(imp.name)
        if actual != expected:
            raise RegistryError(
                f"import `{what}` has type {_show(actual)}; WASI preview 1 defines it as"
                f" {_show(expected)}"
            )


def _check_host_import(what: str, name: str, actual: tuple[tuple[str, ...], ...]) -> None:
    known = host.FUNCTIONS.get(name)
    provides = f"guest ABI {host.ABI_VERSION}: {', '.join(host.FUNCTIONS)}"
    if known is None:
        raise RegistryError(
            f"the module imports `{what}`, which this wasmq ({provides}) does not provide: it"
            " was built for a newer wasmq; upgrade wasmq where it registers and runs tasks"
        )
    if actual != known.signature:
        raise RegistryError(
            f"import `{what}` has type {_show(actual)}; this wasmq ({provides}) defines it as"
            f" {_show(known.signature)}: build against a matching SDK, or upgrade wasmq"
        )


def _check_function(name: str, kind: object, expected: tuple[tuple[str, ...], ...]) -> None:
    if not isinstance(kind, wasmtime.FuncType):
        raise RegistryError(f"the module's `{name}` export is not a function")
    actual = (tuple(str(p) for p in kind.params), tuple(str(r) for r in kind.results))
    if actual != expected:
        raise RegistryError(
            f"the module's `{name}` export has type {_show(actual)}; expected {_show(expected)}"
        )


PAGE = 65536

#: Validation errors of proposals the engine has off (runtime.sandbox.engine), in words.
_REFUSED_FEATURES = (
    ("memory64", "a 64-bit memory"),
    ("multiple memories", "more than one memory"),
    ("shared memor", "a shared memory (threads)"),
    ("threads", "threads"),
    ("gc feature", "GC types"),
    ("gc proposal", "GC types"),
    ("exceptions", "exception handling"),
    ("function references", "typed function references"),
)


def table_minimums(data: bytes) -> list[int]:
    """The initial sizes of the tables a (valid) module defines, read from its binary.

    wasmtime-py does not describe tables that are not exported, so the table section
    (id 4) is read directly; imported tables are refused separately."""
    pos, minimums = 8, []
    while pos < len(data):
        section = data[pos]
        size, pos = read_u32(data, pos + 1)
        end = pos + size
        if section == 4:
            count, pos = read_u32(data, pos)
            for _ in range(count):
                pos += 1  # the element type (funcref or externref)
                flags = data[pos]
                minimum, pos = read_u32(data, pos + 1)
                if flags & 1:
                    _, pos = read_u32(data, pos)
                minimums.append(minimum)
        pos = end
    return minimums


def _check_tables(data: bytes) -> None:
    try:
        minimums = table_minimums(data)
    except (ValueError, IndexError):  # BinaryError is a ValueError
        raise RegistryError("the module's table section cannot be read") from None
    if len(minimums) > MAX_TABLES:
        raise RegistryError(
            f"the module defines {len(minimums)} tables; a task may have at most {MAX_TABLES}"
        )
    for minimum in minimums:
        if minimum > TABLE_ELEMENTS:
            raise RegistryError(
                f"the module has a table of {minimum} elements; a task's tables hold at most"
                f" {TABLE_ELEMENTS}"
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
