"""The AssemblyScript guest SDK (``sdk/assemblyscript``) built by the real ``asc`` in the
compile sandbox and run in the real sandbox: bytes in and out, errors, progress, aborts,
the standard library's hooks, and the JSON helpers.

One probe handler dispatches on its payload, so it is compiled once. Without Node.js or
the pinned compiler the compiling tests skip, saying which is missing and how to get it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import redis

import compiler
from compiler import sdk
from compiler.assemblyscript import ASC_ENV, AssemblyScriptAdapter, find_asc
from runtime.errors import CompileError, ToolchainMissing
from runtime.modules.cache import forget_memory
from runtime.modules.registry import Registry
from runtime.queue.task import Limits
from runtime.sandbox import Sandbox, TaskLimits
from runtime.settings import Settings
from tests.support.guest import Built, assert_handler_error, build, run
from tests.support.paths import TASKS

pytestmark = pytest.mark.toolchain

MIB = 1 << 20

# The payload is "<command> <argument>"; each command exercises one part of the SDK.
PROBE = r"""
import { bytes, fail, handle, jsonField, jsonString, progress, retry, text } from "wasmq";
export { alloc, execute } from "wasmq";

handle((payload: Uint8Array): Uint8Array => {
  const all = text(payload);
  const space = all.indexOf(" ");
  const command = space < 0 ? all : all.substring(0, space);
  const arg = payload.subarray(space < 0 ? payload.length : space + 1);
  if (command == "echo") return arg;
  if (command == "empty") return new Uint8Array(0);
  if (command == "big") {
    const out = new Uint8Array(I32.parseInt(text(arg)));
    for (let i = 0; i < out.length; i++) out[i] = <u8>(i % 251);
    return out;
  }
  if (command == "garbage") {
    // Far more than the memory limit in all, collected as it goes; the payload must
    // come through untouched.
    let keep: Array<Uint8Array> = [];
    for (let i = 0; i < 2000; i++) {
      const chunk = new Uint8Array(256 << 10);
      chunk[i % chunk.length] = <u8>i;
      keep.push(chunk);
      if (keep.length > 8) keep.shift();
    }
    keep = [];
    __collect();
    return arg.slice();
  }
  if (command == "fail") return fail(text(arg));
  if (command == "retry") return retry(text(arg));
  if (command == "fail-then-result") {
    fail("changed my mind");
    return bytes("discarded");
  }
  if (command == "progress") {
    progress(42.5, text(arg));
    return bytes("done");
  }
  if (command == "progress-loop") {
    for (let i = 0; i <= 10000; i++) progress(<f64>i / 100, "step " + i.toString());
    return bytes("done");
  }
  if (command == "throw") throw new Error(text(arg));
  if (command == "index") return bytes(new Uint8Array(2)[5].toString());
  if (command == "console") {
    console.log("to stdout");
    console.error("to stderr");
    trace("traced", 2, 1.5, 2);
    return bytes("logged");
  }
  if (command == "random") {
    const a = Math.random();
    const b = Math.random();
    return bytes((a >= 0 && a < 1 && b >= 0 && b < 1 && a != b).toString());
  }
  if (command == "field") {
    const value = jsonField(text(arg), "key");
    return bytes(value === null ? "<null>" : value);
  }
  if (command == "quote") return bytes(jsonString(text(arg)));
  return fail('unknown command "' + command + '"');
});
"""

# A handler without the SDK: its own exports, and a standard library that must still
# import nothing from a JavaScript host.
RAW = r"""
export function alloc(size: i32): usize {
  return heap.alloc(<usize>size);
}

