"""C, C++ and Zig through Zig (the ``ziglang`` Python package): wasm32-wasi reactors.

Raw C/C++ handlers mark their exports with ``__attribute__((export_name("alloc")))``,
raw Zig handlers with ``export fn``. Handlers using the guest SDK (shown read-only in the
sandbox) ``#include "wasmq.h"``, found through ``-I``, or ``@import("wasmq")``, a module
every Zig compile declares: unused, it costs nothing and changes no output. Builds are
optimised for size and stripped.

The package holds a static ``zig`` binary next to its ``lib/``; the sandbox shows that
directory alone, and Zig finds ``lib/`` from its own path (``/proc/self/exe``).
"""

from __future__ import annotations

import functools
import importlib.util
import re
from importlib import metadata
from pathlib import Path

from compiler import sdk
from compiler.base import base_env, read_output, run_tool, workspace
from compiler.isolation import CACHE, TOOLCHAIN, WORK, Sandbox, bwrap_for
from runtime.errors import CompileError, ToolchainMissing

# The exported stack pointer lets the sandbox tell a result left in a returned frame
# (a local buffer) from one that outlives the call; Zig exports it on its own.
_C_FLAGS = (
    "-target",
    "wasm32-wasi",
    "-mexec-model=reactor",
    "-Os",
    "-s",
    "-Wl,--export=__stack_pointer",
)

# With the -MD zig cc passes, clang takes an #embed of a missing file for a generated one
# and writes no dependency file: zig then reports only the missing dependency file.
_NO_DEPFILE = re.compile(r"error: failed to read '[^']*\.d': FileNotFound")
_NO_EMBED = "error: a file named by #embed does not exist"


@functools.cache
def zig_dir() -> Path | None:
    """The ``ziglang`` package directory: the ``zig`` binary and its ``lib/``."""
    spec = importlib.util.find_spec("ziglang")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    return root if (root / "zig").is_file() else None


class _ZigBase:
    name = "zig"
    language = ""
    runs_toolchain = True
    #: Which guest SDK (``compiler.sdk``) this language's sources may use.
    sdk_language = ""

    def __init__(self, cache_dir: Path | None = None, isolation: str = "bwrap") -> None:
        self.cache_dir = cache_dir
        self.isolation = isolation

    def available(self) -> bool:
        return zig_dir() is not None

    def install_hint(self) -> str:
        return "install Zig with `pip install ziglang` (or `pip install wasmq[zig]`)"

    def version(self) -> str:
        if not self.available():
            raise ToolchainMissing(f"Zig is not installed: {self.install_hint()}")
        try:
            zig = f"zig {metadata.version('ziglang')}"
        except metadata.PackageNotFoundError:
            zig = "zig unknown"
        # The SDK is part of every build: changing it must rebuild handlers.
        return f"{zig} wasmq-sdk {sdk.digest(self.sdk_language)}"

    def flags(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _command(self, source: str, out: Path, sdk_dir: Path) -> list[str]:
        raise NotImplementedError

    def compile(self, source: Path, *, timeout: float, output_limit: int) -> bytes:
        root = zig_dir()
        if root is None:
            raise ToolchainMissing(f"Zig is not installed: {self.install_hint()}")
        sandbox = Sandbox(bwrap_for(self.isolation))
        with workspace(source) as (tmp, copy):
            # The global cache holds Zig's prebuilt wasi-libc (rebuilding it takes ~15 s),
            # compiler_rt and builtin.zig, all derived from the toolchain and the target.
            # Objects of the source itself go to the local cache, which dies with the
            # work dir, so no compile reads another's.
            cache = (self.cache_dir / "zig") if self.cache_dir else tmp / "zig-global"
            cache.mkdir(parents=True, exist_ok=True)
            work = sandbox.bind(tmp, WORK, writable=True)
            zig = sandbox.bind(root, TOOLCHAIN)
            sdk_dir = sandbox.bind(sdk.path(self.sdk_language), sdk.SDK_MOUNT / self.sdk_language)
            extra = {
                "ZIG_GLOBAL_CACHE_DIR": str(sandbox.bind(cache, CACHE, writable=True)),
                "ZIG_LOCAL_CACHE_DIR": str(work / "zig-local"),
            }
            # "./": a file named like an option ("-o.c") stays a file name.
            command = self._command(f"./{copy.name}", work / "out.wasm", sdk_dir)
            try:
                run_tool(
                    [str(zig / "zig"), *command],
                    sandbox=sandbox,
                    source=source,
                    workdir=work,
                    cwd=work / "src",
                    env=base_env(work, extra),
                    timeout=timeout,
                )
            except CompileError as exc:
                message, missing_embed = _NO_DEPFILE.subn(_NO_EMBED, str(exc))
                if missing_embed:
                    raise CompileError(message) from None
                raise
            return read_output(tmp / "out.wasm", source, output_limit)


class ZigCAdapter(_ZigBase):
    """``.c`` with ``zig cc``."""

    language = "c"
    sdk_language = "c"

    def flags(self) -> tuple[str, ...]:
        return _C_FLAGS

    def _command(self, source: str, out: Path, sdk_dir: Path) -> list[str]:
        return ["cc", *self.flags(), "-I", str(sdk_dir), "-o", str(out), source]


class ZigCppAdapter(_ZigBase):
    """``.cc`` / ``.cpp`` with ``zig c++`` (no exceptions: wasm32-wasi has none)."""

    language = "cpp"
    sdk_language = "c"

    def flags(self) -> tuple[str, ...]:
        return (*_C_FLAGS, "-fno-exceptions")

    def _command(self, source: str, out: Path, sdk_dir: Path) -> list[str]:
        return ["c++", *self.flags(), "-I", str(sdk_dir), "-o", str(out), source]


class ZigAdapter(_ZigBase):
    """``.zig`` with ``zig build-exe`` as a reactor."""

    language = "zig"
    sdk_language = "zig"

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

    def _command(self, source: str, out: Path, sdk_dir: Path) -> list[str]:
        # Per-module options (target, -O, strip) precede the -M they apply to; the
        # wasmq module inherits them from the root module.
        return [
            "build-exe",
            *self.flags(),
            f"-femit-bin={out}",
            "--dep",
            "wasmq",
            f"-Mroot={source}",
            f"-Mwasmq={sdk_dir / 'wasmq.zig'}",
        ]
