"""One source file through its toolchain and the contract: what registering and
``wasmq run`` share.

:meth:`SourceBuild.open` picks the adapter and computes the compile key (what a build
depends on, hashed: the same key means the same module); :meth:`SourceBuild.compile`
runs the toolchain and checks the module against the task contract. Where the result is
kept (the registry's Redis index, ``wasmq run``'s local cache) is the caller's business.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import wasmtime

import compiler
from runtime.errors import RegistryError
from runtime.modules.cache import sha256
from runtime.modules.contract import compile_checked
from runtime.sandbox.engine import get_engine
from runtime.settings import Settings


def compile_key(
    source: bytes, language: str, toolchain: str, version: str, flags: tuple[str, ...]
) -> str:
    """The compile key: source, language, toolchain, its version (which includes the guest
    SDK's digest) and flags, hashed."""
    h = hashlib.sha256()
    for part in (language, toolchain, version, "\0".join(flags)):
        h.update(part.encode())
        h.update(b"\n")
    h.update(source)
    return h.hexdigest()


@dataclass
class Built:
    """A module the toolchain produced, checked against the contract."""

    data: bytes
    digest: str
    module: wasmtime.Module


@dataclass
class SourceBuild:
    """A source file, the adapter that builds it and its compile key."""

    path: Path
    adapter: compiler.Adapter
    toolchain_version: str
    key: str

    @classmethod
    def open(cls, path: Path, settings: Settings, toolchain_cache: Path) -> SourceBuild:
        """Raises a :class:`~runtime.errors.WasmqError` for an unknown file type, a
        missing toolchain or an unreadable file."""
        adapter = compiler.adapter_for(
            path, settings.go_toolchain, toolchain_cache, settings.compile_isolation
        )
        version = adapter.version()
        try:
            source = path.read_bytes()
        except OSError as exc:
            raise RegistryError(f"cannot read {path}: {exc.strerror or exc}") from None
        key = compile_key(source, adapter.language, adapter.name, version, adapter.flags())
        return cls(path, adapter, version, key)

    def compile(self, settings: Settings) -> Built:
        """Run the toolchain and check what it built (CompileError, RegistryError)."""
        data = self.adapter.compile(
            self.path,
            timeout=settings.compile_timeout,
            output_limit=settings.compile_output_limit,
        )
        module = compile_checked(get_engine(False), data, settings.max_memory_limit)
        return Built(data, sha256(data), module)
