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


#: Proposals a task module may use: what Go, TinyGo, Zig and clang emit. Everything else
#: is off, because each is a way to allocate or share outside the store's limits: GC
#: objects live outside linear memory, shared memories and threads outlive a task,
#: several memories or 64-bit memories would each get the whole memory limit.
FEATURES_ON = (
    "wasm_bulk_memory",
    "wasm_multi_value",
    "wasm_reference_types",
    "wasm_simd",
    "wasm_relaxed_simd",
    "wasm_tail_call",
)
FEATURES_OFF = (
    "wasm_gc",
    "wasm_function_references",
    "wasm_exceptions",
    "wasm_threads",
    "wasm_multi_memory",
    "wasm_memory64",
    "wasm_custom_page_sizes",
    "wasm_stack_switching",
    "wasm_wide_arithmetic",
    "wasm_component_model",
)


def _config(fuel: bool) -> wasmtime.Config:
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.consume_fuel = fuel
    config.max_wasm_stack = MAX_WASM_STACK
    config.cranelift_opt_level = "speed"
    config.parallel_compilation = False
    # A snapshot's memory is mapped copy-on-write from its image, not copied per task.
    config.memory_init_cow = True
    for feature in FEATURES_OFF:
        setattr(config, feature, False)
    for feature in FEATURES_ON:
        setattr(config, feature, True)
    config.wasm_relaxed_simd_deterministic = True
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
        f"wasmtime={wasmtime_version()};epoch=1;fuel={int(fuel)};stack={MAX_WASM_STACK};opt=speed;cow=1"
        f";on={','.join(FEATURES_ON)};off={','.join(FEATURES_OFF)}"
    )
    return hashlib.sha256(settings.encode()).hexdigest()[:16]
