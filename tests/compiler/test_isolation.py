"""Hostile sources against the real toolchains: compiling reads nothing of the host.

Each source tries to pull a host file into its module or its error message (C's
``#include``/``#embed``, Zig's ``@embedFile``, Go's ``//go:embed``, a symlinked source,
``/proc``). With isolation the files do not exist where the compiler looks, so the
compile fails with a clear error, or builds a module that holds nothing of the host.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import wasmtime

import compiler
from compiler.isolation import MODES
from runtime.errors import CompileError, ToolchainMissing
from runtime.modules.cache import forget_memory
from runtime.modules.registry import Registry
from runtime.settings import COMPILE_ISOLATIONS, Settings
from tests.support.paths import ROOT

TASKS = ROOT / "tasks"
LIMIT = 64 * 1024**2
PASSWD_LINES = [line for line in Path("/etc/passwd").read_text().splitlines() if line.strip()]


def build(path: Path, cache: Path, isolation: str = "bwrap") -> bytes:
    adapter = compiler.adapter_for(path, "go", cache, isolation)
    return adapter.compile(path, timeout=300, output_limit=LIMIT)


def refused(path: Path, cache: Path, match: str) -> str:
    """The one-line error of compiling ``path``, checked to quote no host file."""
    with pytest.raises(CompileError, match=match) as info:
        build(path, cache)
    message = str(info.value)
    assert "\n" not in message
    assert_nothing_of_the_host(message.encode())
    assert "/work/src" not in message, "sandbox paths map back to the source's own"
    return message


def assert_nothing_of_the_host(data: bytes) -> None:
    assert b"root:x:0:0" not in data
    for line in PASSWD_LINES:
        assert line.encode() not in data


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def call(data: bytes, export: str) -> int:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    exports = linker.instantiate(store, wasmtime.Module(engine, data)).exports(store)
    if "_initialize" in exports:
        exports["_initialize"](store)
    result = exports[export](store)
    assert isinstance(result, int)
    return result


# -- C: #include and #embed --------------------------------------------------------------

HOST_PATHS = [
    "/etc/passwd",
    "../../../../etc/passwd",
    "/proc/1/root/etc/passwd",
    "/proc/self/cwd/../../../etc/passwd",
]


@pytest.mark.parametrize("target", HOST_PATHS)
@pytest.mark.toolchain
def test_c_embed_of_a_host_file_fails(target: str, tmp_path: Path, toolchain_cache: Path) -> None:
    source = write(tmp_path, "a/b/c/embed.c", f'const char data[] = {{\n#embed "{target}"\n}};\n')
    refused(source, toolchain_cache, r"embed\.c:1:1: error: a file named by #embed does not")


@pytest.mark.parametrize("target", HOST_PATHS)
@pytest.mark.toolchain
def test_c_include_of_a_host_file_quotes_nothing(
    target: str, tmp_path: Path, toolchain_cache: Path
) -> None:
    source = write(tmp_path, "a/b/c/include.c", f'#include "{target}"\nint x;\n')
    refused(source, toolchain_cache, r"include\.c:1:10: fatal error: '.*' file not found")


@pytest.mark.toolchain
def test_cpp_include_of_a_host_file_fails(tmp_path: Path, toolchain_cache: Path) -> None:
    source = write(tmp_path, "include.cpp", '#include "/etc/passwd"\nint x;\n')
    refused(source, toolchain_cache, r"include\.cpp:1:10: fatal error: '/etc/passwd' file not")


@pytest.mark.parametrize(
    "directive", ['#import "/etc/passwd"', '#pragma GCC dependency "/etc/passwd"']
)
@pytest.mark.toolchain
def test_other_directives_naming_a_host_file_fail(
    directive: str, tmp_path: Path, toolchain_cache: Path
) -> None:
    source = write(tmp_path, "directive.c", f"{directive}\nint x;\n")
    refused(source, toolchain_cache, r"directive\.c:1:\d+: fatal error: '/etc/passwd' file not")


MACRO_PATH = "#define STR(x) #x\n#define PATH(x) STR(x)\n"


@pytest.mark.toolchain
def test_c_embed_of_a_path_built_by_macros_fails(tmp_path: Path, toolchain_cache: Path) -> None:
    text = MACRO_PATH + "const char data[] = {\n#embed PATH(/etc/passwd)\n};\n"
    refused(write(tmp_path, "macro.c", text), toolchain_cache, r"#embed does not exist")


@pytest.mark.toolchain
def test_c_include_of_a_path_built_by_macros_fails(tmp_path: Path, toolchain_cache: Path) -> None:
    text = MACRO_PATH + "#include PATH(/etc/passwd)\nint x;\n"
    refused(write(tmp_path, "macro.c", text), toolchain_cache, r"file not found")


@pytest.fixture
def canaries(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """Header files the compile must not see: in the project tree, the user's home and the
    host's /tmp. Each is valid C, so reading it would make the compile succeed."""
    made: dict[str, Path] = {}
    for where, directory in (("project", ROOT), ("home", Path.home()), ("tmp", tmp_path)):
        path = directory / f".wasmq-canary-{secrets.token_hex(8)}.h"
        try:
            path.write_text(f"int canary_{path.stem[-16:]} = 1;\n")
        except OSError:
            continue  # a read-only home: nothing there to leak in this test
        made[where] = path
    try:
        yield made
    finally:
        for path in made.values():
            path.unlink(missing_ok=True)


