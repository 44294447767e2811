"""What every adapter shares: the interface, the sandboxed toolchain run, the counter.

Compiling untrusted source is untrusted work. Each compile runs in a fresh temporary
directory, inside the sandbox of :mod:`compiler.isolation`, with an environment built
from nothing (no inherited secrets, no proxies, a minimal PATH), its own process group
(so a timeout kills the whole tool tree) and a cap on the size of what it produces.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from compiler.isolation import Sandbox
from runtime.errors import CompileError

#: PATH given to toolchains: enough for the system linker helpers, nothing user-specific.
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
#: Lines of compiler output kept in a CompileError's one-line message.
MESSAGE_LINES = 6

_LOCATED = re.compile(r":\d+(:\d+)?: ")

_lock = threading.Lock()
_invocations = 0


def invocation_count() -> int:
    """How many times this process has run a toolchain (compiles and version probes).

    Tests assert on it to prove a cache hit did not touch the toolchain."""
    return _invocations


def count_invocation() -> None:
    global _invocations
    with _lock:
        _invocations += 1


class Adapter(Protocol):
    """Turns one source file into WebAssembly bytes with one toolchain."""

    #: Source language: "go", "c", "cpp", "zig", "wat", "wasm".
    language: str
    #: Toolchain name recorded with the module: "tinygo", "go", "zig", "wat", "wasm".
    name: str
    #: Compiles run a toolchain process, which needs the compile sandbox.
    runs_toolchain: bool

    def available(self) -> bool: ...

    def version(self) -> str: ...

    def flags(self) -> tuple[str, ...]: ...

    def install_hint(self) -> str: ...

    def compile(self, source: Path, *, timeout: float, output_limit: int) -> bytes: ...


def base_env(workdir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A scrubbed environment rooted in ``workdir``."""
    env = {
        "PATH": MINIMAL_PATH,
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C",
        "LC_ALL": "C",
    }
    env.update(extra or {})
    return env


def read_source(source: Path) -> bytes:
    """The bytes of regular file ``source``; a symlink only to a file in its own directory.

    The operator picks the path, but whoever wrote the files may have packed a link to
    ``/etc/passwd``: following it would make a host file the source."""
    try:
        target = source.resolve(strict=True)
        if not target.is_relative_to(source.parent.resolve(strict=True)):
            raise CompileError(
                f"{source} is a symbolic link to a file outside its directory; "
                "register the file itself"
            )
        # O_NOFOLLOW: the link checked above is not swapped for another before the open.
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise CompileError(f"cannot read {source}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise CompileError(f"{source} is not a regular file")
        return f.read()


@contextlib.contextmanager
def workspace(source: Path) -> Iterator[tuple[Path, Path]]:
    """A fresh temp dir holding a copy of ``source``; yields (dir, copied source)."""
    data = read_source(source)
    with tempfile.TemporaryDirectory(prefix="wasmq-compile-") as tmp:
        root = Path(tmp)
        src_dir = root / "src"
        src_dir.mkdir()
        copy = src_dir / source.name
        copy.write_bytes(data)
        yield root, copy


def run_tool(
    argv: Sequence[str],
    *,
    sandbox: Sandbox,
    source: Path,
    workdir: Path,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
) -> str:
    """Run a toolchain command in ``sandbox``; raise CompileError carrying its output when
    it fails. ``workdir`` and ``cwd`` are paths as the toolchain sees them."""
    count_invocation()
    try:
        proc = subprocess.Popen(
            sandbox.command(argv, env=env, cwd=cwd),
            # bwrap enters ``cwd`` inside the sandbox itself.
            cwd=None if sandbox.isolated else cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise CompileError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    with proc:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise CompileError(
                f"compiling {source} took longer than {timeout:g}s; "
                "raise WASMQ_COMPILE_TIMEOUT if the source is legitimately slow to build"
            ) from None
        finally:
            # Tool helpers (go's compile/link, zig's sub-processes) die with their parent;
            # in bwrap they also die with its pid namespace.
            _kill_group(proc)
    text = out.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise CompileError(f"compiling {source} failed: {summarize(text, workdir, source)}")
    return text


def probe(argv: Sequence[str], *, sandbox: Sandbox, env: Mapping[str, str]) -> str:
    """The stdout of a toolchain's version query run in ``sandbox`` ("" when it fails)."""
    count_invocation()
    try:
        out = subprocess.run(
            sandbox.command(argv, env=env, cwd=Path("/")),
            cwd="/",
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def summarize(output: str, workdir: Path, source: Path) -> str:
    """The compiler's own messages on one line, with temp paths replaced by the source's."""
    text = output.replace(str(workdir / "src" / source.name), str(source))
    text = re.sub(rf"(?<![\w/.]){re.escape('./' + source.name)}\b", str(source), text)
    text = re.sub(rf"(?<![\w/.]){re.escape(source.name)}:(?=\d)", f"{source}:", text)
    text = text.replace(str(workdir / "src") + os.sep, "")
    text = re.sub(rf"{re.escape(str(workdir))}(?![\w.-])", "<tmp>", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("#")] or lines
    # Clang-style output interleaves source excerpts; the located messages carry the news.
    located = [line for line in lines if _LOCATED.search(line)]
    lines = located or lines
    if not lines:
        return "the compiler exited with an error and printed nothing"
    shown = lines[:MESSAGE_LINES]
    more = len(lines) - len(shown)
    summary = " | ".join(shown)
    if more:
        summary += f" (+{more} more lines)"
    return summary


def read_output(path: Path, source: Path, output_limit: int) -> bytes:
    """The module a compile produced, refused when missing or over ``output_limit``."""
    try:
        size = path.stat().st_size
    except OSError:
        raise CompileError(f"compiling {source} produced no module") from None
    if size > output_limit:
        raise CompileError(
            f"compiling {source} produced {size} bytes, over the {output_limit}-byte limit "
            "(WASMQ_COMPILE_OUTPUT_LIMIT)"
        )
    return path.read_bytes()


def check_size(data: bytes, source: Path, output_limit: int) -> bytes:
    if len(data) > output_limit:
        raise CompileError(
            f"{source} is {len(data)} bytes as a module, over the {output_limit}-byte limit "
            "(WASMQ_COMPILE_OUTPUT_LIMIT)"
        )
    return data
