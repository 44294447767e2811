"""The preview1 table (:data:`runtime.sandbox.wasi.FUNCTIONS`): every import registration
accepts is linked, with the same type, on every linker a task may get, and the linker
defines nothing registration would refuse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import wasmtime

from runtime.errors import RegistryError
from runtime.modules.contract import check_module, compile_checked
from runtime.sandbox import Sandbox, TaskLimits, raw, wasi
from runtime.sandbox.engine import get_engine
from runtime.settings import Settings

LIMITS = TaskLimits(timeout=5.0, memory=1 << 20, result=1 << 16, logs=1 << 16)
TASK = (
    '(memory (export "memory") 1)'
    ' (func (export "alloc") (param i32) (result i32) (i32.const 0))'
    ' (func (export "execute") (param i32 i32) (result i64) (i64.const 0))'
)
#: Functions of other WASI flavours that a toolchain may import; no linker has them.
FOREIGN = {"sock_open": ((), ()), "sock_connect": (("i32", "i32", "i32"), ("i32",))}


def importing(signatures: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> bytes:
    imports = []
    for name, (params, results) in signatures.items():
        param = f" (param {' '.join(params)})" if params else ""
        result = f" (result {' '.join(results)})" if results else ""
        imports.append(f'(import "{wasi.MODULE}" "{name}" (func{param}{result}))')
    return bytes(wasmtime.wat2wasm(f"(module {' '.join(imports)} {TASK})"))


def table() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    return {name: wasi.signature(name) for name in wasi.FUNCTIONS}


class RecordingBackend(raw.PublicBackend):
    """The public backend, noting what it defines."""

    def __init__(self) -> None:
        self.defined: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def define(
        self,
        linker: wasmtime.Linker,
        module: str,
        name: str,
        params: list[wasmtime.ValType],
        results: list[wasmtime.ValType],
        func: Any,
    ) -> None:
        assert module == wasi.MODULE
        self.defined[name] = (tuple(map(str, params)), tuple(map(str, results)))
        super().define(linker, module, name, params, results, func)


@pytest.fixture(
    scope="module", params=["auto-own", "auto-wasmtime", "public-own", "public-wasmtime"]
)
def box(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    api, impl = request.param.split("-")
    settings = Settings.load({"sandbox_api": api}, environ={}, env_file=None)
    sandbox = Sandbox(settings, wasi_impl=impl)
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest.mark.parametrize("fuel", [0, 10**9], ids=["plain", "fuel"])
def test_every_import_registration_accepts_is_linked(box: Sandbox, fuel: int) -> None:
    data = importing(table())
    module = compile_checked(get_engine(fuel > 0), data)
    limits = TaskLimits(LIMITS.timeout, LIMITS.memory, LIMITS.result, LIMITS.logs, fuel)
    digest = hashlib.sha256(data).hexdigest()
    # Linking checks each import's type against the definition.
    outcome = box.run(module, digest, b"", limits, task_name="imports")
    assert (outcome.kind, outcome.message) == ("ok", "")


def test_the_linker_defines_exactly_what_registration_accepts() -> None:
    backend = RecordingBackend()
    wasi.define(wasmtime.Linker(get_engine()), backend)
    assert backend.defined == table()
    for name, signature in backend.defined.items():
        check_module(wasmtime.Module(get_engine(), importing({name: signature})))


def test_capability_tasks_get_the_shadowed_functions_from_the_table() -> None:
    backend = RecordingBackend()
    linker = wasmtime.Linker(get_engine())
    linker.define_wasi()
    linker.allow_shadowing = True
    wasi.define(linker, backend, only=wasi.SHADOWED)
    assert set(backend.defined) == set(wasi.SHADOWED)
    with pytest.raises(ValueError, match="poll_oneof"):
        wasi.define(linker, backend, only=("poll_oneof",))


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_an_import_off_the_table_is_neither_accepted_nor_linked(name: str) -> None:
    data = importing({name: FOREIGN[name]})
    with pytest.raises(RegistryError, match="not a WASI preview 1 function"):
        compile_checked(get_engine(), data)
    ours = wasmtime.Linker(get_engine())
    wasi.define(ours, raw.backend())
    theirs = wasmtime.Linker(get_engine())
    theirs.define_wasi()
    for linker in (ours, theirs):
        with pytest.raises(wasmtime.WasmtimeError):
            linker.instantiate_pre(wasmtime.Module(get_engine(), data))
