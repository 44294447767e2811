"""Toolchain adapters that turn task source files into WebAssembly modules.

One adapter per toolchain, each in its own module; :data:`EXTENSIONS` is the one table
that maps a file extension to the adapter that builds it. Adding a toolchain is adding
a module and a row.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from compiler.assemblyscript import AssemblyScriptAdapter
from compiler.base import Adapter, invocation_count
from compiler.go import GoAdapter
from compiler.isolation import bwrap_for
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


def go_adapter(
    go_toolchain: str = "auto", cache_dir: Path | None = None, isolation: str = "bwrap"
) -> Adapter:
    """TinyGo when forced or (``auto``) on PATH, else the standard Go toolchain."""
    tinygo = TinyGoAdapter(cache_dir, isolation)
    if go_toolchain == "tinygo":
        if not tinygo.available():
            raise ToolchainMissing(
                f"WASMQ_GO_TOOLCHAIN=tinygo but tinygo is not on PATH: {tinygo.install_hint()}"
            )
        return tinygo
    if go_toolchain == "auto" and tinygo.available():
        return tinygo
    return GoAdapter(cache_dir, isolation)


#: Extension -> factory(go_toolchain, cache_dir, isolation).
EXTENSIONS: dict[str, Callable[[str, Path | None, str], Adapter]] = {
    ".go": go_adapter,
    ".c": lambda _go, cache, isolation: ZigCAdapter(cache, isolation),
    ".cc": lambda _go, cache, isolation: ZigCppAdapter(cache, isolation),
    ".cpp": lambda _go, cache, isolation: ZigCppAdapter(cache, isolation),
    ".zig": lambda _go, cache, isolation: ZigAdapter(cache, isolation),
    ".ts": lambda _go, cache, isolation: AssemblyScriptAdapter(cache, isolation),
    ".wat": lambda _go, _cache, _isolation: WatAdapter(),
    ".wasm": lambda _go, _cache, _isolation: WasmAdapter(),
}

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(EXTENSIONS)


def adapter_for(
    path: Path,
    go_toolchain: str = "auto",
    cache_dir: Path | None = None,
    isolation: str = "bwrap",
) -> Adapter:
    """The adapter for ``path``'s extension; ``cache_dir`` keeps toolchain build caches,
    ``isolation`` (``bwrap`` or ``none``) is how toolchain processes are sandboxed.

    Raises :class:`CompileError` for an unsupported extension and
    :class:`ToolchainMissing` when the toolchain, or the sandbox it needs, is missing."""
    factory = EXTENSIONS.get(Path(path).suffix.lower())
    if factory is None:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise CompileError(f"{path}: unsupported file type (use one of {supported})")
    # Toolchains run in a temporary working dir, so a relative cache path would move.
    adapter = factory(go_toolchain, cache_dir.absolute() if cache_dir else None, isolation)
    if not adapter.available():
        raise ToolchainMissing(
            f"cannot build {path}: the {adapter.name} toolchain is missing; "
            f"{adapter.install_hint()}"
        )
    if adapter.runs_toolchain:
        try:
            bwrap_for(isolation)
        except CompileError as exc:
            raise type(exc)(f"cannot build {path}: {exc}") from None
    return adapter
