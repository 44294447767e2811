"""Where the guest SDKs are, and a digest of each for the compile key.

The SDK sources are the ``wasmq_sdk`` package's data (``sdk/`` in a checkout). A
toolchain sees one language's SDK read-only at :data:`SDK_MOUNT` inside its sandbox;
the SDK's digest is part of the compile key, so changing the SDK rebuilds handlers
instead of serving modules built against the old one.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

from runtime.errors import ToolchainMissing

#: Where a compile's sandbox shows the SDK of its language.
SDK_MOUNT = Path("/wasmq-sdk")


@functools.cache
def root() -> Path:
    """The directory holding ``go/``, ``c/``, ``zig/``, ..."""
    spec = importlib.util.find_spec("wasmq_sdk")
    if spec is None or not spec.submodule_search_locations:
        raise ToolchainMissing("the wasmq guest SDKs are not installed; reinstall wasmq")
    return Path(next(iter(spec.submodule_search_locations)))


def path(language: str) -> Path:
    """The SDK of ``language`` (``go``, ``c``, ``zig``, ...)."""
    found = root() / language
    if not found.is_dir():
        raise ToolchainMissing(f"the wasmq {language} SDK is missing ({found}); reinstall wasmq")
    return found


#: What is not the SDK's own source: installed toolchains (node_modules is AssemblyScript's
#: compiler, whose version is in the adapter's version) and caches.
_SKIPPED = {"__pycache__", "node_modules"}


@functools.cache
def digest(language: str) -> str:
    """SHA-256 over the SDK's files (relative names and contents), first 16 hex digits."""
    base = path(language)
    h = hashlib.sha256()
    for file in sorted(p for p in base.rglob("*") if p.is_file() and not _SKIPPED & set(p.parts)):
        h.update(file.relative_to(base).as_posix().encode() + b"\0")
        h.update(file.read_bytes() + b"\0")
    return h.hexdigest()[:16]
