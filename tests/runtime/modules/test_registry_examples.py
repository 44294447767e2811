"""The example tasks end to end: registered with their real toolchains, run in the sandbox,
including from a second module dir that shares nothing but Redis."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from runtime.modules.cache import forget_memory
from runtime.modules.registry import Registry
from runtime.queue.task import Limits
from runtime.sandbox import Sandbox, TaskLimits
from runtime.settings import Settings
from tests.support.paths import TASKS

pytestmark = pytest.mark.toolchain

GREETERS = ["task_1.go", "task_1_c.c", "task_1_zig.zig", "task_1_wat.wat"]


@pytest.fixture
def sandbox(settings: Settings) -> Iterator[Sandbox]:
    box = Sandbox(settings)
    try:
        yield box
    finally:
        box.close()


@pytest.mark.parametrize("source", GREETERS)
def test_greeter_runs_from_another_module_dir(
    source: str,
    settings: Settings,
    redis_client: redis.Redis,
    toolchain_cache: Path,
    sandbox: Sandbox,
    tmp_path: Path,
) -> None:
    record = (
        Registry(settings, redis_client, toolchain_cache=toolchain_cache)
        .register(TASKS / source)
        .record
    )
    forget_memory()
    elsewhere = dataclasses.replace(settings, module_dir=tmp_path / "other-machine")
    worker_side = Registry(elsewhere, redis_client)
    current = worker_side.get(record.name)
    assert current is not None and current.digest == record.digest
    module = worker_side.load_module(current.digest)
    outcome = sandbox.run(
        module,
        current.digest,
        b'{"name": "Ada"}',
        TaskLimits.resolve(Limits(), settings),
        task_name=current.name,
        capabilities=current.capabilities,
    )
    assert outcome.ok, outcome.message
    assert json.loads(outcome.result) == {"message": "Hello, Ada!"}
    assert b"".join(chunk.data for chunk in outcome.logs).startswith(b"Hello, Ada!")