@pytest.mark.parametrize("directive", ["include", "embed"])
@pytest.mark.toolchain
def test_project_tree_home_and_tmp_are_not_there(
    directive: str, canaries: dict[str, Path], tmp_path: Path, toolchain_cache: Path
) -> None:
    assert canaries
    for where, canary in canaries.items():
        body = (
            f'#include "{canary}"\n'
            if directive == "include"
            else f'const char data[] = {{\n#embed "{canary}"\n}};\n'
        )
        source = write(tmp_path, f"{where}_{directive}.c", body)
        message = refused(source, toolchain_cache, r"file not found|#embed does not exist")
        assert canary.read_text().strip() not in message


def found_bit(test: str, bit: int) -> list[str]:
    """Preprocessor lines defining ``FOUND_<bit>`` as ``1 << bit`` when ``test`` holds."""
    return [
        f"#if {test}",
        f"#define FOUND_{bit} {1 << bit}",
        "#else",
        f"#define FOUND_{bit} 0",
        "#endif",
    ]


@pytest.mark.toolchain
def test_has_include_and_has_embed_see_no_host_file(tmp_path: Path, toolchain_cache: Path) -> None:
    paths = ["/etc/passwd", "/etc/hostname", "/root", str(ROOT / "pyproject.toml")]
    paths += [str(Path.home()), str(tmp_path), "/proc/1/root/etc/passwd"]
    tests = [f'__has_include("{path}")' for path in paths]
    tests += [f'__has_embed("{path}") != __STDC_EMBED_NOT_FOUND__' for path in paths]
    # The controls: the sandbox's own /proc is there, so the probes themselves work.
    controls = ['__has_include("/proc/self/environ")']
    controls += ['__has_embed("/proc/self/environ") != __STDC_EMBED_NOT_FOUND__']
    lines = [line for bit, test in enumerate(tests + controls) for line in found_bit(test, bit)]
    found = " | ".join(f"FOUND_{bit}" for bit in range(len(tests)))
    control = " | ".join(f"FOUND_{bit}" for bit in range(len(tests), len(tests + controls)))
    lines += [
        f'__attribute__((export_name("found"))) int found(void) {{ return {found}; }}',
        f'__attribute__((export_name("control"))) int control(void) {{ return {control}; }}',
    ]
    data = build(write(tmp_path, "probe.c", "\n".join(lines) + "\n"), toolchain_cache)
    seen = call(data, "found")
    assert seen == 0, [test for bit, test in enumerate(tests) if seen & (1 << bit)]
    assert call(data, "control") == (1 << len(tests)) | (1 << (len(tests) + 1))


