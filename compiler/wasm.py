"""Prebuilt ``.wasm`` modules, taken as they are (the module check still applies)."""

from __future__ import annotations

from pathlib import Path

from runtime.errors import CompileError


class WasmAdapter:
    """``.wasm``: no toolchain."""

    language = "wasm"
    name = "wasm"

    def available(self) -> bool:
        return True

    def install_hint(self) -> str:
        return "nothing to install"

    def version(self) -> str:
        return "wasm"

    def flags(self) -> tuple[str, ...]:
        return ()

    def compile(self, source: Path, *, timeout: float, output_limit: int) -> bytes:
        try:
            size = source.stat().st_size
            if size > output_limit:
                raise CompileError(
                    f"{source} is {size} bytes, over the {output_limit}-byte module limit "
                    "(WASMQ_COMPILE_OUTPUT_LIMIT)"
                )
            return source.read_bytes()
        except OSError as exc:
            raise CompileError(f"cannot read {source}: {exc.strerror or exc}") from None