export function execute(ptr: usize, size: i32): u64 {
  console.log("raw " + size.toString());
  assert(size != 3, "three is refused");
  return (<u64>ptr << 32) | <u64>size;
}
"""


@pytest.fixture(scope="module")
def adapter() -> AssemblyScriptAdapter:
    found = AssemblyScriptAdapter()
    try:
        found.version()
    except ToolchainMissing as exc:
        pytest.skip(str(exc))
    return found


def compile_module(source: Path, isolation: str = "bwrap") -> Built:
    return build(source, isolation=isolation)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def probe(adapter: AssemblyScriptAdapter, tmp_path_factory: pytest.TempPathFactory) -> Built:
    return compile_module(write(tmp_path_factory.mktemp("as-sdk"), "probe.ts", PROBE))


def test_echo(sandbox: Sandbox, probe: Built) -> None:
    outcome = run(sandbox, probe, b"echo hello, world")
    assert outcome.ok, outcome.message
    assert outcome.result == b"hello, world"
    assert outcome.progress is None
    assert (outcome.stdout, outcome.stderr) == (b"", b"")


def test_empty_payload_and_result(sandbox: Sandbox, probe: Built) -> None:
    outcome = run(sandbox, probe, b"empty")
    assert outcome.ok, outcome.message
    assert outcome.result == b""
    # A zero-length payload still reaches the handler, which says it is no command.
    assert_handler_error(run(sandbox, probe, b""), retryable=False, message='unknown command ""')


def test_large_payload_and_result_intact(sandbox: Sandbox, probe: Built) -> None:
    data = hashlib.shake_256(b"assemblyscript sdk").digest(MIB)
    echoed = run(sandbox, probe, b"echo " + data)
    assert echoed.ok, echoed.message
    assert echoed.result == data
    big = run(sandbox, probe, b"big %d" % (2 * MIB))
    assert big.ok, big.message
    assert big.result == bytes(i % 251 for i in range(2 * MIB))


def test_payload_and_result_survive_garbage_collection(sandbox: Sandbox, probe: Built) -> None:
    data = hashlib.shake_256(b"garbage").digest(MIB)
    outcome = run(sandbox, probe, b"garbage " + data)
    assert outcome.ok, outcome.message
    assert outcome.result == data
    # 500 MiB were allocated in all; the collector kept the memory near what was live.
    assert outcome.memory_bytes < 64 * MIB


def test_fail_is_terminal(sandbox: Sandbox, probe: Built) -> None:
    outcome = run(sandbox, probe, "fail the order does not exist: ø".encode())
    assert_handler_error(outcome, retryable=False, message="the order does not exist: ø")


def test_retry_is_retryable(sandbox: Sandbox, probe: Built) -> None:
    outcome = run(sandbox, probe, b"retry upstream timed out")
    assert_handler_error(outcome, retryable=True, message="upstream timed out")


def test_result_after_fail_is_discarded(sandbox: Sandbox, probe: Built) -> None:
    outcome = run(sandbox, probe, b"fail-then-result")
    assert_handler_error(outcome, retryable=False, message="changed my mind")


def test_progress_is_reported(sandbox: Sandbox, probe: Built) -> None:
    outcome = run(sandbox, probe, b"progress halfway there")
    assert outcome.ok, outcome.message
    assert outcome.progress == (42.5, "halfway there")
    looped = run(sandbox, probe, b"progress-loop")
    assert looped.ok, looped.message
    assert looped.progress == (100.0, "step 10000")


def test_throw_is_a_retried_trap_with_its_message(sandbox: Sandbox, probe: Built) -> None:
    outcome = run(sandbox, probe, b"throw boom")
    assert (outcome.kind, outcome.trap_code, outcome.retryable) == ("trap", "unreachable", True)
    assert outcome.stderr.startswith(b"abort: boom at probe.ts:")
    assert "abort: boom at probe.ts:" in outcome.message


def test_runtime_abort_is_reported(sandbox: Sandbox, probe: Built) -> None:
    outcome = run(sandbox, probe, b"index")
    assert (outcome.kind, outcome.trap_code) == ("trap", "unreachable")
    assert outcome.stderr.startswith(b"abort: Index out of range at ~lib/")


def test_console_trace_and_random(sandbox: Sandbox, probe: Built) -> None:
    logged = run(sandbox, probe, b"console")
    assert logged.ok, logged.message
    assert logged.stdout == b"to stdout\n"
    assert logged.stderr == b"to stderr\ntrace: traced 1.5, 2.0\n"
    random = run(sandbox, probe, b"random")
    assert (random.ok, random.result) == (True, b"true"), random.message


@pytest.mark.parametrize(
    ("document", "value"),
    [
        ('{"key": "plain"}', "plain"),
        ('  {"a": [1, {"key": "nested"}], "b": {"key": "x"}, "key": "top"}', "top"),
        ('{"key": "esc \\"q\\" \\\\ \\/ \\n \\u00e9 \\ud83d\\ude00"}', 'esc "q" \\ / \n é 😀'),
        ('{"k\\u0065y": "escaped key"}', "escaped key"),
        ('{"a": "}", "key": "after a brace in a string"}', "after a brace in a string"),
        ('{"key": 7}', "<null>"),
        ('{"other": "x"}', "<null>"),
        ('["key", "x"]', "<null>"),
        ('{"key": "unterminated', "<null>"),
        ('{"key": "bad \\x escape"}', "<null>"),
        ("{}", "<null>"),
        ("", "<null>"),
    ],
)
def test_json_field(sandbox: Sandbox, probe: Built, document: str, value: str) -> None:
    outcome = run(sandbox, probe, b"field " + document.encode())
    assert outcome.ok, outcome.message
    assert outcome.result.decode() == value


def test_json_string(sandbox: Sandbox, probe: Built) -> None:
    text = 'quote " backslash \\ newline \n tab \t bell \x07 é 😀'
    outcome = run(sandbox, probe, b"quote " + text.encode())
    assert outcome.ok, outcome.message
    assert json.loads(outcome.result) == text


def test_modules_import_only_wasi_and_wasmq(
    adapter: AssemblyScriptAdapter, probe: Built, tmp_path: Path, sandbox: Sandbox
) -> None:
    """The standard library's host imports (env.abort, env.trace, env.seed, env.console)
    are served by the SDK's hooks, with or without the SDK; an unsandboxed build works
    too and makes the same module."""
    imports = {(i.module, i.name) for i in probe.module.imports}
    assert {module for module, _ in imports} == {"wasi_snapshot_preview1", "wasmq"}
    assert ("wasmq", "fail") in imports
    raw = compile_module(write(tmp_path, "raw.ts", RAW), isolation="none")
    assert {i.module for i in raw.module.imports} <= {"wasi_snapshot_preview1", "wasmq"}
    outcome = run(sandbox, raw, b"four")
    assert (outcome.ok, outcome.result, outcome.stdout) == (True, b"four", b"raw 4\n")
    refused = run(sandbox, raw, b"333")
    assert refused.stderr.startswith(b"abort: three is refused at raw.ts:")
    assert compile_module(write(tmp_path, "raw.ts", RAW)).data == raw.data


def test_handler_never_registered_is_a_terminal_error(
    adapter: AssemblyScriptAdapter, tmp_path: Path, sandbox: Sandbox
) -> None:
    source = write(tmp_path, "forgot.ts", 'export { alloc, execute } from "wasmq";\n')
    outcome = run(sandbox, compile_module(source), b"hello")
    assert_handler_error(
        outcome,
        retryable=False,
        message="the task registers no handler: call handle(...) at the top level of its source",
    )


def test_template_runs_its_payload(
    adapter: AssemblyScriptAdapter, tmp_path: Path, sandbox: Sandbox
) -> None:
    template = sdk.path("assemblyscript") / "template"
    handler = (template / "handler.ts").read_text().replace("__NAME__", "tpl")
    built = compile_module(write(tmp_path, "tpl.ts", handler))
    greeted = run(sandbox, built, (template / "payload.json").read_bytes())
    assert greeted.ok, greeted.message
    assert json.loads(greeted.result) == {"greeting": "Hello, Ada! (from tpl)"}
    assert greeted.progress == (50.0, "greeting Ada")
    assert_handler_error(
        run(sandbox, built, b'{"name": " "}'),
        retryable=False,
        message='the payload has no "name": send {"name": "Ada"}',
    )


def test_compile_error_names_the_line(adapter: AssemblyScriptAdapter, tmp_path: Path) -> None:
    source = write(tmp_path, "broken.ts", 'let x: i32 = "s";\nundefinedName();\n')
    with pytest.raises(CompileError) as caught:
        compile_module(source)
    assert str(caught.value) == (
        f"compiling {source} failed: {source}:1:14: TS2322: Type '~lib/string/String' is not"
        " assignable to type 'i32'. (and more errors)"
    )


def test_compile_sees_no_host_files(adapter: AssemblyScriptAdapter, tmp_path: Path) -> None:
    """An import that climbs out of the work dir finds nothing of the host in the sandbox
    (without it, the same source reads the file)."""
    (tmp_path / "data").mkdir()
    secret = write(tmp_path / "data", "secret.ts", 'export const secret = "s3cr3t";\n')
    climb = "../" * 12 + secret.with_suffix("").as_posix().lstrip("/")
    source = write(
        tmp_path,
        "hostile.ts",
        f'import {{ secret }} from "{climb}";\n'
        "export function alloc(n: i32): usize { return 0; }\n"
        "export function execute(p: usize, n: i32): u64 { return changetype<usize>(secret); }\n",
    )
    with pytest.raises(CompileError, match=r"TS6054: File '[./]*tmp/.*secret\.ts' not found"):
        compile_module(source)
    assert "s3cr3t".encode("utf-16-le") in compile_module(source, isolation="none").data


def test_hello_as_registers_through_the_registry(
    adapter: AssemblyScriptAdapter,
    settings: Settings,
    redis_client: redis.Redis,
    tmp_path: Path,
    sandbox: Sandbox,
) -> None:
    forget_memory()
    registry = Registry(settings, redis_client, toolchain_cache=tmp_path / "cache")
    record = registry.register(TASKS / "hello_as.ts").record
    assert (record.name, record.language, record.toolchain) == (
        "hello_as",
        "assemblyscript",
        "asc",
    )
    assert record.toolchain_version.endswith(f" wasmq-sdk {sdk.digest('assemblyscript')}")
    outcome = sandbox.run(
        registry.load_module(record.digest),
        record.digest,
        b'{"name": "Grace"}',
        TaskLimits.resolve(Limits(), settings),
        task_name=record.name,
    )
    assert outcome.ok, outcome.message
    assert json.loads(outcome.result) == {"greeting": "Hello, Grace!"}
    assert outcome.stdout == b"Hello, Grace! (from hello_as in AssemblyScript)\n"
    assert outcome.progress == (100.0, "greeted Grace")


def test_missing_compiler_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ASC_ENV, str(tmp_path / "no-such-asc"))
    with pytest.raises(
        ToolchainMissing, match=r"the asc toolchain is missing; .*`make toolchains`"
    ):
        compiler.adapter_for(tmp_path / "task.ts")
    adapter = AssemblyScriptAdapter()
    assert "make toolchains" in adapter.install_hint()
    with pytest.raises(ToolchainMissing, match="make toolchains"):
        adapter.version()


def test_named_compiler_is_used(
    adapter: AssemblyScriptAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = sdk.path("assemblyscript") / "node_modules" / ".bin" / "asc"
    monkeypatch.setenv(ASC_ENV, str(bundled))
    assert find_asc() == bundled.resolve().parent.parent
