"""The sandbox against purpose-written WAT modules: every limit and failure kind.

After each failure, the same Sandbox runs a normal task correctly (nothing leaks from a
failed task into the next one).
"""

from __future__ import annotations

import struct
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import wasmtime

from runtime.queue.task import Limits
from runtime.sandbox import Capabilities, LogChunk, Outcome, Sandbox, TaskLimits
from runtime.sandbox.engine import get_engine
from runtime.settings import Settings
from tests.support.paths import WAT

LIMITS = TaskLimits(timeout=10.0, memory=16 << 20, result=1 << 20, logs=1 << 20)


_modules: dict[tuple[str, bool], wasmtime.Module] = {}


def module(name: str, fuel: bool = False) -> wasmtime.Module:
    key = (name, fuel)
    if key not in _modules:
        _modules[key] = wasmtime.Module(get_engine(fuel), (WAT / f"{name}.wat").read_text())
    return _modules[key]


def run(
    box: Sandbox,
    name: str,
    payload: bytes = b"",
    limits: TaskLimits = LIMITS,
    capabilities: Capabilities | None = None,
    **kw: object,
) -> Outcome:
    mod = module(name, fuel=limits.fuel > 0)
    digest = f"{name}-{int(limits.fuel > 0)}"
    return box.run(mod, digest, payload, limits, task_name=name, capabilities=capabilities, **kw)  # type: ignore[arg-type]


def assert_healthy(box: Sandbox) -> None:
    outcome = run(box, "echo", b"still fine")
    assert outcome.ok, outcome.message
    assert outcome.result == b"still fine"
    assert outcome.stdout == b"out:still fine"


def test_echo_captures_both_streams_in_order(sandbox: Sandbox) -> None:
    seen: list[LogChunk] = []
    outcome = run(sandbox, "echo", b'{"name":"x"}', on_output=seen.append)
    assert outcome.kind == "ok" and outcome.ok
    assert outcome.result == b'{"name":"x"}'
    assert [(c.stream, c.data) for c in outcome.logs] == [
        (1, b'out:{"name":"x"}'),
        (2, b"err\n"),
    ]
    assert outcome.log_bytes == len(b'out:{"name":"x"}err\n')
    assert outcome.log_dropped == 0
    assert [c.data for c in seen] == [b'out:{"name":"x"}', b"err\n"]
    assert abs(outcome.logs[0].ts_ms - time.time() * 1000) < 5000
    assert outcome.duration_ms > 0


def test_every_task_gets_a_fresh_instance(sandbox: Sandbox) -> None:
    for _ in range(3):
        outcome = run(sandbox, "counter")
        assert struct.unpack("<II", outcome.result) == (1, 1)


