"""Snapshots of real modules: every example task registered with its real toolchain runs
the same from its snapshot as from the module as built, and a Go handler that uses
goroutines, maps, the clock and random numbers works from a snapshot."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from compiler.assemblyscript import AssemblyScriptAdapter
from runtime.modules.cache import forget_memory
from runtime.modules.registry import Registry, TaskRecord
from runtime.sandbox import Outcome, Sandbox, TaskLimits
from runtime.settings import Settings
from tests.support.paths import TASKS

pytestmark = pytest.mark.toolchain

LIMITS = TaskLimits(timeout=20.0, memory=128 << 20, result=1 << 20, logs=1 << 20)
HERE = Path(__file__).parent
ADA, NOBODY = b'{"name": "Ada"}', b"{}"
FLAKY = [b'{"mode": "ok", "name": "n"}', b'{"mode": "retry"}', b'{"mode": "fail"}']
#: Examples whose modules export no _initialize (nothing to snapshot): WAT as written,
#: and Zig's reactors, which have no constructors to run.
NO_INITIALIZER = {"task_1_wat.wat", "echo.wat", "task_1_zig.zig", "word_count.zig"}


def _assemblyscript() -> Any:
    adapter = AssemblyScriptAdapter()
    missing = not adapter.available()
    reason = f"AssemblyScript is not installed: {adapter.install_hint()}" if missing else ""
    return pytest.mark.skipif(missing, reason=reason)


#: Each example and payloads that take it down each of its paths (ok, errors, output).
EXAMPLES = [
    pytest.param("task_1.go", [ADA, NOBODY], marks=pytest.mark.slow),
    pytest.param("greet.go", [ADA, NOBODY, b"not json"], marks=pytest.mark.slow),
    pytest.param("flaky.go", FLAKY, marks=pytest.mark.slow),
    pytest.param("task_1_c.c", [ADA, NOBODY]),
    pytest.param("echo_c.c", [b"hello", b"", bytes(range(256))]),
    pytest.param("flaky_c.c", FLAKY),
    pytest.param("task_1_zig.zig", [ADA, NOBODY]),
    pytest.param("word_count.zig", [b'{"text": "one two\\nthree"}', b'{"text": ""}', b"nope"]),
    pytest.param("task_1_wat.wat", [ADA, NOBODY]),
    pytest.param("echo.wat", [b"hello", b""]),
    pytest.param("hello_as.ts", [b'{"name": "Grace"}', NOBODY], marks=_assemblyscript()),
]


@pytest.fixture
def registry(settings: Settings, redis_client: redis.Redis, toolchain_cache: Path) -> Registry:
    forget_memory()
    return Registry(settings, redis_client, toolchain_cache=toolchain_cache)


def run(registry: Registry, sandbox: Sandbox, record: TaskRecord, payload: bytes) -> Outcome:
    module = registry.load_module(record.digest)
    return sandbox.run(module, record.digest, payload, LIMITS, task_name=record.name)


def observed(outcome: Outcome) -> dict[str, Any]:
    """What a task's user sees of its outcome; not its timings."""
    return {
        "kind": outcome.kind,
        "result": outcome.result,
        "message": outcome.message,
        "retryable": outcome.retryable,
        "exit_code": outcome.exit_code,
        "trap_code": outcome.trap_code,
        "phase": outcome.phase,
        "progress": outcome.progress,
        "output": [(chunk.stream, chunk.data) for chunk in outcome.logs],
        "log_dropped": outcome.log_dropped,
    }


@pytest.mark.parametrize(("source", "payloads"), EXAMPLES)
def test_example_runs_the_same_from_its_snapshot(
    source: str, payloads: list[bytes], registry: Registry, sandbox: Sandbox
) -> None:
    snap = registry.register(TASKS / source).record
    plain = registry.register(TASKS / source, snapshot=False)
    assert plain.cache_hit, "the second registration compiled again"
    built = plain.record
    if source in NO_INITIALIZER:
        assert snap.snapshot is None and snap.digest == built.digest
    else:
        assert snap.snapshot is not None and snap.snapshot.taken, snap.snapshot
        assert snap.digest != built.digest and snap.source_digest == built.digest
    assert built.name == snap.name and built.digest == built.source_digest
    kinds = set()
    for payload in payloads:
        expected = observed(run(registry, sandbox, built, payload))
        assert observed(run(registry, sandbox, snap, payload)) == expected, payload
        kinds.add(expected["kind"])
    assert "ok" in kinds


def report(outcome: Outcome) -> dict[str, Any]:
    assert outcome.ok, outcome.message
    value: dict[str, Any] = json.loads(outcome.result)
    return value


@pytest.mark.slow
def test_go_runtime_state_works_from_a_snapshot(registry: Registry, sandbox: Sandbox) -> None:
    record = registry.register(HERE / "go" / "stateful.go").record
    info = record.snapshot
    assert info is not None and info.taken, info
    # The Go runtime seeds its random state and reads the clock while it starts.
    assert info.kept == ("random", "clock")
    reports = []
    for _ in range(2):
        before = time.time() * 1000
        reports.append(report(run(registry, sandbox, record, b"")))
        after = time.time() * 1000
        # The clock is the host's, not the one frozen into the snapshot.
        assert before - 1000 <= reports[-1]["now_unix_ms"] <= after + 1000
    for seen in reports:
        assert seen["runs"] == 1, "a task saw another task's counter"
        assert seen["slept_ns"] >= seen["sleep_ns"] > 0
        assert seen["squares"] == 100 and seen["sum"] == sum(i * i for i in range(8))
        assert seen["draws"] == 1000 and seen["math_rand"] >= 0
        assert len(seen["crypto_rand"]) == 32
    # crypto/rand reads random_get in each call: fresh in every task.
    assert reports[0]["crypto_rand"] != reports[1]["crypto_rand"]
    # math/rand's default source was seeded in _initialize, so it is part of the
    # snapshot (why kept names "random"): every task of one snapshot draws the same.
    assert reports[0]["math_rand"] == reports[1]["math_rand"]
    built = registry.register(HERE / "go" / "stateful.go", snapshot=False).record
    plain = [report(run(registry, sandbox, built, b"")) for _ in range(2)]
    for seen in plain:
        assert (seen["runs"], seen["squares"], seen["sum"]) == (1, 100, 140)
    # As built, the runtime starts (and seeds math/rand) in each task.
    assert plain[0]["math_rand"] != plain[1]["math_rand"]
