"""What one task may use: resource limits (per task, clamped) and capabilities (per module).

Limits come from the producer (``runtime.queue.task.Limits``, each ``None`` meaning the
worker's default) and are clamped to the ceilings the operator set on the worker, so a
producer can ask for less but never for more. Capabilities (host directories, environment
variables) are granted by the operator at registration and never by a producer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from runtime.queue.task import Limits
from runtime.settings import Settings

#: Tables one task may create, and elements each may hold. Toolchains emit one table
#: sized by the module's function count (a few thousand for Go); the bound keeps tables
#: to a few MiB of host memory beside the memory limit (about 8 bytes per element).
MAX_TABLES = 4
TABLE_ELEMENTS = 1 << 16


@dataclass(frozen=True)
class TaskLimits:
    """Resolved limits of one run: seconds, bytes, and fuel units (0 = no fuel limit)."""

    timeout: float
    memory: int
    result: int
    logs: int
    fuel: int = 0

    @classmethod
    def resolve(cls, requested: Limits | None, settings: Settings) -> TaskLimits:
        """The requested limits, defaults filled in, each clamped to its ceiling."""
        req = requested or Limits()

        def pick(value: float | None, default: float, ceiling: float) -> float:
            chosen = default if value is None or value <= 0 else value
            return min(chosen, ceiling) if ceiling > 0 else chosen

        fuel = settings.fuel if req.fuel is None else req.fuel
        if settings.max_fuel > 0:
            # Fuel off would be unbounded, which is over any ceiling.
            fuel = min(fuel, settings.max_fuel) if fuel > 0 else settings.max_fuel
        return cls(
            timeout=float(pick(req.timeout, settings.task_timeout, settings.max_task_timeout)),
            memory=int(pick(req.memory, settings.memory_limit, settings.max_memory_limit)),
            result=int(pick(req.result, settings.result_limit, settings.max_result_limit)),
            logs=int(pick(req.logs, settings.log_limit, settings.max_log_limit)),
            fuel=int(fuel),
        )


@dataclass
class Capabilities:
    """Host resources granted to a module by the operator.

    ``dirs`` holds ``(host_path, guest_path, readonly)``; ``env`` the variables the task
    sees. A module with capabilities runs on wasmtime's own WASI (slower, but complete).
    """

    dirs: list[tuple[str, str, bool]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.dirs or self.env)

    def to_json(self) -> dict[str, Any]:
        return {
            "dirs": [[host, guest, readonly] for host, guest, readonly in self.dirs],
            "env": dict(self.env),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | str | None) -> Capabilities:
        if isinstance(data, str):
            data = json.loads(data)
        if not isinstance(data, dict) or not data:
            return cls()
        dirs = [(str(h), str(g), bool(ro)) for h, g, ro in data.get("dirs") or []]
        env = {str(k): str(v) for k, v in (data.get("env") or {}).items()}
        return cls(dirs=dirs, env=env)
