"""The per-process ``wasmtime.Engine`` and the tag that keys native code built by it.

Two engine flavours exist because fuel metering changes the generated code: tasks
without a fuel limit (the usual case) run on the plain engine, tasks with one on the
metered engine. Both have epoch interruption on, which is how wall-time limits work.
Serialized native artifacts are keyed by :func:`engine_tag`, so code compiled by
another wasmtime version or another configuration is never loaded.
"""

from __future__ import annotations

import hashlib
import threading
from importlib import metadata

import wasmtime

#: Native stack a task may use; deep recursion traps instead of exhausting the host.
MAX_WASM_STACK = 512 * 1024

_engines: dict[bool, wasmtime.Engine] = {}
_lock = threading.Lock()


def wasmtime_version() -> str:
    try:
        return metadata.version("wasmtime")
    except metadata.PackageNotFoundError:  # pragma: no cover - vendored copy
        return "unknown"


def _config(fuel: bool) -> wasmtime.Config:
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.consume_fuel = fuel
    config.max_wasm_stack = MAX_WASM_STACK
    config.cranelift_opt_level = "speed"
    config.parallel_compilation = False
    return config


def get_engine(fuel: bool = False) -> wasmtime.Engine:
    """The process-wide engine of the given flavour (created on first use)."""
    with _lock:
        engine = _engines.get(fuel)
        if engine is None:
            engine = wasmtime.Engine(_config(fuel))
            _engines[fuel] = engine
        return engine


def engine_tag(fuel: bool = False) -> str:
    """Identifies native code compatible with :func:`get_engine` (version + config)."""
    settings = (
        f"wasmtime={wasmtime_version()};epoch=1;fuel={int(fuel)};stack={MAX_WASM_STACK};opt=speed"
    )
    return hashlib.sha256(settings.encode()).hexdigest()[:16]
