"""Module caches, each a read-through for the next: process memory, disk, Redis.

- memory: compiled ``wasmtime.Module`` per (digest, engine flavour), process-wide;
- disk, under the module dir: ``<task>.wasm`` (the reference layout),
  ``sha256/<digest>.wasm`` (content-addressed copies) and
  ``native/<engine tag>/<digest>.cwasm`` (wasmtime's serialized native code, so a restart
  does not compile again; the engine tag changes with the wasmtime version and engine
  config, so a stale artifact is never loaded);
- Redis: module bytes by digest, shared by every machine.

Everything read from disk is verified: ``.wasm`` files against their digest, native
artifacts against a SHA-256 stored in their header (wasmtime trusts the native code it
deserializes, so a flipped bit must never reach it). A damaged file is discarded and
rebuilt from the next layer.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import redis
import wasmtime

from runtime.errors import RegistryError
from runtime.logging_config import get_logger
from runtime.modules.contract import check_signatures
from runtime.queue import keys
from runtime.sandbox.engine import engine_tag, get_engine

log = get_logger("registry")

NATIVE_MAGIC = b"wasmq-native-1\n"
_DIGEST = re.compile(r"[0-9a-f]{64}")
#: Compiled modules kept in memory per process (each holds its native code mapped).
MEMORY_SLOTS = 256


@dataclass
class CacheStats:
    """Process-wide counters; tests assert on them to prove which layer served a load."""

    memory_hits: int = 0
    native_loads: int = 0
    wasm_compiles: int = 0
    redis_fetches: int = 0
    corrupt_files: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


STATS = CacheStats()
_stats_lock = threading.Lock()
_memory: OrderedDict[tuple[str, bool], wasmtime.Module] = OrderedDict()
_memory_lock = threading.Lock()
_key_locks: dict[tuple[str, bool], threading.Lock] = {}


def _bump(counter: str) -> None:
    with _stats_lock:
        setattr(STATS, counter, getattr(STATS, counter) + 1)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise RegistryError(f"invalid module digest {digest!r}: expected 64 hex characters")
    return digest


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remember(digest: str, fuel: bool, module: wasmtime.Module) -> None:
    with _memory_lock:
        _memory[(digest, fuel)] = module
        _memory.move_to_end((digest, fuel))
        while len(_memory) > MEMORY_SLOTS:
            _memory.popitem(last=False)


def forget_memory() -> None:
    """Drop the in-process layer (tests use it to exercise the disk layers)."""
    with _memory_lock:
        _memory.clear()


class ModuleCache:
    """The disk and Redis layers under one module dir, plus the shared memory layer."""

    def __init__(self, module_dir: Path, client: redis.Redis) -> None:
        self.module_dir = Path(module_dir)
        self.client = client

    # -- paths ---------------------------------------------------------------------------

    def task_path(self, name: str) -> Path:
        return self.module_dir / f"{name}.wasm"

    def wasm_path(self, digest: str) -> Path:
        return self.module_dir / "sha256" / f"{check_digest(digest)}.wasm"

    def native_path(self, digest: str, fuel: bool = False) -> Path:
        return self.module_dir / "native" / engine_tag(fuel) / f"{check_digest(digest)}.cwasm"

    # -- module bytes --------------------------------------------------------------------

    def store_local(self, digest: str, data: bytes, name: str | None = None) -> None:
        """Keep ``data`` on disk by digest and, when ``name`` is given, as ``<name>.wasm``."""
        path = self.wasm_path(digest)
        if not _file_matches(path, digest):
            write_atomic(path, data)
        if name is not None and not _file_matches(self.task_path(name), digest):
            write_atomic(self.task_path(name), data)

    def wasm_bytes(self, digest: str) -> bytes:
        """Module bytes from disk, else from Redis (then kept on disk); always verified."""
        path = self.wasm_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            log.warning("module cache unreadable", path=str(path), error=str(exc))
            data = None
        if data is not None:
            if sha256(data) == digest:
                return data
            self._discard(path, "module file does not match its digest")
        return self._fetch(digest)

    def _fetch(self, digest: str) -> bytes:
        raw = self.client.get(keys.module(digest))
        _bump("redis_fetches")
        if raw is None:
            raise RegistryError(
                f"module {digest[:12]} is neither cached here nor stored in Redis; "
                "register the task again (wasmq register PATH)"
            )
        data = bytes(raw)
        if sha256(data) != digest:
            raise RegistryError(
                f"module {digest[:12]} stored in Redis does not match its digest; "
                "register the task again (wasmq register PATH)"
            )
        write_atomic(self.wasm_path(digest), data)
        return data

    def _discard(self, path: Path, why: str) -> None:
        _bump("corrupt_files")
        log.warning("discarded a corrupted cache file", path=str(path), reason=why)
        with contextlib.suppress(OSError):
            path.unlink()

    # -- compiled modules ----------------------------------------------------------------

    def load(self, digest: str, fuel: bool = False) -> wasmtime.Module:
        """Compiled module: memory, else native artifact on disk, else compile and save."""
        check_digest(digest)
        key = (digest, fuel)
        module = self._from_memory(key)
        if module is not None:
            return module
        with _memory_lock:
            lock = _key_locks.setdefault(key, threading.Lock())
        with lock:  # one compile per module even when many threads ask at once
            module = self._from_memory(key)
            if module is not None:
                return module
            module = self._from_native(digest, fuel)
            if module is None:
                with self._machine_lock(digest, fuel):
                    # Another process of this machine may have compiled it meanwhile.
                    module = self._from_native(digest, fuel)
                    if module is None:
                        module = self.compile(digest, self.wasm_bytes(digest), fuel)
            remember(digest, fuel, module)
            return module

    @contextlib.contextmanager
    def _machine_lock(self, digest: str, fuel: bool) -> Iterator[None]:
        """One compile per module per machine: a pool's worker processes start together
        and would each spend seconds compiling the same Go module; the first compiles and
        saves native code, the others wait for it and load that. Without a writable
        module dir there is no lock, only the extra compiles."""
        path = self.native_path(digest, fuel).with_suffix(".lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            yield
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)  # closing releases the lock

    def _from_memory(self, key: tuple[str, bool]) -> wasmtime.Module | None:
        with _memory_lock:
            module = _memory.get(key)
            if module is not None:
                _memory.move_to_end(key)
        if module is not None:
            _bump("memory_hits")
        return module

    def _from_native(self, digest: str, fuel: bool) -> wasmtime.Module | None:
        path = self.native_path(digest, fuel)
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        head = len(NATIVE_MAGIC)
        stored, artifact = blob[head : head + 32], blob[head + 32 :]
        if not blob.startswith(NATIVE_MAGIC) or hashlib.sha256(artifact).digest() != stored:
            self._discard(path, "native artifact checksum mismatch")
            return None
        try:
            module = wasmtime.Module.deserialize(get_engine(fuel), artifact)
        except wasmtime.WasmtimeError as exc:
            self._discard(path, f"wasmtime refused the artifact: {exc}")
            return None
        _bump("native_loads")
        return module

    def compile(self, digest: str, data: bytes, fuel: bool = False) -> wasmtime.Module:
        """Compile verified module bytes and save the native artifact."""
        try:
            module = wasmtime.Module(get_engine(fuel), data)
        except wasmtime.WasmtimeError as exc:
            raise RegistryError(f"module {digest[:12]} does not compile: {exc}") from None
        # Workers check the contract before running a module; this part of it must be
        # read from the bytes (see contract.check_signatures), which only this step has.
        check_signatures(data)
        _bump("wasm_compiles")
        self.save_native(digest, module, fuel)
        return module

    def save_native(self, digest: str, module: wasmtime.Module, fuel: bool = False) -> None:
        artifact = bytes(module.serialize())
        blob = NATIVE_MAGIC + hashlib.sha256(artifact).digest() + artifact
        try:
            write_atomic(self.native_path(digest, fuel), blob)
        except OSError as exc:  # a read-only cache still works, just slower on restart
            log.warning("cannot save native artifact", digest=digest[:12], error=str(exc))


def _file_matches(path: Path, digest: str) -> bool:
    try:
        return sha256(path.read_bytes()) == digest
    except OSError:
        return False