@pytest.mark.parametrize("target", ["/proc/self/environ", "/proc/1/environ"])
@pytest.mark.toolchain
def test_proc_environ_shows_no_host_variable(
    target: str, tmp_path: Path, toolchain_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = f"wasmq-canary-{secrets.token_hex(8)}"
    monkeypatch.setenv("WASMQ_TEST_SECRET", canary)
    text = (
        f'const char data[] = {{\n#embed "{target}" suffix(,) if_empty()\n0}};\n'
        '__attribute__((export_name("size"))) int size(void) { return sizeof data; }\n'
    )
    source = write(tmp_path, "environ.c", text)
    try:
        data = build(source, toolchain_cache)
    except CompileError as exc:
        output = str(exc).encode()
    else:
        output = data
    assert canary.encode() not in output
    assert b"WASMQ_TEST_SECRET" not in output


@pytest.mark.toolchain
def test_include_error_shows_the_source_path_not_the_sandbox(
    tmp_path: Path, toolchain_cache: Path
) -> None:
    source = write(tmp_path, "missing.c", '#include "nothere.h"\nint x;\n')
    message = refused(source, toolchain_cache, rf"{source}:1:10: fatal error: 'nothere.h' file")
    assert "/work" not in message.replace(str(source), "")


@pytest.mark.parametrize("name", ["-I.c", "-o.c", "-femit-bin=x.zig"])
@pytest.mark.toolchain
def test_a_source_named_like_an_option_is_a_file(
    name: str, tmp_path: Path, toolchain_cache: Path
) -> None:
    text = (
        "export fn answer() i32 {\n    return 42;\n}\n"
        if name.endswith(".zig")
        else '__attribute__((export_name("answer"))) int answer(void) { return 42; }\n'
    )
    assert call(build(write(tmp_path, name, text), toolchain_cache), "answer") == 42


# -- symlinked sources -----------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".c", ".zig", ".go", ".wat", ".wasm"])
@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../../../../../etc/passwd"])
@pytest.mark.toolchain
def test_a_symlinked_source_outside_its_dir_is_refused(
    suffix: str, target: str, tmp_path: Path, toolchain_cache: Path
) -> None:
    link = tmp_path / "tasks" / f"evil{suffix}"
    link.parent.mkdir()
    link.symlink_to(target)
    message = refused(link, toolchain_cache, r"is a symbolic link to a file outside its dir")
    assert message.startswith(f"{link} is a symbolic link")


def test_a_symlink_to_a_file_beside_it_builds(tmp_path: Path, toolchain_cache: Path) -> None:
    # The layout of a Kubernetes ConfigMap volume: every file links into a dir beside it.
    data_dir = tmp_path / "tasks" / "..data"
    data_dir.mkdir(parents=True)
    shutil.copy(TASKS / "echo.wat", data_dir / "echo.wat")
    link = tmp_path / "tasks" / "echo.wat"
    link.symlink_to("..data/echo.wat")
    assert build(link, toolchain_cache)


@pytest.mark.toolchain
def test_registering_a_symlink_to_a_host_file_fails(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path, toolchain_cache: Path
) -> None:
    forget_memory()
    registry = Registry(settings, redis_client, toolchain_cache=toolchain_cache)
    link = tmp_path / "tasks" / "passwd.c"
    link.parent.mkdir()
    link.symlink_to("/etc/passwd")
    with pytest.raises(CompileError, match="symbolic link to a file outside") as info:
        registry.register(link)
    assert_nothing_of_the_host(str(info.value).encode())
    assert registry.get("passwd") is None


@pytest.mark.toolchain
def test_registering_an_embed_of_a_host_file_fails(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path, toolchain_cache: Path
) -> None:
    forget_memory()
    registry = Registry(settings, redis_client, toolchain_cache=toolchain_cache)
    source = write(tmp_path, "leak.c", 'const char data[] = {\n#embed "/etc/passwd"\n};\n')
    with pytest.raises(CompileError, match="a file named by #embed does not exist") as info:
        registry.register(source)
    assert_nothing_of_the_host(str(info.value).encode())
    assert registry.get("leak") is None


# -- Zig and Go --------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../etc/passwd"])
@pytest.mark.toolchain
def test_zig_embed_file_of_a_host_file_fails(
    target: str, tmp_path: Path, toolchain_cache: Path
) -> None:
    text = f'const data = @embedFile("{target}");\nexport fn size() usize {{ return data.len; }}\n'
    source = write(tmp_path, "embed.zig", text)
    refused(source, toolchain_cache, rf"{source}:1:\d+: error: embed of file outside")


@pytest.mark.parametrize("target", ["../../../etc/passwd", "/etc/passwd"])
@pytest.mark.toolchain
def test_go_embed_outside_the_module_fails(
    target: str, tmp_path: Path, toolchain_cache: Path
) -> None:
    text = f'package main\n\nimport _ "embed"\n\n//go:embed {target}\nvar secret string\n'
    source = write(tmp_path, "embed.go", text + "\nfunc main() { println(secret) }\n")
    refused(source, toolchain_cache, rf"{source}:5:\d+: pattern {target}: invalid pattern")


@pytest.mark.skipif(shutil.which("tinygo") is None, reason="TinyGo is not installed")
@pytest.mark.toolchain
def test_tinygo_cgo_include_of_a_host_file_fails(tmp_path: Path, toolchain_cache: Path) -> None:
    text = 'package main\n\n// #include "/etc/passwd"\nimport "C"\n\nfunc main() {}\n'
    source = write(tmp_path, "cgo.go", text)
    adapter = compiler.adapter_for(source, "tinygo", toolchain_cache)
    with pytest.raises(CompileError, match="file not found") as info:
        adapter.compile(source, timeout=300, output_limit=LIMIT)
    assert_nothing_of_the_host(str(info.value).encode())


# -- the shared cache ----------------------------------------------------------------------


@pytest.mark.toolchain
def test_zig_objects_of_a_source_stay_out_of_the_shared_cache(
    tmp_path: Path, toolchain_cache: Path
) -> None:
    marker = f"wasmq_marker_{secrets.token_hex(8)}"
    text = (
        f'__attribute__((export_name("{marker}"))) const char *{marker}(void) '
        f'{{ return "{marker}"; }}\n'
    )
    data = build(write(tmp_path, f"{marker}.c", text), toolchain_cache)
    assert marker.encode() in data
    for path in (toolchain_cache / "zig").rglob("*"):
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), path


