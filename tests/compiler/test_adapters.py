"""Each adapter with its real toolchain: the examples compile, pass the contract, run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import compiler
from compiler.base import base_env
from compiler.go import GoAdapter
from compiler.tinygo import TinyGoAdapter
from runtime.errors import CompileError, ToolchainMissing
from runtime.modules.contract import compile_checked
from runtime.sandbox.engine import get_engine
from tests.support.paths import TASKS
from tests.support.wasi_run import run_module

LIMIT = 64 * 1024**2

GREETERS = ["task_1.go", "task_1_c.c", "task_1_zig.zig", "task_1_wat.wat"]
ECHOES = ["echo.wat", "echo_c.c"]


def build(name: str, cache: Path, go_toolchain: str = "go") -> tuple[compiler.Adapter, bytes]:
    path = TASKS / name
    adapter = compiler.adapter_for(path, go_toolchain, cache)
    return adapter, adapter.compile(path, timeout=300, output_limit=LIMIT)


@pytest.mark.parametrize("source", GREETERS)
@pytest.mark.toolchain
def test_greeter_compiles_checks_and_greets(
    source: str, toolchain_cache: Path, tmp_path: Path
) -> None:
    adapter, data = build(source, toolchain_cache)
    compile_checked(get_engine(False), data)
    result, stdout = run_module(data, b'{"name": "Ada"}', tmp_path)
    assert json.loads(result) == {"message": "Hello, Ada!"}
    assert stdout.startswith(b"Hello, Ada!")
    assert adapter.version()


@pytest.mark.parametrize("source", GREETERS)
@pytest.mark.toolchain
def test_greeter_defaults_to_world(source: str, toolchain_cache: Path, tmp_path: Path) -> None:
    _, data = build(source, toolchain_cache)
    result, _ = run_module(data, b"{}", tmp_path)
    assert json.loads(result) == {"message": "Hello, World!"}


@pytest.mark.parametrize("source", ECHOES)
@pytest.mark.toolchain
def test_echo_returns_its_payload(source: str, toolchain_cache: Path, tmp_path: Path) -> None:
    _, data = build(source, toolchain_cache)
    compile_checked(get_engine(False), data)
    payload = b'{"n": 1, "blob": "' + b"x" * 100_000 + b'"}'
    result, stdout = run_module(data, payload, tmp_path)
    assert result == payload
    assert stdout == b""


@pytest.mark.toolchain
def test_extension_table() -> None:
    assert {
        ".go",
        ".c",
        ".cc",
        ".cpp",
        ".zig",
        ".wat",
        ".wasm",
        ".ts",
    } == compiler.SUPPORTED_EXTENSIONS
    languages = {
        ext: compiler.adapter_for(Path("x" + ext), "go").language
        for ext in compiler.SUPPORTED_EXTENSIONS
    }
    assert languages == {
        ".go": "go",
        ".c": "c",
        ".cc": "cpp",
        ".cpp": "cpp",
        ".zig": "zig",
        ".wat": "wat",
        ".wasm": "wasm",
        ".ts": "assemblyscript",
    }
    with pytest.raises(CompileError, match=r"task\.rs: unsupported file type \(use one of"):
        compiler.adapter_for(Path("task.rs"))


@pytest.mark.toolchain
def test_go_toolchain_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(compiler.adapter_for(Path("t.go"), "go"), GoAdapter)
    if shutil.which("tinygo") is None:
        assert isinstance(compiler.adapter_for(Path("t.go"), "auto"), GoAdapter)
        with pytest.raises(ToolchainMissing, match="tinygo is not on PATH"):
            compiler.adapter_for(Path("t.go"), "tinygo")
    else:
        assert isinstance(compiler.adapter_for(Path("t.go"), "auto"), TinyGoAdapter)


@pytest.mark.skipif(
    shutil.which("tinygo") is None, reason="TinyGo is not installed (no tinygo on PATH)"
)
@pytest.mark.toolchain
def test_tinygo_builds_the_reference_task(toolchain_cache: Path, tmp_path: Path) -> None:
    adapter, data = build("task_1.go", toolchain_cache, "tinygo")
    assert adapter.name == "tinygo"
    compile_checked(get_engine(False), data)
    result, _ = run_module(data, b'{"name": "Ada"}', tmp_path)
    assert json.loads(result) == {"message": "Hello, Ada!"}


@pytest.mark.toolchain
def test_go_version_and_flags() -> None:
    adapter = GoAdapter()
    assert adapter.version().startswith("go1.")
    assert "-buildmode=c-shared" in adapter.flags()


@pytest.mark.toolchain
def test_go_compile_error_names_file_and_line(tmp_path: Path, toolchain_cache: Path) -> None:
    source = tmp_path / "broken.go"
    source.write_text("package main\n\nfunc main() {\n\tundefinedThing()\n}\n")
    with pytest.raises(CompileError) as info:
        GoAdapter(toolchain_cache).compile(source, timeout=300, output_limit=LIMIT)
    message = str(info.value)
    assert f"{source}:4:2: undefined: undefinedThing" in message
    assert "\n" not in message
    assert "wasmq-compile-" not in message  # no temp paths leak into the message


@pytest.mark.toolchain
def test_c_compile_error_names_file_and_line(tmp_path: Path, toolchain_cache: Path) -> None:
    source = tmp_path / "broken.c"
    source.write_text("int f(void) {\n  return nope;\n}\n")
    with pytest.raises(CompileError, match=rf"{source}:2:\d+: error: use of undeclared"):
        compiler.adapter_for(source, cache_dir=toolchain_cache).compile(
            source, timeout=300, output_limit=LIMIT
        )


@pytest.mark.toolchain
def test_zig_compile_error(tmp_path: Path, toolchain_cache: Path) -> None:
    source = tmp_path / "broken.zig"
    source.write_text("export fn alloc(size: u32) u32 {\n    return nope;\n}\n")
    with pytest.raises(CompileError, match=rf"{source}:2:12: error: use of undeclared"):
        compiler.adapter_for(source, cache_dir=toolchain_cache).compile(
            source, timeout=300, output_limit=LIMIT
        )


def test_wat_syntax_error(tmp_path: Path) -> None:
    source = tmp_path / "broken.wat"
    source.write_text("(module\n  (func (result i32) i64.cst 1))\n")
    with pytest.raises(CompileError, match=rf"{source}:2:22: unknown operator"):
        compiler.adapter_for(source).compile(source, timeout=10, output_limit=LIMIT)


@pytest.mark.toolchain
def test_compile_timeout_kills_the_toolchain(tmp_path: Path) -> None:
    source = tmp_path / "slow.go"
    source.write_text("package main\n\nfunc main() {}\n")
    # A cold cache needs seconds to build the runtime: 50 ms is never enough.
    with pytest.raises(CompileError, match=r"took longer than 0.05s; raise WASMQ_COMPILE_TIMEOUT"):
        GoAdapter(tmp_path / "cold").compile(source, timeout=0.05, output_limit=LIMIT)


@pytest.mark.toolchain
def test_output_limit(toolchain_cache: Path) -> None:
    source = TASKS / "task_1_c.c"
    with pytest.raises(CompileError, match=r"over the 1000-byte limit"):
        compiler.adapter_for(source, cache_dir=toolchain_cache).compile(
            source, timeout=300, output_limit=1000
        )
    with pytest.raises(CompileError, match=r"over the 10-byte limit"):
        compiler.adapter_for(TASKS / "echo.wat").compile(
            TASKS / "echo.wat", timeout=10, output_limit=10
        )


def test_wasm_is_taken_as_is(tmp_path: Path) -> None:
    _, data = build("echo.wat", tmp_path)
    path = tmp_path / "echo.wasm"
    path.write_bytes(data)
    adapter = compiler.adapter_for(path)
    assert (adapter.language, adapter.name) == ("wasm", "wasm")
    assert adapter.compile(path, timeout=1, output_limit=LIMIT) == data
    with pytest.raises(CompileError, match="over the 10-byte module limit"):
        adapter.compile(path, timeout=1, output_limit=10)


def test_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("GOPROXY", "https://proxy.example")
    env = base_env(tmp_path, {"GOPROXY": "off"})
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert env["GOPROXY"] == "off"
    assert env["HOME"] == str(tmp_path)
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "GOPROXY"}
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "hunter2"


@pytest.mark.toolchain
def test_go_build_cannot_fetch_modules(tmp_path: Path, toolchain_cache: Path) -> None:
    source = tmp_path / "net.go"
    source.write_text('package main\n\nimport _ "example.com/evil/pkg"\n\nfunc main() {}\n')
    with pytest.raises(CompileError, match=r"GOPROXY=off|cannot find module|no required module"):
        GoAdapter(toolchain_cache).compile(source, timeout=300, output_limit=LIMIT)


def test_invocations_are_counted(toolchain_cache: Path) -> None:
    before = compiler.invocation_count()
    build("echo.wat", toolchain_cache)
    assert compiler.invocation_count() == before + 1
