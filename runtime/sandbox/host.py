"""The ``wasmq`` host module: what a handler may ask of wasmq beyond WASI.

Both imports are optional; a module that imports neither runs exactly as one written to
the raw contract. The guest SDKs (``sdk/``) call them; other languages may import them
directly (the README's task contract gives the signatures).

- ``fail(kind: i32, msg_ptr: i32, msg_len: i32) -> i32``: the handler's error.
  ``kind`` is :data:`TERMINAL` or :data:`RETRYABLE`; the last call wins. When
  ``execute`` then returns, the attempt fails with this error (kind ``handler``) and its
  result is discarded.
- ``progress(value: f64, msg_ptr: i32, msg_len: i32) -> i32``: how far the handler is
  (any finite number, by convention a percentage) and an optional short message. The
  host keeps the latest; the worker writes it to Redis at most a few times a second.

Both answer 0, ``EFAULT`` (21) for a message outside memory or ``EINVAL`` (28) for a bad
kind or value, check the task's deadline first (like every host call) and copy at most
:data:`MAX_ERROR` / :data:`MAX_PROGRESS_MESSAGE` bytes, whatever length they are given.

Versions: :data:`ABI_VERSION` is the newest ABI this wasmq provides; each function
records the ABI that introduced it. A module importing a ``wasmq`` function this wasmq
does not know was built for a newer one: registration and workers refuse it, saying so.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import wasmtime

from runtime.sandbox import raw
from runtime.sandbox.capture import current
from runtime.sandbox.wasi import EINVAL, SUCCESS, check_span, guarded, memory_span

MODULE = "wasmq"
#: The newest guest ABI this wasmq provides.
ABI_VERSION = 1

#: ``fail`` kinds.
TERMINAL = 0
RETRYABLE = 1

#: Bytes of an error message kept; the rest is cut (and marked).
MAX_ERROR = 1024
#: Bytes of a progress message kept.
MAX_PROGRESS_MESSAGE = 200

_M32 = 0xFFFFFFFF


def _text(caller: Any, ptr: int, length: int, limit: int) -> str:
    """The guest's UTF-8 message, cut to ``limit`` bytes, on one printable line (a
    handler's words end up in operators' terminals: no control characters)."""
    if not length:
        return ""
    base, size = memory_span(caller)
    check_span(size, ptr, length)
    data = ctypes.string_at(base + ptr, min(length, limit))
    text = data.decode("utf-8", "replace")
    if length > limit:
        text = text.rstrip("\ufffd") + "…"
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def fail(caller: Any, vals: Any) -> int:
    kind = vals[0].i32
    if kind not in (TERMINAL, RETRYABLE):
        vals[0].i32 = EINVAL
        return 0
    message = _text(caller, vals[1].i32 & _M32, vals[2].i32 & _M32, MAX_ERROR)
    current().handler_error = (kind == RETRYABLE, message)
    vals[0].i32 = SUCCESS
    return 0


def progress(caller: Any, vals: Any) -> int:
    value = float(vals[0].f64)
    if not math.isfinite(value):
        vals[0].i32 = EINVAL
        return 0
    message = _text(caller, vals[1].i32 & _M32, vals[2].i32 & _M32, MAX_PROGRESS_MESSAGE)
    current().report_progress(value, message)
    vals[0].i32 = SUCCESS
    return 0


@dataclass(frozen=True)
class HostFunction:
    """One function of the ``wasmq`` module, with its wasm type and first ABI."""

    name: str
    params: tuple[str, ...]
    results: tuple[str, ...]
    since: int
    func: Callable[[Any, Any], int]

    @property
    def signature(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return self.params, self.results


#: Every function of the ``wasmq`` module: the linker defines exactly these, and
#: registration accepts exactly these imports with exactly these types.
FUNCTIONS: dict[str, HostFunction] = {
    f.name: f
    for f in (
        HostFunction("fail", ("i32", "i32", "i32"), ("i32",), 1, fail),
        HostFunction("progress", ("f64", "i32", "i32"), ("i32",), 1, progress),
    )
}

_TYPES = {
    "i32": wasmtime.ValType.i32,
    "i64": wasmtime.ValType.i64,
    "f64": wasmtime.ValType.f64,
}


def define(linker: wasmtime.Linker, backend: raw.Backend) -> None:
    """Defines every ``wasmq`` host function in ``linker``."""
    for f in FUNCTIONS.values():
        backend.define(
            linker,
            MODULE,
            f.name,
            [_TYPES[p]() for p in f.params],
            [_TYPES[r]() for r in f.results],
            guarded(f"{MODULE}.{f.name}", f.func),
        )


def abi_of(names: list[str]) -> int:
    """The ABI a module importing these ``wasmq`` functions needs (0: none of them)."""
    return max((FUNCTIONS[n].since for n in names if n in FUNCTIONS), default=0)