def test_output_is_never_mixed_between_tasks_on_threads(sandbox: Sandbox) -> None:
    wrong: list[str] = []

    def worker(n: int) -> None:
        for i in range(50):
            payload = f"t{n}-{i}".encode()
            outcome = run(sandbox, "echo", payload)
            if outcome.result != payload or outcome.stdout != b"out:" + payload:
                wrong.append(f"{payload!r}: {outcome}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_second_sandbox_does_not_speed_up_the_clock(sandbox: Sandbox) -> None:
    other = Sandbox(Settings.load({}, environ={}, env_file=None))
    try:
        outcome = run(other, "loop_execute", limits=replace(LIMITS, timeout=0.3))
        assert outcome.kind == "timeout"
        assert outcome.duration_ms >= 290
    finally:
        other.close()
    outcome = run(sandbox, "loop_execute", limits=replace(LIMITS, timeout=0.2))
    assert outcome.kind == "timeout"  # the ticker still runs for the first sandbox
    assert_healthy(sandbox)


@pytest.mark.parametrize("name", ["loop_execute", "loop_initialize"])
def test_endless_loop_stops_near_the_deadline(sandbox: Sandbox, name: str) -> None:
    limits = replace(LIMITS, timeout=0.3)
    outcome = run(sandbox, name, limits=limits)
    assert outcome.kind == "timeout", outcome.message
    assert outcome.retryable
    assert 290 <= outcome.duration_ms < 1500, outcome.duration_ms
    assert "time limit of 300ms" in outcome.message
    assert outcome.phase == ("execute" if name == "loop_execute" else "_initialize")
    assert_healthy(sandbox)


def test_an_idle_pause_never_stops_a_deadline(sandbox: Sandbox) -> None:
    from runtime.sandbox import ticker

    # An idle worker disarms the ticker; the next task must re-arm it before it runs.
    sandbox.idle()
    if ticker.mode == "native":
        assert ticker._paused
    outcome = run(sandbox, "loop_execute", limits=replace(LIMITS, timeout=0.3))
    assert outcome.kind == "timeout", outcome.message
    assert 290 <= outcome.duration_ms < 1500, outcome.duration_ms
    assert not ticker._paused
    # A pause while a task runs (another thread's worker going idle) changes nothing.
    done: list[Outcome] = []
    thread = threading.Thread(
        target=lambda: done.append(
            run(sandbox, "loop_execute", limits=replace(LIMITS, timeout=0.5))
        )
    )
    thread.start()
    time.sleep(0.1)
    sandbox.idle()
    thread.join(5)
    assert done and done[0].kind == "timeout" and done[0].duration_ms < 1500
    assert_healthy(sandbox)


def test_fuel_limit_stops_a_loop_and_is_not_retried(sandbox: Sandbox) -> None:
    limits = replace(LIMITS, fuel=1_000_000)
    outcome = run(sandbox, "loop_execute", limits=limits)
    assert outcome.kind == "timeout"
    assert not outcome.retryable
    assert "fuel limit of 1000000" in outcome.message
    assert run(sandbox, "echo", b"fuel", limits=limits).result == b"fuel"
    assert_healthy(sandbox)


def test_memory_growth_past_the_cap(sandbox: Sandbox) -> None:
    limits = replace(LIMITS, memory=2 << 20)
    outcome = run(sandbox, "grow", limits=limits)
    assert outcome.kind == "memory_limit", outcome.message
    assert not outcome.retryable
    assert "memory limit of 2 MiB" in outcome.message
    assert_healthy(sandbox)


def test_initial_memory_over_the_cap_fails_instantiation(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "big_memory")
    assert outcome.kind == "instantiate"
    assert not outcome.retryable
    assert outcome.message.startswith("The module could not be instantiated:")
    assert run(sandbox, "big_memory", limits=replace(LIMITS, memory=512 << 20)).ok
    assert_healthy(sandbox)


def test_module_without_alloc_fails_instantiation(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "no_alloc")
    assert outcome.kind == "instantiate"
    assert "alloc" in outcome.message
    assert_healthy(sandbox)


def test_unbounded_recursion_is_a_stack_overflow_trap(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "recurse")
    assert outcome.kind == "trap"
    assert outcome.trap_code == "stack_overflow"
    assert outcome.retryable
    assert "overflowed its stack" in outcome.message
    assert_healthy(sandbox)


def test_output_flood_is_capped_and_bounded_in_time(sandbox: Sandbox) -> None:
    limits = replace(LIMITS, timeout=0.5, logs=64 * 1024)
    started = time.monotonic()
    outcome = run(sandbox, "flood", limits=limits)
    assert time.monotonic() - started < 3.0
    assert outcome.kind == "timeout"
    assert outcome.log_bytes == 64 * 1024
    assert sum(len(c.data) for c in outcome.logs) == 64 * 1024
    assert outcome.log_dropped > 64 * 1024
    assert_healthy(sandbox)


def test_result_pointer_out_of_bounds(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "bad_pointer")
    assert outcome.kind == "bad_result"
    assert not outcome.retryable
    assert "result pointer (high 32 bits) of 4026531840" in outcome.message
    assert "past the end of the task's 65536-byte memory" in outcome.message
    assert_healthy(sandbox)


def test_result_length_out_of_bounds(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "bad_length")
    assert outcome.kind == "bad_result"
    assert "result length (low 32 bits) of 4294967295" in outcome.message
    assert_healthy(sandbox)


def test_result_over_the_result_limit(sandbox: Sandbox) -> None:
    assert len(run(sandbox, "big_result").result) == 65536
    outcome = run(sandbox, "big_result", limits=replace(LIMITS, result=1000))
    assert outcome.kind == "bad_result"
    assert "over its result limit of 1000 bytes" in outcome.message
    assert_healthy(sandbox)


def test_proc_exit_zero_is_success_with_an_empty_result(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "exit", bytes([0]))
    assert outcome.ok
    assert outcome.result == b""
    assert outcome.exit_code == 0
    assert_healthy(sandbox)


def test_proc_exit_one_fails_terminally_with_stderr(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "exit", bytes([1]))
    assert outcome.kind == "exit"
    assert outcome.exit_code == 1
    assert not outcome.retryable
    assert outcome.stderr == b"giving up: database unavailable\n"
    assert outcome.message == (
        "The task exited with code 1; stderr: giving up: database unavailable."
    )
    assert_healthy(sandbox)


def test_proc_exit_75_asks_for_a_retry(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "exit", bytes([75]))
    assert outcome.kind == "exit"
    assert outcome.exit_code == 75
    assert outcome.retryable
    assert "asked for a retry" in outcome.message
    assert_healthy(sandbox)


def test_unreachable_traps_with_frames(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "unreachable")
    assert outcome.kind == "trap"
    assert outcome.trap_code == "unreachable"
    assert outcome.retryable
    assert outcome.frames and "fail" in outcome.frames[0]
    assert "unreachable code" in outcome.message
    assert_healthy(sandbox)


def test_host_files_are_out_of_reach(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "open_file")
    assert outcome.ok
    ebadf, enotcapable = 8, 76
    assert list(outcome.result) == [ebadf, ebadf, enotcapable]
    assert_healthy(sandbox)


def test_environment_is_empty_and_argv_is_the_task_name(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "environ")
    assert outcome.ok
    env_count, env_bytes, argc, argv_bytes = struct.unpack_from("<IIII", outcome.result)
    assert (env_count, env_bytes, argc) == (0, 0, 1)
    assert outcome.result[16:] == b"environ\0"
    assert argv_bytes == len(b"environ\0")
    assert_healthy(sandbox)


def test_bad_pointers_to_host_functions_answer_efault(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "bad_fd_write")
    assert outcome.ok
    assert list(outcome.result) == [21, 21]
    assert outcome.log_bytes == 0
    assert_healthy(sandbox)


def test_sleep_is_served_and_bounded_by_the_deadline(sandbox: Sandbox) -> None:
    outcome = run(sandbox, "sleep", struct.pack("<I", 50))
    assert outcome.ok
    errno, nevents, userdata = struct.unpack("<IIQ", outcome.result)
    assert (errno, nevents, userdata) == (0, 1, 42)
    assert outcome.duration_ms >= 50
    started = time.monotonic()
    limits = replace(LIMITS, timeout=0.3)
    outcome = run(sandbox, "sleep", struct.pack("<I", 60_000), limits=limits)
    assert outcome.kind == "timeout"
    assert time.monotonic() - started < 2.0
    assert_healthy(sandbox)


def test_capabilities_grant_a_directory_and_environment(sandbox: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hi from the host")
    caps = Capabilities(dirs=[(str(tmp_path), "/data", True)], env={"GREETING": "hello"})
    outcome = run(sandbox, "read_file", capabilities=caps)
    assert outcome.ok, outcome.message
    assert outcome.result == b"hi from the host" + b"GREETING=hello\0"
    # Without the grant the same module cannot open anything.
    assert run(sandbox, "read_file").kind == "trap"
    assert_healthy(sandbox)


def test_capability_path_captures_output_and_exit_codes(sandbox: Sandbox) -> None:
    caps = Capabilities(env={"A": "1"})
    outcome = run(sandbox, "echo", b"wasi", capabilities=caps)
    assert outcome.ok
    # wasmtime's fd_write may write only the first iovec (a legal short write).
    assert outcome.stdout in (b"out:wasi", b"out:")
    assert outcome.stderr == b"err\n"
    outcome = run(sandbox, "exit", bytes([75]), capabilities=caps)
    assert outcome.kind == "exit" and outcome.exit_code == 75 and outcome.retryable
    assert outcome.stderr == b"giving up: database unavailable\n"
    outcome = run(sandbox, "loop_execute", limits=replace(LIMITS, timeout=0.2), capabilities=caps)
    assert outcome.kind == "timeout"
    assert_healthy(sandbox)


def test_a_broken_output_hook_does_not_fail_the_task(sandbox: Sandbox) -> None:
    def hook(_chunk: LogChunk) -> None:
        raise RuntimeError("live stream down")

    outcome = run(sandbox, "echo", b"x", on_output=hook)
    assert outcome.ok
    assert outcome.stdout == b"out:x"


def test_module_from_the_wrong_engine_is_an_outcome_not_an_exception(sandbox: Sandbox) -> None:
    foreign = wasmtime.Module(wasmtime.Engine(), (WAT / "echo.wat").read_text())
    outcome = sandbox.run(foreign, "foreign", b"", LIMITS, task_name="foreign")
    assert not outcome.ok
    assert outcome.message
    assert_healthy(sandbox)


def test_limits_resolve_to_defaults_and_clamp_to_ceilings() -> None:
    settings = Settings.load(
        {
            "max_task_timeout": 60.0,
            "memory_limit": 32 << 20,
            "max_memory_limit": 64 << 20,
            "max_fuel": 1000,
        },
        environ={},
        env_file=None,
    )
    default = TaskLimits.resolve(Limits(), settings)
    assert default == TaskLimits(
        timeout=30.0, memory=32 << 20, result=16 << 20, logs=1 << 20, fuel=1000
    )
    asked = TaskLimits.resolve(
        Limits(timeout=600.0, memory=1 << 30, result=10, logs=5, fuel=10**9), settings
    )
    assert asked == TaskLimits(timeout=60.0, memory=64 << 20, result=10, logs=5, fuel=1000)
    smaller = TaskLimits.resolve(Limits(timeout=2.0, fuel=10), settings)
    assert (smaller.timeout, smaller.fuel) == (2.0, 10)
    no_ceiling = Settings.load({}, environ={}, env_file=None)
    assert TaskLimits.resolve(Limits(fuel=0), no_ceiling).fuel == 0
    assert TaskLimits.resolve(None, no_ceiling).memory == 128 << 20


def test_capabilities_round_trip_through_json() -> None:
    caps = Capabilities(dirs=[("/srv/in", "/in", True)], env={"K": "V"})
    assert Capabilities.from_json(caps.to_json()) == caps
    assert not Capabilities.from_json(None)
    assert Capabilities.from_json('{"env": {"A": "B"}}').env == {"A": "B"}
