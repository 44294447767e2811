"""Toolchain processes inside bubblewrap: they see the toolchain, the source, their cache.

Source files name paths the compiler opens (C's ``#include`` and ``#embed``, Zig's
``@embedFile``, TinyGo's cgo preambles), so vetting path strings can never be complete.
Instead each toolchain process runs in fresh namespaces whose filesystem holds only
what the compile needs, mounted at neutral paths (:data:`TOOLCHAIN`, :data:`WORK`,
:data:`CACHE`) so the host's layout does not show through: no host ``/etc``, home or
project tree, no network, a private ``/tmp`` and a ``/proc`` of the compile's own
processes.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from runtime.errors import CompileError, ToolchainMissing

#: Values of WASMQ_COMPILE_ISOLATION.
MODES = ("bwrap", "none")
#: Where the toolchain's own directory appears (read-only).
TOOLCHAIN = Path("/toolchain")
#: Where the compile's work dir (the source copy and the output) appears.
WORK = Path("/work")
#: Where the toolchain's own build cache appears.
CACHE = Path("/cache")

# Namespaces shared by every sandboxed process. Capabilities go even when wasmq runs as
# root. /tmp is private and small: TMPDIR points the toolchains at the work dir.
_FLAGS = (
    "--unshare-all",
    "--die-with-parent",
    "--cap-drop",
    "ALL",
    "--hostname",
    "wasmq",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
)
_TMP_SIZE = str(256 * 1024**2)

# Where a dynamically linked toolchain finds its shared libraries (no /etc means no
# ld.so.cache: the loader falls back to these, its built-in search path).
_LIBRARY_DIRS = ("/lib", "/lib64", "/lib32", "/usr/lib", "/usr/lib64", "/usr/lib32")


def find_bwrap() -> str | None:
    """The bwrap binary on PATH."""
    return shutil.which("bwrap")


def bwrap_for(mode: str) -> str | None:
    """The bwrap that runs toolchains in isolation ``mode``; None when isolation is off.

    Raises :class:`ToolchainMissing` with a one-line fix when bwrap is missing or cannot
    create a sandbox on this machine."""
    if mode == "none":
        return None
    if mode not in MODES:
        raise CompileError(
            f"unknown compile isolation {mode!r}: set WASMQ_COMPILE_ISOLATION to "
            + " or ".join(MODES)
        )
    binary = find_bwrap()
    if binary is None:
        raise ToolchainMissing(
            "compiles run in bubblewrap (WASMQ_COMPILE_ISOLATION=bwrap) but bwrap is not "
            "on PATH; install bubblewrap (apt-get install bubblewrap) or, for trusted source "
            "only, set WASMQ_COMPILE_ISOLATION=none"
        )
    problem = _probe(binary)
    if problem:
        raise ToolchainMissing(
            f"compiles run in bubblewrap (WASMQ_COMPILE_ISOLATION=bwrap) but {binary} cannot "
            f"create a sandbox here ({problem}); allow it user namespaces (in a container: "
            "an unconfined seccomp profile and /proc) or, for trusted source only, set "
            "WASMQ_COMPILE_ISOLATION=none"
        )
    return binary


@functools.cache
def _probe(binary: str) -> str:
    """Why ``binary`` cannot sandbox a process here, or "" when it can."""
    true = shutil.which("true") or "/bin/true"
    try:
        proc = subprocess.run(
            [binary, "--ro-bind", "/", "/", *_flags(binary), "--", true],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode == 0:
        return ""
    lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    return lines[0] if lines else f"it exited with status {proc.returncode}"


@functools.cache
def _flags(binary: str) -> tuple[str, ...]:
    """:data:`_FLAGS` plus the hardening this bwrap supports (older ones lack some)."""
    try:
        text = subprocess.run(
            [binary, "--help"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        text = ""
    flags = list(_FLAGS)
    if "--disable-userns" in text:
        # User namespaces made inside the sandbox are the kernel surface most namespace
        # escapes go through; the compile never needs one.
        flags += ["--unshare-user", "--disable-userns"]
    if "--size" in text:
        flags += ["--size", _TMP_SIZE]
    return (*flags, "--tmpfs", "/tmp")


class Sandbox:
    """The filesystem a toolchain process sees, and the command that starts it there.

    Without bwrap (isolation ``none``) every path is the host's own and the command runs
    as it is, so adapters describe a compile once for both modes."""

    def __init__(self, bwrap: str | None) -> None:
        self.bwrap = bwrap
        self._mounts: list[str] = []

    @property
    def isolated(self) -> bool:
        return self.bwrap is not None

    def bind(self, host: Path, inside: Path, *, writable: bool = False) -> Path:
        """Show host file or dir ``host`` at ``inside``; returns the path the process uses."""
        if self.bwrap is None:
            return host
        self._mounts += ["--bind" if writable else "--ro-bind", str(host), str(inside)]
        return inside

    def system_libraries(self) -> None:
        """The host's shared-library dirs, read-only at their own paths."""
        if self.bwrap is None:
            return
        for name in _LIBRARY_DIRS:
            path = Path(name)
            if path.is_symlink():
                # Merged-/usr systems: /lib is a link into /usr; keep it a link.
                self._mounts += ["--symlink", os.readlink(path), name]
            elif path.is_dir():
                self._mounts += ["--ro-bind", name, name]

    def command(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> list[str]:
        """``argv`` as started in this sandbox, in ``cwd`` with exactly ``env``."""
        if self.bwrap is None:
            return list(argv)
        args = [self.bwrap, *_flags(self.bwrap), *self._mounts, "--chdir", str(cwd), "--clearenv"]
        for key, value in env.items():
            args += ["--setenv", key, value]
        return [*args, "--", *argv]
