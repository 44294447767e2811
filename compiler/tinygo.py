"""Go through TinyGo: small modules, WASI preview 1 reactor, production flags.

TinyGo is a dynamically linked binary that runs ``go`` (for package lists and the
standard library sources) and may run ``wasm-opt``: its sandbox shows TinyGo's install
dir, the Go installation, a ``wasm-opt`` from PATH when TinyGo carries none, and the
host's shared-library dirs. The guest SDK is shown and required as in :mod:`compiler.go`.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

from compiler import sdk
from compiler.base import MINIMAL_PATH, base_env, probe, read_output, run_tool, workspace
from compiler.go import find_go, go_mod, show_go, show_sdk
from compiler.isolation import CACHE, TOOLCHAIN, WORK, Sandbox, bwrap_for
from runtime.errors import ToolchainMissing


def show_tinygo(sandbox: Sandbox, binary: str) -> tuple[Path, dict[str, str]]:
    """Mount TinyGo (and the Go it builds against) into ``sandbox``; returns the ``tinygo``
    to run there and the environment it needs."""
    resolved = Path(binary).resolve()
    # bin/tinygo of its install dir (/usr/local/bin/tinygo links into the .deb's).
    root = resolved.parent.parent
    if sandbox.isolated and not (root / "src" / "runtime").is_dir():
        raise ToolchainMissing(
            f"{binary} is not inside a TinyGo installation (no src/runtime beside its bin/); "
            "install TinyGo from its release packages"
        )
    sandbox.system_libraries()
    seen = sandbox.bind(root, TOOLCHAIN / "tinygo")
    path = [str(seen / "bin")] if sandbox.isolated else []
    env: dict[str, str] = {"TINYGOROOT": str(seen)} if sandbox.isolated else {}
    go = find_go()
    if go is not None and sandbox.isolated:
        # TinyGo needs a Go installation for the standard library sources.
        goroot = show_go(sandbox, *go, TOOLCHAIN / "go")
        path.insert(0, str(goroot / "bin"))
        env["GOROOT"] = str(goroot)
    elif go is not None:
        path.insert(0, str(go[0].parent))
        if go[1] is not None:
            env["GOROOT"] = str(go[1])
    wasm_opt = shutil.which("wasm-opt", path=MINIMAL_PATH)
    if sandbox.isolated and wasm_opt and not (root / "bin" / "wasm-opt").exists():
        # A system binaryen: the one file, not the whole of its bin dir.
        where = TOOLCHAIN / "wasm-opt"
        sandbox.bind(Path(wasm_opt).resolve(), where / "wasm-opt")
        path.append(str(where))
    env["PATH"] = ":".join(path if sandbox.isolated else [*path, MINIMAL_PATH])
    return seen / resolved.relative_to(root), env


@functools.cache
def tinygo_version(binary: str, bwrap: str | None) -> str:
    sandbox = Sandbox(bwrap)
    tinygo, extra = show_tinygo(sandbox, binary)
    out = probe([str(tinygo), "version"], sandbox=sandbox, env=base_env(Path("/"), extra))
    # "tinygo version 0.37.0 linux/amd64 (using go version go1.24.1 ...)"
    words = out.split()
    return f"tinygo {words[2]}" if len(words) > 2 else "tinygo-unknown"


class TinyGoAdapter:
    """``.go`` with TinyGo (preferred when ``tinygo`` is on PATH)."""

    language = "go"
    name = "tinygo"
    runs_toolchain = True

    def __init__(self, cache_dir: Path | None = None, isolation: str = "bwrap") -> None:
        self.cache_dir = cache_dir
        self.isolation = isolation

    def available(self) -> bool:
        return shutil.which("tinygo") is not None

    def install_hint(self) -> str:
        return "install TinyGo (https://tinygo.org/getting-started/install/) and put it on PATH"

    def _binary(self) -> str:
        binary = shutil.which("tinygo")
        if binary is None:
            raise ToolchainMissing(f"tinygo is not on PATH: {self.install_hint()}")
        return binary

    def version(self) -> str:
        toolchain = tinygo_version(self._binary(), bwrap_for(self.isolation))
        return f"{toolchain} wasmq-sdk {sdk.digest('go')}"

    def flags(self) -> tuple[str, ...]:
        return ("-target=wasip1", "-buildmode=c-shared", "-opt=2", "-no-debug", "-panic=trap")

    def compile(self, source: Path, *, timeout: float, output_limit: int) -> bytes:
        binary = self._binary()
        sandbox = Sandbox(bwrap_for(self.isolation))
        with workspace(source) as (tmp, copy):
            (copy.parent / "go.mod").write_text(go_mod(show_sdk(sandbox)))
            cache = (self.cache_dir / "tinygo") if self.cache_dir else tmp / "tinygo-cache"
            cache.mkdir(parents=True, exist_ok=True)
            work = sandbox.bind(tmp, WORK, writable=True)
            seen_cache = sandbox.bind(cache, CACHE, writable=True)
            tinygo, extra = show_tinygo(sandbox, binary)
            extra |= {
                "XDG_CACHE_HOME": str(seen_cache),
                "GOCACHE": str(seen_cache / "go-build"),
                "GOPATH": str(work / "gopath"),
                "GOMODCACHE": str(work / "gopath" / "mod"),
                "GOPROXY": "off",
                "GOSUMDB": "off",
                "GOFLAGS": "-mod=mod",
                "GOTOOLCHAIN": "local",
                "GOTELEMETRY": "off",
                "GOENV": "off",
            }
            run_tool(
                [str(tinygo), "build", *self.flags(), "-o", str(work / "out.wasm"), "."],
                sandbox=sandbox,
                source=source,
                workdir=work,
                cwd=work / "src",
                env=base_env(work, extra),
                timeout=timeout,
            )
            return read_output(tmp / "out.wasm", source, output_limit)
