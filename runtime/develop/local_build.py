"""Builds for ``wasmq run FILE``: the registry's compile and checks, cached on local disk.

A source goes through what ``wasmq register`` does to it (the same adapter, compile key
and contract check), so a handler that runs here registers too. The cache needs no Redis:
it lives under ``<module dir>/local``, where ``builds/<compile key>`` names the digest a
source compiled to, and the module bytes and wasmtime's native code sit in the
content-addressed layout of :mod:`runtime.modules.cache`. An unchanged source loads
native code and runs no toolchain; an edited one has a new compile key and compiles.

Every edit leaves a build behind, so only the :data:`KEEP_BUILDS` most recently used are
kept: older ones are deleted when a new one is added.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from runtime.errors import RegistryError
from runtime.modules.build import SourceBuild
from runtime.modules.cache import ModuleCache, check_digest, remember, write_atomic
from runtime.settings import Settings

#: Builds kept in the local cache (each a module and its native code).
KEEP_BUILDS = 32


@dataclass
class LocalBuild:
    """A checked module built from a source file."""

    module: wasmtime.Module
    digest: str
    #: The toolchain ran for this build (False: it came from the local cache).
    compiled: bool


class DiskOnlyCache(ModuleCache):
    """The disk layers of :class:`ModuleCache` with nothing behind them.

    A module missing from disk is not fetched from Redis: the caller compiles it again."""

    def __init__(self, module_dir: Path) -> None:
        # ``_fetch``, the one user of the client, is replaced below.
        super().__init__(module_dir, None)

    def _fetch(self, digest: str) -> bytes:
        raise RegistryError(f"module {digest[:12]} is not in the local build cache")


class LocalBuilds:
    """Compile-or-load for local runs, keyed like the registry's compile index."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = Path(settings.module_dir) / "local"
        self.cache = DiskOnlyCache(self.root)
        # Toolchains resolve cache paths from their own working dir: keep them absolute.
        self.toolchain_cache = settings.toolchain_cache.expanduser().absolute()

    def build_path(self, compile_key: str) -> Path:
        return self.root / "builds" / compile_key

    def build(
        self, path: Path, *, fuel: bool = False, on_compile: Callable[[Path], None] | None = None
    ) -> LocalBuild:
        """The checked module of source ``path``: from the local cache, else compiled.

        ``on_compile`` hears of a compile before it starts (it may take seconds). Raises
        a :class:`~runtime.errors.WasmqError` for an unknown file type, a missing
        toolchain, a failed compile or a module that breaks the contract."""
        build = SourceBuild.open(path, self.settings, self.toolchain_cache)
        key = build.key
        cached = self._cached(key, fuel)
        if cached is not None:
            return cached
        if on_compile is not None:
            on_compile(path)
        built = build.compile(self.settings)
        digest = built.digest
        self.cache.store_local(digest, built.data)
        self.cache.save_native(digest, built.module)
        remember(digest, False, built.module)
        write_atomic(self.build_path(key), digest.encode())
        self._prune()
        module = built.module
        if fuel:
            module = self.cache.load(digest, fuel=True)
        return LocalBuild(module, digest, compiled=True)

    def _cached(self, key: str, fuel: bool) -> LocalBuild | None:
        entry = self.build_path(key)
        try:
            digest = check_digest(entry.read_text().strip())
            module = self.cache.load(digest, fuel)
        except (OSError, RegistryError):
            return None  # never built, or its files are gone: build again
        with contextlib.suppress(OSError):
            os.utime(entry)  # recently used: the last to be pruned
        return LocalBuild(module, digest, compiled=False)

    def _prune(self) -> None:
        """Keep the :data:`KEEP_BUILDS` most recently used builds and their modules."""
        entries: list[tuple[float, Path, str]] = []
        for entry in (self.root / "builds").iterdir():
            try:
                entries.append((entry.stat().st_mtime, entry, entry.read_text().strip()))
            except OSError:
                continue  # pruned by another run meanwhile
        if len(entries) <= KEEP_BUILDS:
            return
        entries.sort(reverse=True)
        kept = {digest for _, _, digest in entries[:KEEP_BUILDS]}
        for _, entry, digest in entries[KEEP_BUILDS:]:
            entry.unlink(missing_ok=True)
            if digest in kept:
                continue
            with contextlib.suppress(RegistryError, OSError):
                self.cache.wasm_path(digest).unlink(missing_ok=True)
                for fuel in (False, True):
                    self.cache.native_path(digest, fuel).unlink(missing_ok=True)
