"""Fuzzing the host boundary: every WASI function with random and extreme arguments.

Hypothesis writes modules that fill memory with random bytes (iovec arrays, subscriptions,
strings), then call one or a few preview1 functions with arguments drawn from the values
that break hosts (0, -1, page and memory edges, huge lengths, random). Each run must end
in a recorded outcome within its time bound, and the next normal task must succeed: the
host neither crashes, hangs, nor carries anything over. Runs on our WASI and on
wasmtime's (capability tasks), in bounded time (``max_examples``).
"""

from __future__ import annotations

import time

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.sandbox import Capabilities, Sandbox, TaskLimits
from runtime.sandbox.engine import get_engine
from runtime.sandbox.wasi import FUNCTIONS, MODULE, signature
from tests.support.paths import WAT

pytestmark = pytest.mark.slow

LIMITS = TaskLimits(timeout=0.3, memory=4 << 20, result=1 << 16, logs=1 << 16)
OUTCOMES = {"ok", "exit", "trap", "timeout", "memory_limit", "bad_result"}
PAGE = 65536
PAGES = 2

I32_EDGES = [
    0,
    1,
    2,
    3,
    4,
    8,
    -1,
    -8,
    0x7FFFFFFF,
    -0x80000000,
    PAGE - 4,
    PAGE,
    PAGES * PAGE - 1,
    PAGES * PAGE,
    PAGES * PAGE - 8,
    1 << 20,
    1000000,
]
I64_EDGES = [0, 1, -1, 0x7FFFFFFFFFFFFFFF, -0x8000000000000000, 1 << 32, 10**9, 10**15]


def i32s() -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from(I32_EDGES), st.integers(-(2**31), 2**31 - 1), st.integers(0, PAGES * PAGE)
    )


def i64s() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(I64_EDGES), st.integers(-(2**63), 2**63 - 1))


@st.composite
def calls(draw: st.DrawFn) -> list[tuple[str, list[int]]]:
    """One to three calls, each a function name and arguments fitting its signature."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(FUNCTIONS)))
        params, _ = signature(name)
        out.append((name, [draw(i64s() if p == "i64" else i32s()) for p in params]))
    return out


def module_text(sequence: list[tuple[str, list[int]]], data: bytes, repeat: int) -> str:
    names = sorted({name for name, _ in sequence})
    imports = []
    for name in names:
        params, results = signature(name)
        result = f" (result {' '.join(results)})" if results else ""
        imports.append(
            f'(import "{MODULE}" "{name}" (func ${name} (param {" ".join(params)}){result}))'
        )
    body = []
    for name, args in sequence:
        params, results = signature(name)
        consts = " ".join(f"({p}.const {a})" for p, a in zip(params, args, strict=True))
        call = f"(call ${name} {consts})"
        body.append(f"(drop {call})" if results else call)
    hexdata = "".join(f"\\{b:02x}" for b in data)
    return f"""(module
  {" ".join(imports)}
  (memory (export "memory") {PAGES})
  (data (i32.const 0) "{hexdata}")
  (func (export "alloc") (param i32) (result i32) (i32.const {PAGES * PAGE - 4096}))
  (func (export "execute") (param i32 i32) (result i64)
    (local $i i32)
    (loop $again
      {" ".join(body)}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const {repeat}))))
    (i64.const 0)))"""


ECHO = wasmtime.Module(get_engine(), (WAT / "echo.wat").read_text())
CAPS = {"own": None, "wasmtime": Capabilities(env={"FUZZ": "1"})}


@pytest.mark.parametrize("wasi_impl", list(CAPS))
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sequence=calls(),
    data=st.binary(max_size=512),
    repeat=st.sampled_from([1, 2, 1000]),
)
def test_random_host_calls_end_in_a_recorded_outcome(
    sandbox: Sandbox,
    wasi_impl: str,
    sequence: list[tuple[str, list[int]]],
    data: bytes,
    repeat: int,
) -> None:
    module = wasmtime.Module(get_engine(), module_text(sequence, data, repeat))
    started = time.monotonic()
    outcome = sandbox.run(
        module,
        f"fuzz-{id(module)}",
        b"x",
        LIMITS,
        task_name="fuzz",
        capabilities=CAPS[wasi_impl],
    )
    took = time.monotonic() - started
    assert outcome.kind in OUTCOMES, (outcome.kind, outcome.message, sequence)
    assert outcome.kind != "trap" or outcome.trap_code != "host_error", outcome.message
    assert took <= LIMITS.timeout + 0.1, (took, sequence)
    assert outcome.log_bytes <= LIMITS.logs
    after = sandbox.run(ECHO, "echo", b"next", LIMITS, task_name="echo")
    assert after.ok and after.result == b"next", after.message
