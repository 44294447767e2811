"""Guest modules for the SDK tests: built by the real toolchains, run in the real sandbox."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import wasmtime

import compiler
from runtime.modules.contract import compile_checked
from runtime.sandbox import Outcome, Sandbox, TaskLimits
from runtime.sandbox.engine import get_engine

#: Room for the large payloads and results the SDK tests send.
LIMITS = TaskLimits(timeout=20.0, memory=256 << 20, result=4 << 20, logs=1 << 20)


@dataclass(frozen=True)
class Built:
    """A compiled, checked module and its digest (the sandbox caches by digest)."""

    module: wasmtime.Module
    digest: str
    data: bytes


def build(
    source: Path, toolchain: str = "go", cache: Path | None = None, isolation: str = "bwrap"
) -> Built:
    adapter = compiler.adapter_for(source, toolchain, cache, isolation)
    data = adapter.compile(source, timeout=600, output_limit=64 << 20)
    return Built(compile_checked(get_engine(), data), hashlib.sha256(data).hexdigest(), data)


def run(sandbox: Sandbox, built: Built, payload: bytes, task_name: str = "sdk") -> Outcome:
    return sandbox.run(built.module, built.digest, payload, LIMITS, task_name=task_name)


def assert_handler_error(outcome: Outcome, *, retryable: bool, message: str) -> None:
    assert (outcome.kind, outcome.retryable, outcome.message) == ("handler", retryable, message)
    assert outcome.result == b""
