"""C, C++ and Zig through Zig (the ``ziglang`` Python package): wasm32-wasi reactors.

C/C++ handlers mark their exports with ``__attribute__((export_name("alloc")))``; Zig
handlers with ``export fn``. Builds are optimised for size and stripped.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib import metadata
from pathlib import Path

from compiler.base import base_env, read_output, run_tool, workspace
from runtime.errors import ToolchainMissing

_C_FLAGS = ("-target", "wasm32-wasi", "-mexec-model=reactor", "-Os", "-s")


class _ZigBase:
    name = "zig"
    language = ""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir

    def available(self) -> bool:
        return importlib.util.find_spec("ziglang") is not None

    def install_hint(self) -> str:
        return "install Zig with `pip install ziglang` (or `pip install wasmq[zig]`)"

    def version(self) -> str:
        if not self.available():
            raise ToolchainMissing(f"Zig is not installed: {self.install_hint()}")
        try:
            return f"zig {metadata.version('ziglang')}"
        except metadata.PackageNotFoundError:
            return "zig unknown"

    def flags(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _command(self, copy: Path, out: Path) -> list[str]:
        raise NotImplementedError

    def compile(self, source: Path, *, timeout: float, output_limit: int) -> bytes:
        if not self.available():
            raise ToolchainMissing(f"Zig is not installed: {self.install_hint()}")
        with workspace(source) as (tmp, copy):
            # The global cache holds Zig's prebuilt wasi-libc: rebuilding it takes ~15 s.
            cache = (self.cache_dir / "zig") if self.cache_dir else tmp / "zig-global"
            cache.mkdir(parents=True, exist_ok=True)
            extra = {
                "ZIG_GLOBAL_CACHE_DIR": str(cache),
                "ZIG_LOCAL_CACHE_DIR": str(tmp / "zig-local"),
            }
            out = tmp / "out.wasm"
            run_tool(
                [sys.executable, "-I", "-m", "ziglang", *self._command(copy, out)],
                source=source,
                workdir=tmp,
                cwd=copy.parent,
                env=base_env(tmp, extra),
                timeout=timeout,
            )
            return read_output(out, source, output_limit)


class ZigCAdapter(_ZigBase):
    """``.c`` with ``zig cc``."""

    language = "c"

    def flags(self) -> tuple[str, ...]:
        return _C_FLAGS

    def _command(self, copy: Path, out: Path) -> list[str]:
        return ["cc", *self.flags(), "-o", str(out), copy.name]


class ZigCppAdapter(_ZigBase):
    """``.cc`` / ``.cpp`` with ``zig c++`` (no exceptions: wasm32-wasi has none)."""

    language = "cpp"

    def flags(self) -> tuple[str, ...]:
        return (*_C_FLAGS, "-fno-exceptions")

    def _command(self, copy: Path, out: Path) -> list[str]:
        return ["c++", *self.flags(), "-o", str(out), copy.name]


class ZigAdapter(_ZigBase):
    """``.zig`` with ``zig build-exe`` as a reactor."""

    language = "zig"

    def flags(self) -> tuple[str, ...]:
        return (
            "-target",
            "wasm32-wasi",
            "-mexec-model=reactor",
            "-fno-entry",
            "-rdynamic",
            "-O",
            "ReleaseSmall",
            "-fstrip",
        )

    def _command(self, copy: Path, out: Path) -> list[str]:
        return ["build-exe", *self.flags(), f"-femit-bin={out}", copy.name]
