"""Stand-ins for the registry and the sandbox, so worker-loop tests are about the loop.

The stand-in sandbox reads instructions from the payload: ``{"result": ..., "sleep": s,
"fail": kind, "retryable": bool, "print": text}``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

import redis
import wasmtime

from runtime.errors import RegistryError
from runtime.modules.registry import TaskRecord
from runtime.output.chunks import LogChunk
from runtime.queue import keys
from runtime.queue.broker import Broker
from runtime.queue.task import OutcomeKind, Task
from runtime.sandbox.engine import get_engine
from runtime.sandbox.limits import Capabilities, TaskLimits
from runtime.sandbox.outcome import Outcome
from runtime.settings import Settings
from runtime.worker.loop import Worker

#: The only digest the stand-in registry can load a module for.
DIGEST = "cd" * 32


@functools.cache
def _empty_module(fuel: bool) -> wasmtime.Module:
    return wasmtime.Module(get_engine(fuel), "(module)")


class StandInRegistry:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def get(self, name: str) -> TaskRecord | None:
        raw = self.client.hget(keys.TASK_REGISTRY, name)
        if raw is None:
            return None
        data = json.loads(raw)
        return TaskRecord(name, data["digest"], data["version"], "wat", "stand-in")

    def load_module(self, digest: str, fuel: bool = False) -> wasmtime.Module:
        if digest != DIGEST:
            raise RegistryError(f"module {digest} is in no cache and not in Redis")
        return _empty_module(fuel)


class StandInSandbox:
    def __init__(self) -> None:
        self.runs: list[bytes] = []

    def run(
        self,
        module: wasmtime.Module,
        digest: str,
        payload: bytes,
        limits: TaskLimits,
        *,
        task_name: str,
        capabilities: Capabilities | None = None,
        on_output: Callable[[LogChunk], None] | None = None,
        on_progress: Callable[[float, str], None] | None = None,
        interrupt: Any = None,
    ) -> Outcome:
        self.runs.append(payload)
        try:
            spec = json.loads(payload or b"{}")
        except ValueError:
            spec = {"result": "raw bytes"}
        time.sleep(spec.get("sleep", 0))
        logs = []
        if "print" in spec:
            logs.append(LogChunk(1, int(time.time() * 1000), spec["print"].encode()))
        if "fail" in spec:
            return Outcome(
                OutcomeKind(spec["fail"]),
                message=f"it failed: {spec['fail']}",
                retryable=spec.get("retryable", False),
                logs=logs,
                duration_ms=0.1,
            )
        return Outcome(
            OutcomeKind.OK,
            result=spec.get("result", "").encode(),
            logs=logs,
            log_bytes=sum(len(c.data) for c in logs),
            duration_ms=0.1,
        )

    def idle(self) -> None:
        pass

    def close(self) -> None:
        pass


def make_worker(client: redis.Redis, settings: Settings, **kw: Any) -> Worker:
    worker = Worker(
        settings,
        ["default"],
        client=client,
        registry=StandInRegistry(client),
        sandbox=StandInSandbox(),
        **kw,
    )
    return worker


def enqueue(broker: Broker, task_id: str, spec: dict[str, Any], **kw: Any) -> None:
    """Enqueue a ``job`` whose payload is the stand-in sandbox's instructions."""
    broker.enqueue(Task(id=task_id, task_name="job", payload=json.dumps(spec).encode(), **kw))
