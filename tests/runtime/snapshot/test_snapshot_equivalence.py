"""A snapshot runs exactly like the module it was taken from: same result, same output,
same outcome, for every kind of state ``_initialize`` can leave; and it is a valid task
module of its own that no longer runs the initializer."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
import wasmtime

from runtime.modules.contract import compile_checked
from runtime.sandbox import Outcome
from runtime.sandbox.engine import get_engine
from runtime.snapshot import CUSTOM_SECTION, FORMAT, has_initializer
from runtime.snapshot import binary as wasm
from tests.runtime.snapshot.conftest import RunTask, Snap, Wat

MODULES = ["numeric_globals", "grown_memory", "start_function", "data_count", "immediates"]


def same_run(original: Outcome, snapshot: Outcome) -> None:
    assert snapshot.kind == original.kind, (original.message, snapshot.message)
    assert snapshot.result == original.result
    assert [(c.stream, c.data) for c in snapshot.logs] == [
        (c.stream, c.data) for c in original.logs
    ]
    assert snapshot.trap_code == original.trap_code
    assert snapshot.exit_code == original.exit_code


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("payload", [b"", b"x"])
def test_the_snapshot_runs_like_the_module(
    wat: Wat, snap: Snap, run_task: RunTask, name: str, payload: bytes
) -> None:
    data = wat(name)
    snapshot = snap(data)
    original = run_task(data, payload)
    same_run(original, run_task(snapshot.data, payload))
    if name != "data_count" or not payload:
        assert original.ok, original.message


def test_numeric_globals_keep_their_exact_values(wat: Wat, snap: Snap, run_task: RunTask) -> None:
    outcome = run_task(snap(wat("numeric_globals")).data, b"")
    assert outcome.ok, outcome.message
    values = struct.unpack("<3i3q2f2d2i", outcome.result)
    assert values[:6] == (-(2**31), 2**31 - 1, 64, -(2**63), 2**63 - 1, -65)
    assert values[6] == struct.unpack("<f", struct.pack("<f", -3.4028235e38))[0]
    assert struct.pack("<f", values[7]) == struct.pack("<f", -0.0)  # the sign survives
    assert values[8:10] == (-1.7976931348623157e308, 5e-324)
    assert values[10:] == (7, -5)
    assert outcome.stdout == outcome.result


def test_memory_grown_by_the_initializer_is_the_snapshots_initial_memory(
    wat: Wat, snap: Snap, run_task: RunTask
) -> None:
    snapshot = snap(wat("grown_memory"))
    assert snapshot.memory_bytes == 21 * 65536
    memory = wasmtime.Module(get_engine(False), snapshot.data).exports[0].type
    assert isinstance(memory, wasmtime.MemoryType)
    assert memory.limits.min == 21
    outcome = run_task(snapshot.data, b"")
    pages, high, middle = struct.unpack_from("<IqI", outcome.result)
    assert (pages, high, middle) == (21, 0x0102030405060708, 0xFFFFFFFF)
    pattern = outcome.result[16:216]
    assert pattern[0] == 1 and pattern[64] == 2 and pattern[129] == 3
    assert pattern.count(0) == 197
    assert outcome.result[216:] == b"From the data segment"  # the initializer's "F"


def test_a_start_function_ran_once_in_the_snapshot(wat: Wat, snap: Snap, run_task: RunTask) -> None:
    snapshot = snap(wat("start_function"))
    assert wasm.section(wasm.sections(snapshot.data), wasm.START) is None
    for _ in range(2):
        outcome = run_task(snapshot.data, b"")
        # memory count, what _initialize saw, global count
        assert struct.unpack("<3i", outcome.result) == (1, 1, 1)


def test_data_segment_indexes_stay_valid(wat: Wat, snap: Snap, run_task: RunTask) -> None:
    data = wat("data_count")
    assert wasm.section(wasm.sections(data), wasm.DATA_COUNT) is not None
    snapshot = snap(data)
    parts = wasm.sections(snapshot.data)
    segments = wasm.read_data(wasm.section(parts, wasm.DATA).body)  # type: ignore[union-attr]
    count, _ = wasm.read_u32(wasm.section(parts, wasm.DATA_COUNT).body, 0)  # type: ignore[union-attr]
    assert count == len(segments) == 4  # three emptied originals, then the memory
    assert [s.active for s in segments] == [False, False, False, True]
    ok = run_task(snapshot.data, b"")
    assert ok.result == b"hello\0\0\0\0\0World\0\0\0\0\0again"
    trapped = run_task(snapshot.data, b"x")
    assert trapped.kind == "trap" and trapped.phase == "execute"


def test_tasks_on_a_snapshot_never_see_each_other(wat: Wat, snap: Snap, run_task: RunTask) -> None:
    snapshot = snap(wat("init_counter"))
    seen = [struct.unpack("<2i", run_task(snapshot.data, b"").result) for _ in range(3)]
    assert seen == [(101, 101)] * 3


@pytest.mark.parametrize("name", MODULES)
def test_the_snapshot_is_a_valid_task_module_without_initializer(
    wat: Wat, snap: Snap, name: str
) -> None:
    data = wat(name)
    snapshot = snap(data)
    assert snapshot.source_digest == hashlib.sha256(data).hexdigest()
    wasmtime.Module.validate(get_engine(False), snapshot.data)
    module = compile_checked(get_engine(False), snapshot.data)
    names = [e.name for e in module.exports]
    assert "_initialize" not in names
    assert {"memory", "alloc", "execute"} <= set(names)
    assert not [n for n in names if n.startswith("__wasmq")]  # the instrumented exports
    assert not has_initializer(snapshot.data)
    notes = [
        s.body
        for s in wasm.sections(snapshot.data)
        if s.id == wasm.CUSTOM and s.body.startswith(wasm.name(CUSTOM_SECTION))
    ]
    assert len(notes) == 1
    note = json.loads(notes[0][len(wasm.name(CUSTOM_SECTION)) :])
    assert note == {"format": FORMAT, "source": snapshot.source_digest}
