"""``wasmq run`` and ``wasmq new`` as a user runs them (in-process: the edit loop is quick).

Exit codes: 0 the task succeeded, 1 it failed, 2 the command could not run it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner, Result

import compiler
from runtime.cli import app
from runtime.develop.scaffold import LANGUAGES
from runtime.modules.registry import Registry
from runtime.settings import Settings
from tests.support.cli import in_process_env
from tests.support.logs import restored_logging
from tests.support.paths import TASKS, WAT

Invoke = Callable[..., Result]


@pytest.fixture
def wasmq(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toolchain_cache: Path
) -> Iterator[Invoke]:
    """``wasmq("run", ...)`` in this process, in ``tmp_path``, with private dirs and no
    Redis unless ``redis_url`` is given."""
    env = in_process_env(monkeypatch, tmp_path, WASMQ_TOOLCHAIN_CACHE=str(toolchain_cache))

    def invoke(*args: str, input: bytes | None = None, redis_url: str | None = None) -> Result:
        extra = {"REDIS_URL": redis_url} if redis_url else {}
        with restored_logging():
            return CliRunner().invoke(
                app, list(args), input=input, env={**env, **extra}, catch_exceptions=False
            )

    yield invoke


def copy(tmp_path: Path, origin: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes((origin / name).read_bytes())
    return path


def error_line(result: Result) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    *before, last = result.stderr.strip().splitlines()
    # At most the note that a compile started comes first.
    assert all(line.startswith("compiling ") for line in before), result.stderr
    return last


def test_run_echo_prints_the_result_alone_on_stdout(wasmq: Invoke, tmp_path: Path) -> None:
    echo = copy(tmp_path, TASKS, "echo.wat")
    first = wasmq("run", str(echo), "--payload", '{"name": "Ada"}')
    assert first.exit_code == 0, first.stderr
    assert first.stdout == '{"name": "Ada"}'
    # A compile under a second shows no status line (runtime.cli.progress).
    lines = first.stderr.splitlines()
    assert lines[0] == "outcome: ok"
    assert lines[1].startswith("time: ") and "memory: 64.0 KiB (limit 128.0 MiB)" in lines[1]
    assert lines[1].endswith("result: 15 B")


def test_payload_from_a_file_and_from_stdin(wasmq: Invoke, tmp_path: Path) -> None:
    echo = copy(tmp_path, TASKS, "echo.wat")
    (tmp_path / "p.json").write_text('{"from": "file"}')
    assert wasmq("run", str(echo), "-p", "@p.json").stdout == '{"from": "file"}'
    assert wasmq("run", str(echo), "-p", "-", input=b"piped").stdout == "piped"
    assert wasmq("run", str(echo), "-p", "@-", input=b"piped too").stdout == "piped too"
    missing = error_line(wasmq("run", str(echo), "-p", "@nope.json"))
    assert missing == "error: cannot read payload file nope.json: No such file or directory"


def test_second_run_compiles_nothing_and_an_edit_compiles_again(
    wasmq: Invoke, tmp_path: Path
) -> None:
    echo = copy(tmp_path, TASKS, "echo.wat")
    assert wasmq("run", str(echo)).exit_code == 0
    before = compiler.invocation_count()
    again = wasmq("run", str(echo), "-p", "x")
    assert compiler.invocation_count() == before, "the toolchain ran for an unchanged file"
    assert again.exit_code == 0 and "compiling" not in again.stderr
    echo.write_text(echo.read_text().replace('(export "memory")', '(export "memory") (export "m")'))
    edited = wasmq("run", str(echo), "-p", "y")
    assert compiler.invocation_count() == before + 1
    assert edited.exit_code == 0 and edited.stderr.startswith("outcome: ok\n")


def test_a_trap_fails_with_exit_1_and_shows_the_outcome(wasmq: Invoke, tmp_path: Path) -> None:
    result = wasmq("run", str(copy(tmp_path, WAT, "unreachable.wat")))
    assert result.exit_code == 1 and result.stdout == ""
    outcome = [line for line in result.stderr.splitlines() if line.startswith("outcome:")]
    assert len(outcome) == 1
    assert outcome[0].startswith("outcome: trap (retryable): ")
    assert "unreachable" in outcome[0]


def test_the_timeout_flag_ends_a_spinning_task(wasmq: Invoke, tmp_path: Path) -> None:
    spin = copy(tmp_path, WAT, "loop_execute.wat")
    started = time.monotonic()
    result = wasmq("run", str(spin), "--timeout", "0.2s", "--json")
    assert time.monotonic() - started < 5
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert (data["kind"], data["retryable"], data["limits"]["timeout_ms"]) == ("timeout", True, 200)
    assert 200 <= data["duration_ms"] < 2000


def test_the_memory_flag_is_the_task_memory_limit(wasmq: Invoke, tmp_path: Path) -> None:
    echo = copy(tmp_path, TASKS, "echo.wat")
    big = tmp_path / "big.bin"
    big.write_bytes(b"a" * (3 * 65536))
    ok = wasmq("run", str(echo), "-p", "@big.bin", "--memory", "1MiB", "--json")
    assert json.loads(ok.stdout)["memory_bytes"] == 4 * 65536
    refused = wasmq("run", str(echo), "-p", "@big.bin", "--memory", "128KiB", "--json")
    assert refused.exit_code == 1
    data = json.loads(refused.stdout)
    # echo's alloc traps when memory.grow is refused: it never got past its first page.
    assert (data["kind"], data["memory_bytes"], data["limits"]["memory_bytes"]) == (
        "trap",
        65536,
        128 * 1024,
    )
    assert "(in alloc)" in data["message"]


def test_json_is_one_object_with_logs_progress_and_numbers(wasmq: Invoke, tmp_path: Path) -> None:
    assert wasmq("new", "hello", "--lang", "wat").exit_code == 0
    result = wasmq("run", "hello/hello.wat", "--payload", "@hello/payload.json", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""  # no "compiling" note: stdout and stderr are the JSON alone
    data = json.loads(result.stdout)
    assert data["result"] == '{"task":"hello","payload":{"name": "Ada"}}'
    assert (data["ok"], data["kind"], data["encoding"], data["result_bytes"]) == (
        True,
        "ok",
        "utf-8",
        len(data["result"]),
    )
    assert data["source"] == "hello/hello.wat" and data["compiled"] is True
    assert len(data["digest"]) == 64
    assert [(log["stream"], log["text"]) for log in data["logs"]] == [
        ("stdout", "wrapping the payload\n")
    ]
    assert isinstance(data["logs"][0]["ts_ms"], int)
    assert data["progress"] == {"value": 50.0, "message": "payload checked"}
    assert data["memory_bytes"] == 65536 and data["duration_ms"] > 0
    assert data["limits"]["timeout_ms"] == 30_000
    assert data["limits"]["memory_bytes"] == 128 * 1024**2


def test_handler_error_shows_kind_retryable_and_progress(wasmq: Invoke, tmp_path: Path) -> None:
    assert wasmq("new", "hello", "--lang", "wat").exit_code == 0
    result = wasmq("run", "hello/hello.wat", "--payload", "")
    assert result.exit_code == 1 and result.stdout == ""
    assert (
        "outcome: handler (terminal): the payload is empty: send a JSON document (see payload.json)"
    ) in result.stderr.splitlines()
    shown = wasmq("run", "hello/hello.wat", "--payload", "{}")
    assert shown.stdout == '{"task":"hello","payload":{}}'
    assert shown.stderr.splitlines()[:3] == [
        "stdout | wrapping the payload",
        "outcome: ok",
        "progress: 50 payload checked",
    ]


def test_binary_result_is_a_note_and_hex_and_output_writes_it_raw(
    wasmq: Invoke, tmp_path: Path
) -> None:
    echo = copy(tmp_path, TASKS, "echo.wat")
    raw = bytes(range(256)) * 20
    (tmp_path / "raw.bin").write_bytes(raw)
    shown = wasmq("run", str(echo), "-p", "@raw.bin", "--output", "out.bin")
    assert shown.exit_code == 0
    assert (tmp_path / "out.bin").read_bytes() == raw
    assert "the result is 5120 bytes, not UTF-8; the first 1024 in hex" in shown.stderr
    rows = shown.stdout.splitlines()
    assert len(rows) == 64 and rows[0].startswith("00000000  00 01 02 03")
    data = json.loads(wasmq("run", str(echo), "-p", "@raw.bin", "--json").stdout)
    assert data["encoding"] == "base64" and base64.b64decode(data["result"]) == raw


def test_usage_errors_exit_2_with_one_line(wasmq: Invoke, tmp_path: Path) -> None:
    broken = tmp_path / "broken.wat"
    broken.write_text("(module (func (i32.bogus)))\n")
    assert error_line(wasmq("run", str(broken))).startswith(f"error: compiling {broken} failed: ")
    contract = error_line(wasmq("run", str(copy(tmp_path, WAT, "no_alloc.wat"))))
    assert contract.startswith("error: the module does not export `alloc`")
    (tmp_path / "notes.txt").write_text("hi")
    assert "unsupported file type" in error_line(wasmq("run", "notes.txt"))
    echo = copy(tmp_path, TASKS, "echo.wat")
    assert error_line(wasmq("run", str(echo), "--timeout", "soon")).startswith(
        "error: invalid timeout: "
    )
    assert error_line(wasmq("run", str(tmp_path))) == (
        f"error: {tmp_path} is not a file; give a task source or .wasm file"
    )


def test_a_path_that_is_no_file_nor_name_needs_no_redis(wasmq: Invoke) -> None:
    # No REDIS_URL: looking the name up would start an embedded server, which the
    # tier guard refuses in this unmarked test.
    assert error_line(wasmq("run", "handlers/gone.c")) == (
        "error: handlers/gone.c is neither an existing file nor a registered task; give a"
        " task source file, or the name of a task from `wasmq tasks`"
    )


def test_registered_name_runs_its_module_and_unknown_name_names_both(
    wasmq: Invoke, settings: Settings, redis_url: str, redis_client: redis.Redis
) -> None:
    Registry(settings, redis_client).register(TASKS / "echo.wat", name="mirror")
    result = wasmq("run", "mirror", "-p", "by name", "--json", redis_url=redis_url)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["task"], data["version"], data["result"]) == ("mirror", 1, "by name")
    unknown = wasmq("run", "nosuch", redis_url=redis_url)
    assert error_line(unknown) == (
        "error: nosuch is neither an existing file nor a registered task; give a task"
        " source file, or the name of a task from `wasmq tasks`"
    )


def test_new_refuses_an_existing_directory_and_bad_names(wasmq: Invoke, tmp_path: Path) -> None:
    made = wasmq("new", "hello", "--lang", "wat")
    assert made.stdout.splitlines() == [
        "wrote hello/hello.wat",
        "wrote hello/payload.json",
        "wrote hello/README.md",
        "run it: wasmq run hello/hello.wat --payload @hello/payload.json",
    ]
    assert error_line(wasmq("new", "hello", "--lang", "wat")) == (
        "error: hello exists already; pick another name or pass --force"
    )
    assert wasmq("new", "hello", "--lang", "wat", "--force").exit_code == 0
    assert error_line(wasmq("new", "a b", "--lang", "c")).startswith(
        "error: invalid task name 'a b'"
    )
    # An unknown language is a usage error of the option (main() prints it on one line).
    cobol = wasmq("new", "x", "--lang", "cobol")
    assert cobol.exit_code == 2 and "'cobol' is not one of" in cobol.stderr
    elsewhere = wasmq("new", "there", "--lang", "wat", "--dir", "sub/dir")
    assert elsewhere.exit_code == 0 and (tmp_path / "sub/dir/there/there.wat").is_file()


def new_then_run(wasmq: Invoke, language: str) -> None:
    ext, _ = LANGUAGES[language]
    name = f"hello_{language}"
    made = wasmq("new", name, "--lang", language)
    assert made.exit_code == 0, made.stderr
    command = made.stdout.splitlines()[-1].removeprefix("run it: wasmq ").split()
    assert command == ["run", f"{name}/{name}.{ext}", "--payload", f"@{name}/payload.json"]
    result = wasmq(*command)
    assert result.exit_code == 0, result.stderr
    assert result.stdout, "the template's handler returned nothing"
    assert "outcome: ok" in result.stderr.splitlines()
    before = compiler.invocation_count()
    assert wasmq(*command).exit_code == 0
    assert compiler.invocation_count() == before


def test_new_wat_then_run(wasmq: Invoke) -> None:
    new_then_run(wasmq, "wat")


def _assemblyscript() -> object:
    from compiler.assemblyscript import AssemblyScriptAdapter

    adapter = AssemblyScriptAdapter()
    missing = not adapter.available()
    reason = f"AssemblyScript is not installed: {adapter.install_hint()}" if missing else ""
    return pytest.param("assemblyscript", marks=pytest.mark.skipif(missing, reason=reason))


@pytest.mark.toolchain
@pytest.mark.parametrize("language", ["c", "zig", "go", _assemblyscript()])
def test_new_then_run(wasmq: Invoke, language: str) -> None:
    new_then_run(wasmq, language)
