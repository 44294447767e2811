"""Fixtures of the snapshot tests: WAT modules as bytes, snapshots of them, and runs of
a module (as built or snapshotted) through the real sandbox."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime

from runtime.sandbox import Outcome, Sandbox, TaskLimits
from runtime.sandbox.engine import get_engine
from runtime.snapshot import Snapshot, take

WAT_DIR = Path(__file__).parent / "wat"
#: Generous limits: the snapshot tests that need tight ones set their own.
LIMITS = TaskLimits(timeout=10.0, memory=16 << 20, result=1 << 20, logs=1 << 20)

Wat = Callable[[str], bytes]
Snap = Callable[[bytes], Snapshot]
RunTask = Callable[[bytes, bytes], Outcome]


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def limits() -> TaskLimits:
    return LIMITS


@pytest.fixture
def wat() -> Wat:
    """The bytes of ``wat/<name>.wat``, or of ``name`` itself when it is WAT text."""

    def build(name: str) -> bytes:
        text = name if name.lstrip().startswith("(") else (WAT_DIR / f"{name}.wat").read_text()
        return bytes(wasmtime.wat2wasm(text))

    return build


@pytest.fixture
def snap() -> Snap:
    """A snapshot of a module, taken with the default test limits and task name ``t``."""

    def take_one(data: bytes) -> Snapshot:
        return take(data, digest_of(data), "t", LIMITS)

    return take_one


@pytest.fixture
def run_task(sandbox: Sandbox) -> RunTask:
    """Runs a module's bytes as one task with ``payload`` (task name ``t``)."""

    def run(data: bytes, payload: bytes) -> Outcome:
        module = wasmtime.Module(get_engine(False), data)
        return sandbox.run(module, digest_of(data), payload, LIMITS, task_name="t")

    return run
