"""Fuzzing the host boundary: every host function with random and extreme arguments.

Hypothesis writes modules that fill memory with random bytes (iovec arrays, subscriptions,
strings), then call one or a few preview1 or ``wasmq`` functions with arguments drawn from
the values
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

from runtime.sandbox import Capabilities, Sandbox, TaskLimits, host, wasi
from runtime.sandbox.engine import get_engine
from tests.support.paths import WAT

pytestmark = pytest.mark.slow

LIMITS = TaskLimits(timeout=0.3, memory=4 << 20, result=1 << 16, logs=1 << 16)
OUTCOMES = {"ok", "exit", "trap", "timeout", "memory_limit", "bad_result", "handler"}

#: Every function a task may import: (module, name) -> (params, results).
SIGNATURES: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {
    **{(wasi.MODULE, name): wasi.signature(name) for name in wasi.FUNCTIONS},
    **{(host.MODULE, f.name): f.signature for f in host.FUNCTIONS.values()},
}
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


def f64s() -> st.SearchStrategy[float]:
    return st.floats(allow_nan=True, allow_infinity=True)


def _const(kind: str, value: float) -> str:
    if kind != "f64":
        return f"({kind}.const {int(value)})"
    if value != value:
        return "(f64.const nan)"
    if value in (float("inf"), float("-inf")):
        return f"(f64.const {'-' if value < 0 else ''}inf)"
    return f"(f64.const {value.hex()})"


Call = tuple[tuple[str, str], list[float]]
_DRAW = {"i32": i32s, "i64": i64s, "f64": f64s}


@st.composite
def calls(draw: st.DrawFn) -> list[Call]:
    """One to three calls, each a function and arguments fitting its signature."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        function = draw(st.sampled_from(sorted(SIGNATURES)))
        params, _ = SIGNATURES[function]
        out.append((function, [draw(_DRAW[p]()) for p in params]))
    return out


def module_text(sequence: list[Call], data: bytes, repeat: int) -> str:
    functions = sorted({function for function, _ in sequence})
    imports = []
    for module, name in functions:
        params, results = SIGNATURES[(module, name)]
        result = f" (result {' '.join(results)})" if results else ""
        imports.append(
            f'(import "{module}" "{name}" (func ${module}.{name} (param {" ".join(params)})'
            f"{result}))"
        )
    body = []
    for (module, name), args in sequence:
        params, results = SIGNATURES[(module, name)]
        consts = " ".join(_const(p, a) for p, a in zip(params, args, strict=True))
        call = f"(call ${module}.{name} {consts})"
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
    sequence: list[Call],
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
