"""Prebuilt ``.wasm`` modules, taken as they are (the module check still applies)."""

from __future__ import annotations

from pathlib import Path

from compiler.base import read_source
from runtime.errors import CompileError


class WasmAdapter:
    """``.wasm``: no toolchain."""

    language = "wasm"
    name = "wasm"
    runs_toolchain = False

    def available(self) -> bool:
        return True

    def install_hint(self) -> str:
        return "nothing to install"

    def version(self) -> str:
        return "wasm"

    def flags(self) -> tuple[str, ...]:
        return ()

    def compile(self, source: Path, *, timeout: float, output_limit: int) -> bytes:
        data = read_source(source)
        if len(data) > output_limit:
            raise CompileError(
                f"{source} is {len(data)} bytes, over the {output_limit}-byte module limit "
                "(WASMQ_COMPILE_OUTPUT_LIMIT)"
            )
        return data
