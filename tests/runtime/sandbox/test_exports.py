"""The export table (:mod:`runtime.sandbox.exports`) is what registration checks and what
the sandbox calls: a module built from the table registers and runs on both backends, and
a module that strays from it is refused by both, with the same words.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator

import pytest
import wasmtime

from runtime.errors import RegistryError
from runtime.modules.contract import compile_checked
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
