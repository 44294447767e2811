"""The task registry: source file -> checked module -> versioned task record.

A module is identified by the SHA-256 of its bytes (its *digest*); a compile by the
SHA-256 of source bytes + language + toolchain version + flags (its *compile key*).
Redis holds the truth shared by every machine: the task table (``wasmq:registry``,
name -> JSON record), each task's version history, module bytes by digest, and the
compile index (compile key -> digest) that makes registering an unchanged source a
cache hit without touching the toolchain. :mod:`runtime.modules.cache` keeps the local
layers (memory, files, native code).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import wasmtime

from runtime.clock import now_ms
from runtime.errors import RegistryError, WasmqError
from runtime.logging_config import get_logger
from runtime.modules.build import SourceBuild
from runtime.modules.cache import ModuleCache, check_digest, remember
from runtime.modules.snapshots import RunModule, SnapshotInfo, run_module
from runtime.queue import keys, scripts
from runtime.queue.names import check_task_name
from runtime.queue.scripts import Scripts
from runtime.queue.slots import bump_generation
from runtime.sandbox.limits import Capabilities
from runtime.settings import Settings

log = get_logger("registry")


def capabilities_json(value: Capabilities | dict[str, Any] | None) -> dict[str, Any] | None:
    """Capabilities (the sandbox dataclass or its JSON dict) as stored; None for none."""
    caps = value if isinstance(value, Capabilities) else Capabilities.from_json(value)
    return caps.to_json() if caps else None


def _capabilities(value: Any) -> Capabilities | None:
    caps = value if isinstance(value, Capabilities) else Capabilities.from_json(value)
    return caps if caps else None


@dataclass
class TaskRecord:
    """A registered task: the current module of ``name`` and where it came from."""

    name: str
    digest: str
    version: int
    language: str
    toolchain: str
    toolchain_version: str = ""
    source_hash: str = ""  # the compile key
    registered_at: int = 0  # ms
    size: int = 0
    source: str = ""  # file name the module was built from
    #: Host resources granted at registration (--allow-dir, --env); None for none.
    capabilities: Capabilities | None = None
    #: Digest of the module the toolchain built; ``digest`` is a snapshot of it when
    #: :attr:`snapshot` says one was taken (else the two are equal).
    source_digest: str = ""
    #: How the module was pre-initialized, or why not; None when it has no _initialize.
    snapshot: SnapshotInfo | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "digest": self.digest,
            "version": self.version,
            "language": self.language,
            "toolchain": self.toolchain,
            "toolchain_version": self.toolchain_version,
            "source_hash": self.source_hash,
            "registered_at": self.registered_at,
            "size": self.size,
            "source": self.source,
            "capabilities": capabilities_json(self.capabilities),
            "source_digest": self.source_digest or self.digest,
            "snapshot": None if self.snapshot is None else self.snapshot.to_json(),
        }

    @classmethod
    def from_json(cls, name: str, raw: bytes | str) -> TaskRecord:
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return cls(
                name=name,
                digest=str(data["digest"]),
                version=int(data.get("version") or 0),
                language=str(data.get("language") or ""),
                toolchain=str(data.get("toolchain") or ""),
                toolchain_version=str(data.get("toolchain_version") or ""),
                source_hash=str(data.get("source_hash") or ""),
                registered_at=int(data.get("registered_at") or 0),
                size=int(data.get("size") or 0),
                source=str(data.get("source") or ""),
                capabilities=_capabilities(data.get("capabilities")),
                source_digest=str(data.get("source_digest") or data["digest"]),
                snapshot=SnapshotInfo.from_json(data.get("snapshot")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(
                f"the registry record of task {name!r} is damaged ({exc}); register it again"
            ) from None


@dataclass
class Registration:
    """What one ``register`` did."""

    record: TaskRecord
    #: The module came from the compile index: the toolchain did not run.
    cache_hit: bool
    #: The digest changed, so the version was bumped.
    changed: bool
    path: Path = field(default_factory=Path)


#: Called after each file of a batch: (done, total, path, registration or error).
Progress = Callable[[int, int, Path, "Registration | WasmqError"], None]
#: Called as a toolchain starts on a file (a compile may take seconds): (path, toolchain).
OnCompile = Callable[[Path, str], None]


class Registry:
    """Registers task sources and serves their modules to workers."""

    def __init__(
        self, settings: Settings, client: redis.Redis, *, toolchain_cache: Path | None = None
    ) -> None:
        """``toolchain_cache`` holds the toolchains' own build caches (Go's GOCACHE, Zig's
        prebuilt libc); default ``settings.toolchain_cache``. Those caches are keyed by
        content, so module dirs share them: a new module dir does not rebuild Go's std."""
        self.settings = settings
        # Toolchains resolve cache paths from their own working dir: keep them absolute.
        self.toolchain_cache = (toolchain_cache or settings.toolchain_cache).expanduser().absolute()
        self.client = client
        self.cache = ModuleCache(settings.module_dir, client)
        self.scripts = Scripts(client)

    # -- registering ---------------------------------------------------------------------

    def register(
        self,
        path: Path,
        name: str | None = None,
        capabilities: Capabilities | dict[str, Any] | None = None,
        *,
        on_compile: OnCompile | None = None,
        snapshot: bool | None = None,
    ) -> Registration:
        """Compile (unless cached), check, snapshot and record ``path`` as task ``name``.

        The name defaults to the file stem. A failed compile or check raises a
        :class:`WasmqError` and leaves any earlier version of the task in place.
        ``on_compile`` hears of a compile before the toolchain starts. ``snapshot``
        (default ``settings.snapshot``) pre-initializes a module that exports
        ``_initialize`` (:mod:`runtime.snapshot`)."""
        path = Path(path)
        task_name = check_task_name(name if name is not None else path.stem)
        if not path.is_file():
            raise RegistryError(f"{path} is not a file; pass a task source or .wasm file")
        build = SourceBuild.open(path, self.settings, self.toolchain_cache)
        adapter, key = build.adapter, build.key
        indexed = self._indexed(key)
        data = self._cached_bytes(indexed) if indexed is not None else None
        cache_hit = indexed is not None and data is not None
        compiled: wasmtime.Module | None = None
        if indexed is not None and data is not None:
            digest = indexed
        else:
            if on_compile is not None:
                on_compile(path, adapter.name)
            built = build.compile(self.settings)
            data, digest, compiled = built.data, built.digest, built.module
        caps = _capabilities(capabilities)
        enabled = self.settings.snapshot if snapshot is None else snapshot
        run = run_module(
            self.settings, self.client, self.cache, (data, digest), task_name, caps, enabled
        )
        self._keep_native(run, digest, compiled)
        record = TaskRecord(
            name=task_name,
            digest=run.digest,
            version=0,
            language=adapter.language,
            toolchain=adapter.name,
            toolchain_version=build.toolchain_version,
            source_hash=key,
            size=len(run.data),
            source=path.name,
            capabilities=caps,
            source_digest=digest,
            snapshot=run.info,
        )
        self.cache.store_local(run.digest, run.data, task_name)
        changed, version, registered_at = self._record(record, key, run, data, cache_hit)
        record.version, record.registered_at = version, registered_at
        log.info(
            "task registered",
            task_name=task_name,
            version=version,
            digest=run.digest[:12],
            cache_hit=cache_hit,
            changed=changed,
            snapshot=run.digest != digest,
        )
        return Registration(record, cache_hit=cache_hit, changed=changed, path=path)

    def _keep_native(self, run: RunModule, digest: str, compiled: wasmtime.Module | None) -> None:
        """Keep the check's native code for workers on this machine. A snapshot is not
        compiled here (it was validated, and its imports and exports are its source's):
        the first worker of each machine compiles it, once (see ModuleCache.load)."""
        if compiled is not None and run.digest == digest:
            self.cache.save_native(digest, compiled)
            remember(digest, False, compiled)

    def register_many(
        self,
        paths: Iterable[Path],
        capabilities: Capabilities | dict[str, Any] | None = None,
        *,
        progress: Progress | None = None,
        on_compile: OnCompile | None = None,
        workers: int | None = None,
        snapshot: bool | None = None,
    ) -> list[Registration | WasmqError]:
        """Register files in parallel (compiles are subprocesses); one result per path.

        Errors are returned in place, so one bad file does not stop the others."""
        todo = list(paths)
        results: list[Registration | WasmqError] = [RegistryError("not run")] * len(todo)
        done = 0

        def one(index: int) -> tuple[int, Registration | WasmqError]:
            try:
                path = todo[index]
                return index, self.register(
                    path, capabilities=capabilities, on_compile=on_compile, snapshot=snapshot
                )
            except WasmqError as exc:
                return index, exc

        with ThreadPoolExecutor(max_workers=workers or min(8, max(1, len(todo)))) as pool:
            futures = [pool.submit(one, index) for index in range(len(todo))]
            for future in as_completed(futures):
                index, outcome = future.result()
                results[index] = outcome
                done += 1
                if progress is not None:
                    progress(done, len(todo), todo[index], outcome)
        return results

    def _cached_bytes(self, digest: str) -> bytes | None:
        try:
            return self.cache.wasm_bytes(digest)
        except RegistryError:
            return None  # indexed, but the module is gone everywhere: compile again

    def _indexed(self, compile_key: str) -> str | None:
        raw = self.client.hget(keys.compile_index(), compile_key)
        if raw is None:
            return None
        digest = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            check_digest(digest)
        except RegistryError:
            return None
        return digest

    def _record(
        self, record: TaskRecord, compile_key: str, run: RunModule, source: bytes, known: bool
    ) -> tuple[bool, int, int]:
        """Store the record (and whatever bytes Redis may lack) in one script; ``known``
        says Redis had ``source`` when this began."""
        body = record.to_json()
        del body["version"], body["registered_at"]
        text = json.dumps(body, separators=(",", ":"))
        now = now_ms()
        snapshotted = run.digest != record.source_digest

        def call(send_all: bool) -> scripts.Call:
            run_known = run.stored if snapshotted else known
            return scripts.register(
                name=record.name,
                digest=run.digest,
                module=run.data if send_all or not run_known else b"",
                compile_key=compile_key,
                record_json=text,
                now=now,
                source_digest=record.source_digest,
                source=source if snapshotted and (send_all or not known) else b"",
                snapshot_field=run.index_entry[0],
                snapshot_json=run.index_entry[1],
            )

        reply = self.scripts.run(call(False))
        if int(reply[0]) == -1:
            reply = self.scripts.run(call(True))
        bump_generation(self.client)
        return bool(int(reply[0])), int(reply[1]), int(reply[2])

    # -- reading -------------------------------------------------------------------------

    def get(self, name: str) -> TaskRecord | None:
        """The current record of ``name`` (from Redis), or None when not registered."""
        raw = self.client.hget(keys.registry(), name)
        return None if raw is None else TaskRecord.from_json(name, raw)

    def list(self) -> list[TaskRecord]:
        """Every registered task, by name (damaged records are skipped with a warning)."""
        records = []
        for raw_name, raw in sorted(self.client.hgetall(keys.registry()).items()):
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            try:
                records.append(TaskRecord.from_json(name, raw))
            except RegistryError as exc:
                log.warning("damaged registry record", task_name=name, error=str(exc))
        return records

    def versions(self, name: str) -> dict[int, str]:
        """Version -> digest history of ``name``."""
        raw = self.client.hgetall(keys.task_versions(name))
        return {int(v): (d.decode() if isinstance(d, bytes) else str(d)) for v, d in raw.items()}

    def remove(self, name: str) -> bool:
        """Unregister ``name``; False when it was not registered.

        Only the name's own record and version history go, so the cost does not grow
        with the number of registered tasks. Queued tasks and cron runs of ``name`` then
        fail with a clear error (a worker checks the registry before it runs a task,
        even with the module cached). Module bytes stay, as other tasks may share them:
        :meth:`prune` deletes the unused ones."""
        removed = bool(int(self.scripts.run(scripts.unregister(name=name))))
        bump_generation(self.client)
        if removed:
            self.cache.task_path(name).unlink(missing_ok=True)
            log.info("task unregistered", task_name=name)
        return removed

    def prune(self) -> tuple[int, int]:
        """Delete module bytes (and index entries) no registered task uses.

        Reads the whole registry in one atomic step: its cost is every registered task,
        version, compile and snapshot. Returns (modules deleted, index entries deleted)."""
        modules, entries = self.scripts.run(scripts.prune_modules())
        log.info("modules pruned", modules=int(modules), compile_entries=int(entries))
        return int(modules), int(entries)

    # -- serving modules -----------------------------------------------------------------

    def module_bytes(self, digest: str) -> bytes:
        """The module with ``digest``: disk cache, else Redis; always verified."""
        return self.cache.wasm_bytes(check_digest(digest))

    def load_module(self, digest: str, fuel: bool = False) -> wasmtime.Module:
        """Compiled module: memory, else native artifact on disk, else compile (and save)."""
        return self.cache.load(digest, fuel)


__all__ = ["Registration", "Registry", "TaskRecord", "capabilities_json"]
