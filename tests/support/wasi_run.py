"""Run a task module the simplest way: wasmtime's own WASI, stdout to a file.

Only a smoke test of the examples' ABI; the real sandbox (limits, capture) is tested
with the sandbox.
"""

from __future__ import annotations

from pathlib import Path

import wasmtime


def run_module(data: bytes, payload: bytes, tmp: Path) -> tuple[bytes, bytes]:
    """(result bytes, stdout bytes) of one alloc + execute call."""
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, data)
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    out = tmp / "stdout.txt"
    wasi.stdout_file = str(out)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    instance = linker.instantiate(store, module)
    exports = instance.exports(store)
    if "_initialize" in exports:
        exports["_initialize"](store)
    memory = exports["memory"]
    ptr = exports["alloc"](store, len(payload))
    memory.write(store, payload, ptr)
    packed = exports["execute"](store, ptr, len(payload)) & 0xFFFFFFFFFFFFFFFF
    res_ptr, res_len = packed >> 32, packed & 0xFFFFFFFF
    result = bytes(memory.read(store, res_ptr, res_ptr + res_len))
    del store
    return result, out.read_bytes() if out.exists() else b""
