"""WebAssembly text through wasmtime's own text-to-binary: no external tool."""

from __future__ import annotations

from pathlib import Path

import wasmtime

from compiler.base import check_size, count_invocation, read_source
from runtime.errors import CompileError


class WatAdapter:
    """``.wat`` with ``wasmtime.wat2wasm``."""

    language = "wat"
    name = "wat"
    runs_toolchain = False

    def available(self) -> bool:
        return True

    def install_hint(self) -> str:
        return "wasmtime is a dependency of wasmq; reinstall wasmq"

    def version(self) -> str:
        from runtime.sandbox.engine import wasmtime_version

        return f"wasmtime {wasmtime_version()}"

    def flags(self) -> tuple[str, ...]:
        return ()

    def compile(self, source: Path, *, timeout: float, output_limit: int) -> bytes:
        try:
            text = read_source(source).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CompileError(f"cannot read {source}: {exc}") from None
        count_invocation()
        try:
            data = wasmtime.wat2wasm(text)
        except wasmtime.WasmtimeError as exc:
            raise CompileError(
                f"compiling {source} failed: {_one_line(str(exc), source)}"
            ) from None
        return check_size(bytes(data), source, output_limit)


def _one_line(message: str, source: Path) -> str:
    message = message.replace("<anon>", str(source))
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    # wasmtime's text errors: "msg", "--> file:line:col", then the source excerpt.
    where = next((line[4:] for line in lines if line.startswith("--> ")), "")
    head = lines[0] if lines else "invalid text format"
    if "failed to compile" in head and len(lines) > 1:
        head = lines[-1]
    return f"{where}: {head}" if where else head
