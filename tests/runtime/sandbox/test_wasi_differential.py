"""Our WASI against wasmtime's: the same module, payload and limits give the same outcome.

Every test module and every example task runs twice, once on :mod:`runtime.sandbox.wasi`
(what isolated tasks use) and once on wasmtime's own WASI (what tasks with capabilities
use), and the two must agree on the failure kind, the result, the exit code and what the
task printed. Both fast and public backends take part, so the fallback path is held to
the same behaviour. Where the two WASIs are allowed to differ, :data:`KNOWN` says how
and why; nothing else may.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

import compiler
from runtime.sandbox import Outcome, Sandbox, TaskLimits
from runtime.sandbox.engine import get_engine
from runtime.settings import Settings
from tests.support.paths import ROOT, WAT

TASKS = ROOT / "tasks"
LIMITS = TaskLimits(timeout=3.0, memory=300 << 20, result=1 << 20, logs=64 << 10)

#: Payload per module (default: a small JSON object).
PAYLOADS = {
    "exit": bytes([3]),
    "sleep": struct.pack("<I", 20),
    "flaky": b'{"fail": false}',
    "flaky_c": b'{"fail": false}',
}
#: Modules whose outcomes may differ, the fields that may, and why.
KNOWN = {
    # wasmtime's fd_write writes the first non-empty buffer and reports a short write,
    # as POSIX allows; libc loops on short writes, this module does not look.
    "echo": "stdout log_bytes",
    # A buffer outside memory: ours answers EFAULT as Linux does, wasmtime's traps.
    "bad_fd_write": "kind result",
    # wasmtime answers a path operation without a preopen with EBADF for every fd; ours
    # answers ENOTCAPABLE on stdio, which is what the task really lacks.
    "open_file": "result",
    # Without a granted directory there is nothing to read; both fail to open it, with
    # the different errnos above.
    "read_file": "result",
}
#: Modules with no outcome to compare (they test the ABI check, identical on both).
SKIP_WAT = {"no_alloc"}
#: Modules that run until the deadline: LIMITS.timeout on each WASI.
UNTIL_DEADLINE = {"flood", "loop_execute", "loop_initialize"}


def _wat_modules() -> list[Any]:
    return [
        pytest.param(p, id=p.stem, marks=pytest.mark.slow if p.stem in UNTIL_DEADLINE else ())
        for p in sorted(WAT.glob("*.wat"))
        if p.stem not in SKIP_WAT
    ]


def _example_tasks() -> list[Path]:
    return sorted(p for p in TASKS.iterdir() if p.suffix in compiler.SUPPORTED_EXTENSIONS)


@pytest.fixture(scope="module", params=["auto", "public"])
def boxes(request: pytest.FixtureRequest) -> Iterator[tuple[Sandbox, Sandbox]]:
    settings = Settings.load({"sandbox_api": request.param}, environ={}, env_file=None)
    ours, theirs = Sandbox(settings), Sandbox(settings, wasi_impl="wasmtime")
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, wasmtime.Module]:
    cache = tmp_path_factory.getbasetemp() / "toolchain-cache"
    cache.mkdir(exist_ok=True)
    built = {}
    for path in _example_tasks():
        adapter = compiler.adapter_for(path, "go", cache)
        data = adapter.compile(path, timeout=600, output_limit=64 << 20)
        built[path.stem] = wasmtime.Module(get_engine(), data)
    return built


def _view(outcome: Outcome) -> dict[str, object]:
    return {
        "kind": outcome.kind,
        "result": outcome.result,
        "exit_code": outcome.exit_code,
        "stdout": outcome.stdout,
        "stderr": outcome.stderr,
        "log_bytes": outcome.log_bytes,
    }


def _compare(name: str, module: wasmtime.Module, boxes: tuple[Sandbox, Sandbox]) -> None:
    payload = PAYLOADS.get(name, b'{"name": "Ada"}')
    ours, theirs = (_view(box.run(module, name, payload, LIMITS, task_name=name)) for box in boxes)
    for field in KNOWN.get(name, "").split():
        ours.pop(field)
        theirs.pop(field)
    assert ours == theirs


@pytest.mark.parametrize("path", _wat_modules())
def test_test_modules_agree(path: Path, boxes: tuple[Sandbox, Sandbox]) -> None:
    _compare(path.stem, wasmtime.Module(get_engine(), path.read_text()), boxes)


@pytest.mark.parametrize("name", [p.stem for p in _example_tasks()])
@pytest.mark.toolchain
def test_example_tasks_agree(
    name: str, boxes: tuple[Sandbox, Sandbox], examples: dict[str, wasmtime.Module]
) -> None:
    _compare(name, examples[name], boxes)
