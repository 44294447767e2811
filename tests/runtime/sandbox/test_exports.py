"""The export table (:mod:`runtime.sandbox.exports`) is what registration checks and what
the sandbox calls: a module built from the table registers and runs on both backends, and
a module that strays from it is refused by both, with the same words.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import wasmtime

from runtime.errors import RegistryError
from runtime.modules.cache import ModuleCache
from runtime.modules.contract import compile_checked
from runtime.queue import keys
from runtime.sandbox import Sandbox, TaskLimits
from runtime.sandbox.engine import get_engine
from runtime.sandbox.exports import ALLOC, EXECUTE, FUNCTIONS, INITIALIZE, MEMORY, Export
from runtime.settings import Settings

LIMITS = TaskLimits(timeout=5.0, memory=1 << 20, result=1 << 16, logs=1 << 16)
#: ``_initialize`` stores 7 at FLAG; ``alloc`` answers BUFFER, right after the flag; the
#: result ``execute`` points at is the flag followed by the payload.
FLAG, BUFFER = 60, 64
BODIES = {
    INITIALIZE.name: f"(i32.store (i32.const {FLAG}) (i32.const 7))",
    ALLOC.name: f"(i32.const {BUFFER})",
    EXECUTE.name: (
        f"(i64.or (i64.shl (i64.const {FLAG}) (i64.const 32))"
        " (i64.extend_i32_u (i32.add (local.get 1) (i32.const 4))))"
    ),
}


@pytest.fixture(scope="module", params=["auto", "public"])
def box(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    sandbox = Sandbox(Settings.load({"sandbox_api": request.param}, environ={}, env_file=None))
    try:
        yield sandbox
    finally:
        sandbox.close()


def function(export: Export, body: str = "unreachable") -> str:
    params = f" (param {' '.join(export.params)})" if export.params else ""
    results = f" (result {' '.join(export.results)})" if export.results else ""
    return f'(func (export "{export.name}"){params}{results} {body})'


def build(exports: list[Export], memory: bool = True) -> bytes:
    """A module with these function exports (and the memory, unless ``memory`` is False,
    when the functions only trap: their bodies use the memory)."""
    parts = [f'(memory (export "{MEMORY}") 1)'] if memory else []
    bodies = BODIES if memory else {}
    parts += [function(e, bodies.get(e.name, "unreachable")) for e in exports]
    return bytes(wasmtime.wat2wasm(f"(module {' '.join(parts)})"))


def run(box: Sandbox, data: bytes, payload: bytes = b"hello") -> tuple[str, str, bytes]:
    module = wasmtime.Module(get_engine(), data)
    digest = hashlib.sha256(data).hexdigest()
    outcome = box.run(module, digest, payload, LIMITS, task_name="exports")
    return outcome.kind, outcome.message, outcome.result


def refusal(data: bytes) -> str:
    with pytest.raises(RegistryError) as info:
        compile_checked(get_engine(), data)
    return str(info.value)


def test_a_module_built_from_the_table_registers_and_runs(box: Sandbox) -> None:
    data = build(list(FUNCTIONS))
    compile_checked(get_engine(), data)
    # The flag shows _initialize ran; the payload, that alloc's pointer and execute's
    # arguments were used as the table says.
    assert run(box, data) == ("ok", "", struct.pack("<I", 7) + b"hello")


@pytest.mark.parametrize("export", FUNCTIONS, ids=lambda e: e.name)
def test_an_export_off_the_table_is_refused_by_both(box: Sandbox, export: Export) -> None:
    stray = Export(export.name, (*export.params, "i32"), export.results)
    data = build([stray if e is export else e for e in FUNCTIONS])
    message = refusal(data)
    assert f"`{export.name}` export has type" in message
    kind, why, _ = run(box, data)
    assert kind == "instantiate" and message in why


@pytest.mark.parametrize("export", FUNCTIONS, ids=lambda e: e.name)
def test_a_missing_export_is_refused_only_when_required(box: Sandbox, export: Export) -> None:
    data = build([e for e in FUNCTIONS if e is not export])
    if export.required:
        message = refusal(data)
        assert f"does not export `{export.name}`" in message
        kind, why, _ = run(box, data)
        assert kind == "instantiate" and message in why
    else:
        compile_checked(get_engine(), data)
        assert run(box, data) == ("ok", "", bytes(4) + b"hello")


def test_a_module_without_its_memory_is_refused_by_both(box: Sandbox) -> None:
    data = build(list(FUNCTIONS), memory=False)
    message = refusal(data)
    assert f"does not export `{MEMORY}`" in message
    kind, why, _ = run(box, data)
    assert kind == "instantiate" and message in why


def test_every_argument_is_an_i32() -> None:
    # Both backends pass call arguments as i32 values (raw.Instance.call).
    assert {p for f in FUNCTIONS for p in f.params} == {"i32"}


V128_MODULES = {
    "export": """(module (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) i32.const 0)
      (func (export "execute") (param i32 i32) (result i64) i64.const 0)
      (func (export "helper") (param v128) (result v128) local.get 0))""",
    "import": """(module (import "wasmq" "progress" (func (param v128)))
      (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) i32.const 0)
      (func (export "execute") (param i32 i32) (result i64) i64.const 0))""",
    "import before a memory import": """(module
      (import "wasmq" "progress" (func (param v128)))
      (import "wasi_snapshot_preview1" "memory" (memory 1))
      (func (export "alloc") (param i32) (result i32) i32.const 0)
      (func (export "execute") (param i32 i32) (result i64) i64.const 0))""",
    "execute": """(module (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) i32.const 0)
      (func (export "execute") (param v128) (result i64) i64.const 0))""",
}


@pytest.mark.parametrize("where", sorted(V128_MODULES))
def test_v128_in_a_signature_is_refused_before_wasmtime_is_asked_to_describe_it(
    where: str,
) -> None:
    # wasmtime-py aborts the whole process when it describes a v128 value type: the
    # contract must refuse such a module from its bytes, on registration and in a worker.
    data = wasmtime.wat2wasm(V128_MODULES[where])
    with pytest.raises(RegistryError, match="v128; task modules import and export"):
        compile_checked(get_engine(), data)


def test_v128_inside_a_module_is_fine() -> None:
    data = wasmtime.wat2wasm(
        """(module (memory (export "memory") 1)
          (func $splat (param v128) (result v128) local.get 0)
          (func (export "alloc") (param i32) (result i32) i32.const 0)
          (func (export "execute") (param i32 i32) (result i64)
            (drop (call $splat (v128.const i64x2 1 2))) i64.const 0))"""
    )
    compile_checked(get_engine(), data)


def test_a_worker_refuses_a_v128_module_that_reached_redis(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    # A module written into Redis by hand never passed registration: the worker's compile
    # step applies the same check from the bytes instead of aborting in check_module.
    data = wasmtime.wat2wasm(V128_MODULES["export"])
    digest = hashlib.sha256(data).hexdigest()
    redis_client.set(keys.module(digest), data)
    with pytest.raises(RegistryError, match="v128"):
        ModuleCache(tmp_path, redis_client).load(digest)
