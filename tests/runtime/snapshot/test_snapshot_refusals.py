"""What a snapshot cannot keep is refused with a one-line reason, and nothing else is:
bytes inside immediates that look like table-changing opcodes are not mistaken for them."""

from __future__ import annotations

import hashlib
import struct

import pytest

from runtime.snapshot import NotSnapshotted, has_initializer, take
from runtime.snapshot import binary as wasm
from tests.runtime.snapshot.conftest import LIMITS, RunTask, Snap, Wat

TABLE = """
  (table $t 2 funcref)
  (func $f)
  (elem declare func $f)
  (elem $passive func $f)
"""


def task(execute: str = "", extra: str = "", initialize: bool = True) -> str:
    init = '(func (export "_initialize"))' if initialize else ""
    return f"""(module
  (memory (export "memory") 1)
  {extra}
  {init}
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (drop (i32.const 38)) (drop (i32.const 252))
    {execute}
    (i64.const 0)))"""


def refused(data: bytes) -> str:
    with pytest.raises(NotSnapshotted) as caught:
        take(data, hashlib.sha256(data).hexdigest(), "t", LIMITS)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("instruction", "code"),
    [
        ("table.set", "(table.set $t (i32.const 0) (ref.func $f))"),
        ("table.grow", "(drop (table.grow $t (ref.null func) (i32.const 1)))"),
        ("table.fill", "(table.fill $t (i32.const 0) (ref.null func) (i32.const 1))"),
        ("table.copy", "(table.copy $t $t (i32.const 0) (i32.const 1) (i32.const 1))"),
        ("table.init", "(table.init $t $passive (i32.const 0) (i32.const 0) (i32.const 1))"),
        ("elem.drop", "(elem.drop $passive)"),
    ],
)
def test_code_that_changes_a_table_is_refused(wat: Wat, instruction: str, code: str) -> None:
    message = refused(wat(task(code, TABLE)))
    assert message == f"its code can change a table ({instruction}), which a snapshot cannot keep"


def test_a_table_change_in_any_function_is_found(wat: Wat) -> None:
    helper = TABLE + "(func $never (table.set $t (i32.const 1) (ref.null func)))"
    assert "(table.set)" in refused(wat(task("", helper)))


def test_passive_data_is_refused(wat: Wat) -> None:
    data = wat(task("", '(data "passive bytes") (data (i32.const 8) "active")'))
    assert refused(data) == "it has passive data segments"


@pytest.mark.parametrize(
    ("kind", "init"),
    [
        ("funcref", "(ref.null func)"),
        ("externref", "(ref.null extern)"),
        ("v128", "(v128.const i64x2 1 2)"),
    ],
)
def test_a_mutable_global_that_is_not_a_number_is_refused(wat: Wat, kind: str, init: str) -> None:
    extra = f"(global (mut i32) (i32.const 1)) (global (mut {kind}) {init})"
    assert refused(wat(task("", extra))) == "its mutable global 1 is not a plain number"


def test_immutable_reference_globals_are_kept(wat: Wat, snap: Snap) -> None:
    extra = "(global funcref (ref.null func)) (global (mut i64) (i64.const -3))"
    assert snap(wat(task("", extra))).kept == ()


def test_a_module_without_initializer_is_refused(wat: Wat) -> None:
    data = wat(task(initialize=False))
    assert not has_initializer(data)
    assert refused(data) == "it does not export _initialize"


def test_a_memory_exported_under_another_name_is_refused(wat: Wat) -> None:
    data = wat(task().replace('(export "memory")', '(export "heap")'))
    assert refused(data) == "it does not export its memory as memory"


def test_an_initializer_that_is_not_a_function_is_refused(wat: Wat) -> None:
    extra = '(global (export "_initialize") i32 (i32.const 0))'
    data = wat(task("", extra, initialize=False))
    assert not has_initializer(data)
    assert refused(data) == "it does not export _initialize"


def test_an_export_named_like_the_instrumentation_is_refused_not_crashed(wat: Wat) -> None:
    extra = '(global (export "__wasmq_snapshot_global_0") (mut i32) (i32.const 0))'
    message = refused(wat(task("", extra)))
    assert message.startswith("its instrumented copy does not compile: duplicate export name")


def test_immediates_that_look_like_table_changes_are_not_refused(
    wat: Wat, snap: Snap, run_task: RunTask
) -> None:
    data = wat("immediates")
    code = wasm.section(wasm.sections(data), wasm.CODE)
    assert code is not None and b"\x26" in code.body and b"\xfc" in code.body
    assert b"\x41\x26" in code.body and b"\x41\xfc\x01" in code.body  # i32.const 38, 252
    snapshot = snap(data)
    outcome = run_task(snapshot.data, b"")
    assert outcome.ok, outcome.message
    assert outcome.result == run_task(data, b"").result
    seen, wide, doubled = struct.unpack("<iqi", outcome.result[1000:])
    assert (wide, doubled) == (0x26FC26FC26FC, 76)
    assert seen != 0
