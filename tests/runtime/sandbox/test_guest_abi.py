"""The ``wasmq`` host module (fail, progress) and the result diagnostics, on both backends.

``guest_abi.wat`` picks what to do by its payload's first byte (see its header).
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import wasmtime

from runtime.errors import RegistryError
from runtime.modules.contract import compile_checked
from runtime.sandbox import Outcome, Sandbox, TaskLimits, host
from runtime.sandbox.engine import get_engine
from runtime.settings import Settings
from tests.support.paths import WAT

LIMITS = TaskLimits(timeout=10.0, memory=16 << 20, result=1 << 20, logs=1 << 20)


@pytest.fixture(scope="module", params=["auto", "public"])
def box(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    settings = Settings.load({}, environ={}, env_file=None)
    sandbox = Sandbox(replace(settings, sandbox_api=request.param))
    try:
        yield sandbox
    finally:
        sandbox.close()


def _module(name: str) -> wasmtime.Module:
    return compile_checked(get_engine(False), wasmtime.wat2wasm((WAT / f"{name}.wat").read_text()))


GUEST = _module("guest_abi")


def run(box: Sandbox, payload: bytes, limits: TaskLimits = LIMITS, **kw: object) -> Outcome:
    return box.run(GUEST, "guest-abi", payload, limits, task_name="guest", **kw)  # type: ignore[arg-type]


def test_a_module_that_reports_progress_succeeds_with_its_last_report(box: Sandbox) -> None:
    heard: list[tuple[float, str]] = []
    outcome = run(box, b"o", on_progress=lambda v, m: heard.append((v, m)))
    assert outcome.ok and outcome.result == b"done"
    assert outcome.progress == (50.0, "half")
    assert heard == [(50.0, "half")]


@pytest.mark.parametrize(
    ("payload", "retryable", "message"),
    [(b"t", False, "bad input"), (b"r", True, "try later"), (b"l", True, "second")],
)
def test_fail_ends_the_attempt_with_the_handlers_error(
    box: Sandbox, payload: bytes, retryable: bool, message: str
) -> None:
    outcome = run(box, payload)
    assert outcome.kind == "handler"
    assert outcome.retryable is retryable
    assert outcome.message == message
    assert outcome.result == b""


@pytest.mark.parametrize(("payload", "errno"), [(b"k", 28), (b"e", 21), (b"n", 28)])
def test_bad_arguments_get_an_errno_and_the_task_goes_on(
    box: Sandbox, payload: bytes, errno: int
) -> None:
    outcome = run(box, payload)
    assert outcome.ok, outcome.message
    assert outcome.result == bytes([errno])
    assert outcome.progress is None


def test_a_trap_after_fail_is_a_trap(box: Sandbox) -> None:
    outcome = run(box, b"x")
    assert outcome.kind == "trap"


def test_proc_exit_zero_after_fail_is_the_handlers_error(box: Sandbox) -> None:
    outcome = run(box, b"z")
    assert outcome.kind == "handler" and outcome.message == "bad input"
    assert not outcome.retryable


def test_a_long_message_is_cut_and_marked(box: Sandbox) -> None:
    outcome = run(box, b"m")
    assert outcome.message == "A" * host.MAX_ERROR + "…"


def test_control_characters_never_reach_a_terminal(box: Sandbox) -> None:
    outcome = run(box, b"c")
    assert outcome.message == "red [31m line two"
    assert all(ch.isprintable() for ch in outcome.message)


def test_a_progress_loop_is_cheap_and_keeps_only_the_last_report(box: Sandbox) -> None:
    calls = 0

    def hear(value: float, message: str) -> None:
        nonlocal calls
        calls += 1

    outcome = run(box, b"p" + struct.pack("<I", 20_000), on_progress=hear)
    assert outcome.ok, outcome.message
    assert outcome.progress == (1.0, "half")
    assert calls == 20_000  # the worker's publisher, not the sandbox, does the rate limit


def test_a_progress_loop_cannot_outrun_the_deadline(box: Sandbox) -> None:
    started = time.monotonic()
    outcome = run(box, b"p" + struct.pack("<I", 0x7FFFFFF0), replace(LIMITS, timeout=0.3))
    assert outcome.kind == "timeout"
    assert time.monotonic() - started < 3.0
    assert outcome.progress is not None and math.isfinite(outcome.progress[0])


def test_a_raising_progress_hook_never_fails_the_task(box: Sandbox) -> None:
    def broken(value: float, message: str) -> None:
        raise RuntimeError("publisher down")

    outcome = run(box, b"o", on_progress=broken)
    assert outcome.ok and outcome.progress == (50.0, "half")


# -- the contract and newer ABIs ---------------------------------------------------------------


def _wat_module(imports: str) -> bytes:
    return wasmtime.wat2wasm(
        f"""(module {imports}
          (memory (export "memory") 1)
          (func (export "alloc") (param i32) (result i32) (i32.const 0))
          (func (export "execute") (param i32 i32) (result i64) (i64.const 0)))"""
    )


def test_an_unknown_wasmq_import_is_a_newer_abi_and_refused_with_that_said() -> None:
    data = _wat_module('(import "wasmq" "sleep_until" (func (param i64) (result i32)))')
    with pytest.raises(RegistryError) as err:
        compile_checked(get_engine(False), data)
    message = str(err.value)
    assert "`wasmq.sleep_until`" in message
    assert f"guest ABI {host.ABI_VERSION}" in message
    assert "newer wasmq" in message and "upgrade wasmq" in message


def test_a_worker_refuses_a_newer_abi_module_with_the_same_words(box: Sandbox) -> None:
    # What a worker of this version does with a module from a newer registry: the
    # contract runs again before the first instantiation.
    data = _wat_module('(import "wasmq" "sleep_until" (func (param i64) (result i32)))')
    module = wasmtime.Module(get_engine(False), data)
    outcome = box.run(module, "newer-abi", b"", LIMITS, task_name="newer")
    assert outcome.kind == "instantiate" and not outcome.retryable
    assert "newer wasmq" in outcome.message


def test_a_wasmq_import_with_the_wrong_type_is_refused() -> None:
    data = _wat_module('(import "wasmq" "progress" (func (param i32 i32 i32) (result i32)))')
    with pytest.raises(RegistryError, match=r"import `wasmq.progress` has type \(i32, i32, i32\)"):
        compile_checked(get_engine(False), data)


def test_host_functions_are_only_functions() -> None:
    data = _wat_module('(import "wasmq" "fail" (global i32))')
    with pytest.raises(RegistryError, match="only functions may be imported"):
        compile_checked(get_engine(False), data)


def test_a_module_without_wasmq_imports_needs_no_abi() -> None:
    assert host.abi_of([]) == 0
    assert host.abi_of(["fail", "progress"]) == host.ABI_VERSION


# -- result diagnostics ------------------------------------------------------------------------


def test_a_result_in_the_freed_stack_is_refused_with_the_reason(box: Sandbox) -> None:
    module = _module("stack_result")
    outcome = box.run(module, "stack-result", b"r!!", LIMITS, task_name="stack")
    assert outcome.kind == "bad_result"
    assert "in its stack (below 32768)" in outcome.message
    assert "guest SDKs" in outcome.message
    fine = box.run(module, "stack-result", b"fine", LIMITS, task_name="stack")
    assert fine.ok and fine.result == b"fine"


def test_alloc_handing_out_stack_memory_is_refused_with_the_reason(box: Sandbox) -> None:
    module = _module("stack_result")
    outcome = box.run(module, "stack-result", b"ab", LIMITS, task_name="stack")
    assert outcome.kind == "bad_result" and outcome.phase == "alloc"
    assert "alloc returned 30000, an address in its stack" in outcome.message


def _packed(packed: int) -> wasmtime.Module:
    return compile_checked(
        get_engine(False),
        wasmtime.wat2wasm(
            f"""(module (memory (export "memory") 1)
              (func (export "alloc") (param i32) (result i32) (i32.const 1024))
              (func (export "execute") (param i32 i32) (result i64) (i64.const {packed})))"""
        ),
    )


def test_swapped_pointer_and_length_are_named(box: Sandbox) -> None:
    # A 5-byte result at 40000, packed length-first: it reads as 40000 bytes at 5.
    outcome = box.run(
        _packed(5 << 32 | 40000), "swapped", b"", replace(LIMITS, result=1000), task_name="s"
    )
    assert outcome.kind == "bad_result"
    assert "pointer 5 and length 40000: they look swapped" in outcome.message
    assert "pointer << 32 | length" in outcome.message


def test_memory_used_is_reported(box: Sandbox) -> None:
    outcome = run(box, b"o")
    assert outcome.memory_bytes == 65536
