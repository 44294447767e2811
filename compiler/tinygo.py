"""Go through TinyGo: small modules, WASI preview 1 reactor, production flags."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

from compiler.base import base_env, count_invocation, read_output, run_tool, workspace
from compiler.go import GO_MOD, find_go
from runtime.errors import ToolchainMissing


@functools.cache
def tinygo_version(binary: str) -> str:
    count_invocation()
    out = subprocess.run(
        [binary, "version"], env=base_env(Path("/")), capture_output=True, text=True, timeout=30
    )
    # "tinygo version 0.37.0 linux/amd64 (using go version go1.24.1 ...)"
    words = out.stdout.split()
    return f"tinygo {words[2]}" if len(words) > 2 else "tinygo-unknown"


class TinyGoAdapter:
    """``.go`` with TinyGo (preferred when ``tinygo`` is on PATH)."""

    language = "go"
    name = "tinygo"

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir

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
        return tinygo_version(self._binary())

    def flags(self) -> tuple[str, ...]:
        return ("-target=wasip1", "-buildmode=c-shared", "-opt=2", "-no-debug", "-panic=trap")

    def compile(self, source: Path, *, timeout: float, output_limit: int) -> bytes:
        binary = self._binary()
        with workspace(source) as (tmp, copy):
            (copy.parent / "go.mod").write_text(GO_MOD)
            cache = (self.cache_dir / "tinygo") if self.cache_dir else tmp / "tinygo-cache"
            cache.mkdir(parents=True, exist_ok=True)
            extra = {
                "XDG_CACHE_HOME": str(cache),
                "GOCACHE": str(cache / "go-build"),
                "GOPATH": str(tmp / "gopath"),
                "GOMODCACHE": str(tmp / "gopath" / "mod"),
                "GOPROXY": "off",
                "GOSUMDB": "off",
                "GOFLAGS": "-mod=mod",
                "GOTOOLCHAIN": "local",
                "GOTELEMETRY": "off",
                "GOENV": "off",
            }
            go = find_go()
            if go is not None:
                # TinyGo needs a Go installation for the standard library sources.
                extra["PATH"] = f"{go[0].parent}:{base_env(tmp)['PATH']}"
                if go[1] is not None:
                    extra["GOROOT"] = str(go[1])
            out = tmp / "out.wasm"
            run_tool(
                [binary, "build", *self.flags(), "-o", str(out), "."],
                source=source,
                workdir=tmp,
                cwd=copy.parent,
                env=base_env(tmp, extra),
                timeout=timeout,
            )
            return read_output(out, source, output_limit)
