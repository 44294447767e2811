"""Toolchain adapters that turn task source files into WebAssembly modules.

One adapter per toolchain, each in its own module; :data:`EXTENSIONS` is the one table
that maps a file extension to the adapter that builds it. Adding a toolchain is adding
a module and a row.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from compiler.base import Adapter, invocation_count
from compiler.go import GoAdapter
from compiler.tinygo import TinyGoAdapter
from compiler.wasm import WasmAdapter
from compiler.wat import WatAdapter
from compiler.zig import ZigAdapter, ZigCAdapter, ZigCppAdapter
from runtime.errors import CompileError, ToolchainMissing

__all__ = [
    "EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "Adapter",
    "adapter_for",
    "go_adapter",
    "invocation_count",
]


def go_adapter(go_toolchain: str = "auto", cache_dir: Path | None = None) -> Adapter:
    """TinyGo when forced or (``auto``) on PATH, else the standard Go toolchain."""
    tinygo = TinyGoAdapter(cache_dir)
    if go_toolchain == "tinygo":
        if not tinygo.available():
            raise ToolchainMissing(
                f"WASMQ_GO_TOOLCHAIN=tinygo but tinygo is not on PATH: {tinygo.install_hint()}"
            )
        return tinygo
    if go_toolchain == "auto" and tinygo.available():
        return tinygo
    return GoAdapter(cache_dir)


#: Extension -> factory(go_toolchain, cache_dir).
EXTENSIONS: dict[str, Callable[[str, Path | None], Adapter]] = {
    ".go": go_adapter,
    ".c": lambda _go, cache: ZigCAdapter(cache),
    ".cc": lambda _go, cache: ZigCppAdapter(cache),
    ".cpp": lambda _go, cache: ZigCppAdapter(cache),
    ".zig": lambda _go, cache: ZigAdapter(cache),
    ".wat": lambda _go, _cache: WatAdapter(),
    ".wasm": lambda _go, _cache: WasmAdapter(),
}

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(EXTENSIONS)


def adapter_for(path: Path, go_toolchain: str = "auto", cache_dir: Path | None = None) -> Adapter:
    """The adapter for ``path``'s extension; ``cache_dir`` keeps toolchain build caches.

    Raises :class:`CompileError` for an unsupported extension and
    :class:`ToolchainMissing` when the toolchain is not installed."""
    factory = EXTENSIONS.get(Path(path).suffix.lower())
    if factory is None:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise CompileError(f"{path}: unsupported file type (use one of {supported})")
    # Toolchains run in a temporary working dir, so a relative cache path would move.
    adapter = factory(go_toolchain, cache_dir.absolute() if cache_dir else None)
    if not adapter.available():
        raise ToolchainMissing(
            f"cannot build {path}: the {adapter.name} toolchain is missing; "
            f"{adapter.install_hint()}"
        )
    return adapter
