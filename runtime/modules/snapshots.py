"""Registration's side of pre-initialized modules: take a snapshot of a built module for a
task, or find the one already taken (on any machine), and say how it went.

A snapshot is taken per (source module, task name), because the task name is the
argv[0] a module's initializer may read. The snapshot index in Redis maps
``<format>:<source digest>:<task name>`` to the snapshot's digest and what it kept, so
registering an unchanged source again reuses it. A task with capabilities is not
snapshotted: its initializer would read the environment and directories it is granted
(Go's runtime reads both at start), and a snapshot taken without them would hide them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from runtime import snapshot
from runtime.errors import RegistryError
from runtime.logging_config import get_logger
from runtime.modules.cache import ModuleCache, check_digest, sha256
from runtime.queue import keys
from runtime.sandbox.limits import Capabilities, TaskLimits
from runtime.settings import Settings
from runtime.snapshot import NotSnapshotted

log = get_logger("registry")

#: Why a module is run as built when snapshots are turned off.
TURNED_OFF = "snapshots are off (--no-snapshot or WASMQ_SNAPSHOT=0)"


@dataclass
class SnapshotInfo:
    """How a registered module was pre-initialized, or why it was not."""

    taken: bool
    #: Why not, when not taken (one line).
    reason: str = ""
    #: What the initializer took once here: about what each task saves.
    init_ms: float = 0.0
    #: Inputs the kept state came from ("random", "clock"): they are the same in every task.
    kept: tuple[str, ...] = ()
    #: The snapshot's memory (its initial size).
    memory_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        if not self.taken:
            return {"taken": False, "reason": self.reason}
        return {
            "taken": True,
            "init_ms": round(self.init_ms, 3),
            "kept": list(self.kept),
            "memory_bytes": self.memory_bytes,
        }

    @classmethod
    def from_json(cls, value: Any) -> SnapshotInfo | None:
        if not isinstance(value, dict):
            return None
        if not value.get("taken"):
            return cls(False, reason=str(value.get("reason") or ""))
        return cls(
            True,
            init_ms=float(value.get("init_ms") or 0.0),
            kept=tuple(str(k) for k in value.get("kept") or ()),
            memory_bytes=int(value.get("memory_bytes") or 0),
        )

    def describe(self) -> str:
        """A few words for a terminal."""
        if not self.taken:
            return f"not snapshotted: {self.reason}"
        text = f"snapshot: _initialize ran once here ({self.init_ms:.1f} ms), not in each task"
        if self.kept:
            drawn = " and ".join(
                "random numbers" if k == "random" else "the clock" for k in self.kept
            )
            text += f"; the state it left drew on {drawn}, now the same in every task"
        return text


@dataclass
class RunModule:
    """The module a task runs: its source, or a snapshot of it."""

    digest: str
    data: bytes
    info: SnapshotInfo | None
    #: Whether Redis already holds ``data`` (a snapshot found in the index).
    stored: bool = False
    #: The snapshot-index entry to record, or ("", "") when nothing new was taken.
    index_entry: tuple[str, str] = ("", "")


def index_field(source_digest: str, task_name: str) -> str:
    return f"{snapshot.FORMAT}:{source_digest}:{task_name}"


def run_module(
    settings: Settings,
    client: redis.Redis,
    cache: ModuleCache,
    source: tuple[bytes, str],
    task_name: str,
    capabilities: Capabilities | None,
    enabled: bool,
) -> RunModule:
    """The module ``task_name`` runs, built from ``source`` (its bytes and digest)."""
    data, digest = source
    as_built = RunModule(digest, data, None)
    if not snapshot.has_initializer(data):
        return as_built  # nothing runs before alloc: nothing to save
    if not enabled:
        as_built.info = SnapshotInfo(False, TURNED_OFF)
        return as_built
    if capabilities:
        as_built.info = SnapshotInfo(
            False, "the task has capabilities (--allow-dir, --env), which its _initialize reads"
        )
        return as_built
    field = index_field(digest, task_name)
    found = _indexed(client, cache, field)
    if found is not None:
        return found
    limits = TaskLimits.resolve(None, settings)
    try:
        taken = snapshot.take(data, digest, task_name, limits, settings.compile_output_limit)
    except NotSnapshotted as exc:
        log.info("module not snapshotted", task_name=task_name, reason=str(exc))
        as_built.info = SnapshotInfo(False, str(exc))
        return as_built
    # Rounded as stored, so the record registration returns equals the one read back.
    info = SnapshotInfo(
        True, init_ms=round(taken.init_ms, 3), kept=taken.kept, memory_bytes=taken.memory_bytes
    )
    snap_digest = sha256(taken.data)
    entry = json.dumps({"digest": snap_digest, **info.to_json()}, separators=(",", ":"))
    log.info("module snapshotted", task_name=task_name, init_ms=round(taken.init_ms, 3))
    return RunModule(snap_digest, taken.data, info, index_entry=(field, entry))


def _indexed(client: redis.Redis, cache: ModuleCache, field: str) -> RunModule | None:
    raw = client.hget(keys.snapshot_index(), field)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        digest = check_digest(str(value["digest"]))
        data = cache.wasm_bytes(digest)
    except (ValueError, KeyError, TypeError, RegistryError):
        return None  # damaged, or the snapshot is gone everywhere: take it again
    return RunModule(digest, data, SnapshotInfo.from_json(value), stored=True)