# -- without bubblewrap ------------------------------------------------------------------------


@pytest.mark.toolchain
def test_missing_bwrap_is_a_clear_one_line_error(
    tmp_path: Path, toolchain_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = TASKS / "task_1_c.c"
    adapter = compiler.adapter_for(source, "go", toolchain_cache)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for build_it in (
        lambda: compiler.adapter_for(source, "go", toolchain_cache, "bwrap"),
        lambda: adapter.compile(source, timeout=300, output_limit=LIMIT),
    ):
        with pytest.raises(ToolchainMissing) as info:
            build_it()
        message = str(info.value)
        assert "\n" not in message
        assert "bwrap is not on PATH" in message
        assert "apt-get install bubblewrap" in message
        assert "WASMQ_COMPILE_ISOLATION=none" in message
    # WAT and .wasm run no toolchain process: no sandbox needed.
    wat = compiler.adapter_for(TASKS / "echo.wat", "go", toolchain_cache, "bwrap")
    assert wat.compile(TASKS / "echo.wat", timeout=10, output_limit=LIMIT)


@pytest.mark.toolchain
def test_a_bwrap_that_cannot_sandbox_is_a_clear_error(
    tmp_path: Path, toolchain_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create a new namespace' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ToolchainMissing) as info:
        compiler.adapter_for(TASKS / "task_1.go", "go", toolchain_cache, "bwrap")
    message = str(info.value)
    assert "\n" not in message
    assert f"{fake} cannot create a sandbox here (bwrap: No permissions" in message
    assert "WASMQ_COMPILE_ISOLATION=none" in message


@pytest.mark.toolchain
def test_isolation_none_runs_the_toolchain_on_the_host(
    tmp_path: Path, toolchain_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap, and none is needed
    source = write(tmp_path, "plain.zig", "export fn answer() i32 {\n    return 42;\n}\n")
    assert call(build(source, toolchain_cache, "none"), "answer") == 42


def test_the_setting_takes_the_modes_the_compiler_knows() -> None:
    assert COMPILE_ISOLATIONS == MODES
    assert Settings.load(environ={}, env_file=None).compile_isolation == "bwrap"
    none = Settings.load(environ={"WASMQ_COMPILE_ISOLATION": "none"}, env_file=None)
    assert none.compile_isolation == "none"


def test_unknown_isolation_is_refused() -> None:
    with pytest.raises(CompileError, match="set WASMQ_COMPILE_ISOLATION to bwrap or none"):
        compiler.adapter_for(TASKS / "task_1_c.c", "go", None, "chroot")
