"""The Go guest SDK (``sdk/go``, module ``wasmq.dev/wasmq``) built by the real toolchains
and run in the real sandbox: bytes in and out, JSON, errors, progress, panics, GC.

One probe handler dispatches on its payload, so the standard toolchain builds it once;
TinyGo builds the same probe when it is installed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import redis

from compiler import sdk
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
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"

	"wasmq.dev/wasmq"
)

func main() {}

func init() { wasmq.Handle(handle) }

var sink [][]byte

func handle(payload []byte) ([]byte, error) {
	command, arg, _ := bytes.Cut(payload, []byte(" "))
	switch string(command) {
	case "echo":
		return arg, nil
	case "empty":
		return nil, nil
	case "big":
		n, _ := strconv.Atoi(string(arg))
		out := make([]byte, n)
		for i := range out {
			out[i] = byte(i % 251)
		}
		return out, nil
	case "garbage":
		// Allocate far more than the heap holds at once, collecting as it goes; the
		// payload must come through untouched and the result built after it intact.
		for i := 0; i < 400; i++ {
			chunk := make([]byte, 256<<10)
			chunk[i%len(chunk)] = byte(i)
			sink = append(sink, chunk)
			if len(sink) > 8 {
				sink = sink[1:]
			}
			if i%50 == 0 {
				runtime.GC()
			}
		}
		sink = nil
		runtime.GC()
		sum := sha256.Sum256(arg)
		return []byte(hex.EncodeToString(sum[:])), nil
	case "retry":
		return nil, errors.New(string(arg))
	case "terminal":
		return nil, wasmq.Terminal(errors.New(string(arg)))
	case "wrapped":
		return nil, fmt.Errorf("outer: %w", wasmq.Terminalf("inner %d", 7))
	case "progress":
		wasmq.Progress(42.5, string(arg))
		return []byte("done"), nil
	case "progress-loop":
		for i := 0; i <= 10000; i++ {
			wasmq.Progress(float64(i)/100, "step "+strconv.Itoa(i))
		}
		return []byte("done"), nil
	case "errors":
		t := wasmq.Terminal(io.EOF)
		wrapped := fmt.Errorf("reading: %w", t)
		checks := []bool{
			errors.Is(t, io.EOF),
			errors.Is(wrapped, io.EOF),
			errors.Is(wrapped, wasmq.ErrTerminal),
			wasmq.IsTerminal(wrapped),
			!wasmq.IsTerminal(io.EOF),
			!wasmq.IsTerminal(nil),
			wasmq.Terminal(nil) == nil,
			t.Error() == io.EOF.Error(),
		}
		return []byte(fmt.Sprint(checks)), nil
	case "panic":
		panic("boom")
	}
	return nil, wasmq.Terminalf("unknown command %q", command)
}
"""


def compile_module(source: Path, toolchain: str, cache: Path, isolation: str = "bwrap") -> Built:
    return build(source, toolchain, cache, isolation)


@pytest.fixture(scope="module")
def probe_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("go-sdk") / "probe.go"
    source.write_text(PROBE)
    return source


@pytest.fixture(scope="module")
def probe(probe_source: Path, toolchain_cache: Path) -> Built:
    """The probe built by the standard Go toolchain."""
    return compile_module(probe_source, "go", toolchain_cache)


@pytest.fixture(scope="module")
def greet(toolchain_cache: Path) -> Built:
    """tasks/greet.go, the HandleJSON example, built by the standard Go toolchain."""
    return compile_module(TASKS / "greet.go", "go", toolchain_cache)


def test_echo(sandbox: Sandbox, probe: Built) -> None:
    outcome = run(sandbox, probe, b"echo hello, world")
    assert outcome.ok, outcome.message
    assert outcome.result == b"hello, world"
    assert outcome.progress is None


def test_empty_payload_and_result(sandbox: Sandbox, probe: Built) -> None:
    outcome = run(sandbox, probe, b"empty")
    assert outcome.ok, outcome.message
    assert outcome.result == b""
    # A zero-length payload still reaches the handler, which says it is no command.
    nothing = run(sandbox, probe, b"")
    assert_handler_error(nothing, retryable=False, message='unknown command ""')


def test_large_payload_and_result_intact(sandbox: Sandbox, probe: Built) -> None:
    data = hashlib.shake_256(b"go sdk").digest(MIB)
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
    assert outcome.result == hashlib.sha256(data).hexdigest().encode()


def test_returned_error_is_retryable(sandbox: Sandbox, probe: Built) -> None:
    outcome = run(sandbox, probe, b"retry upstream timed out")
    assert_handler_error(outcome, retryable=True, message="upstream timed out")


def test_terminal_error_is_not_retried(sandbox: Sandbox, probe: Built) -> None:
    outcome = run(sandbox, probe, b"terminal the order does not exist")
    assert_handler_error(outcome, retryable=False, message="the order does not exist")
    # Wrapping keeps the mark and the whole message.
    wrapped = run(sandbox, probe, b"wrapped")
    assert_handler_error(wrapped, retryable=False, message="outer: inner 7")


def test_terminal_errors_work_with_errors_is(sandbox: Sandbox, probe: Built) -> None:
    outcome = run(sandbox, probe, b"errors")
    assert outcome.ok, outcome.message
    assert outcome.result == b"[true true true true true true true true]"


def test_progress_is_reported(sandbox: Sandbox, probe: Built) -> None:
    outcome = run(sandbox, probe, b"progress halfway there")
    assert outcome.ok, outcome.message
    assert outcome.progress == (42.5, "halfway there")
    looped = run(sandbox, probe, b"progress-loop")
    assert looped.ok, looped.message
    assert looped.progress == (100.0, "step 10000")


def test_panic_is_a_retried_trap(sandbox: Sandbox, probe: Built) -> None:
    outcome = run(sandbox, probe, b"panic")
    assert (outcome.kind, outcome.trap_code, outcome.retryable) == ("trap", "unreachable", True)
    assert "panic: boom" in outcome.message


def test_handle_json(sandbox: Sandbox, greet: Built) -> None:
    outcome = run(sandbox, greet, b'{"name": "Ada"}')
    assert outcome.ok, outcome.message
    assert json.loads(outcome.result) == {"greeting": "Hello, Ada!"}
    assert outcome.progress == (100.0, "greeted Ada")
    missing = run(sandbox, greet, b'{"nom": "Ada"}')
    assert_handler_error(
        missing, retryable=False, message='the payload has no "name": send {"name": "Ada"}'
    )
    # An empty payload is the zero request: the handler's own check answers.
    assert run(sandbox, greet, b"").message == missing.message


def test_handle_json_refuses_bad_json(sandbox: Sandbox, greet: Built) -> None:
    broken = run(sandbox, greet, b'{"name": ')
    assert_handler_error(
        broken, retryable=False, message="invalid JSON payload: unexpected end of JSON input"
    )
    mistyped = run(sandbox, greet, b'{"name": 7}')
    assert_handler_error(
        mistyped,
        retryable=False,
        message="invalid JSON payload: json: cannot unmarshal number into Go struct field "
        "request.name of type string",
    )


def test_greet_registers_through_the_registry(
    settings: Settings, redis_client: redis.Redis, toolchain_cache: Path, sandbox: Sandbox
) -> None:
    forget_memory()
    registry = Registry(settings, redis_client, toolchain_cache=toolchain_cache)
    record = registry.register(TASKS / "greet.go").record
    assert (record.name, record.language, record.toolchain) == ("greet", "go", "go")
    assert record.toolchain_version.endswith(f" wasmq-sdk {sdk.digest('go')}")
    outcome = sandbox.run(
        registry.load_module(record.digest),
        record.digest,
        b'{"name": "Grace"}',
        TaskLimits.resolve(Limits(), settings),
        task_name=record.name,
    )
    assert outcome.ok, outcome.message
    assert json.loads(outcome.result) == {"greeting": "Hello, Grace!"}


def test_handler_registered_in_main_is_a_terminal_error(
    tmp_path: Path, toolchain_cache: Path, sandbox: Sandbox
) -> None:
    """The likeliest mistake: main never runs in a reactor, so nothing is registered."""
    source = tmp_path / "in_main.go"
    source.write_text(
        'package main\n\nimport "wasmq.dev/wasmq"\n\n'
        "func main() { wasmq.Handle(func(p []byte) ([]byte, error) { return p, nil }) }\n"
    )
    outcome = run(sandbox, compile_module(source, "go", toolchain_cache), b"hello")
    assert_handler_error(
        outcome,
        retryable=False,
        message="no handler registered: call wasmq.Handle or wasmq.HandleJSON from an init "
        "function (main never runs in a task module)",
    )


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
    }


def test_unsandboxed_build_uses_the_sdk_in_place_and_leaves_it_alone(
    probe_source: Path, toolchain_cache: Path, sandbox: Sandbox
) -> None:
    """Without the sandbox's read-only mount the toolchain sees the SDK's own directory:
    the build still resolves it offline and writes nothing there (no go.sum, no cache)."""
    before = snapshot(sdk.path("go"))
    module = compile_module(probe_source, "go", toolchain_cache, isolation="none")
    assert run(sandbox, module, b"echo in place").result == b"in place"
    assert snapshot(sdk.path("go")) == before


def test_tinygo_builds_the_probe(
    probe_source: Path, toolchain_cache: Path, sandbox: Sandbox
) -> None:
    if shutil.which("tinygo") is None:
        pytest.skip("TinyGo is not installed")
    module = compile_module(probe_source, "tinygo", toolchain_cache)
    echoed = run(sandbox, module, b"echo tiny")
    assert (echoed.ok, echoed.result) == (True, b"tiny"), echoed.message
    assert_handler_error(run(sandbox, module, b"retry later"), retryable=True, message="later")
    assert_handler_error(run(sandbox, module, b"terminal never"), retryable=False, message="never")
    assert run(sandbox, module, b"progress tiny").progress == (42.5, "tiny")
    data = hashlib.shake_256(b"tinygo").digest(MIB)
    collected = run(sandbox, module, b"garbage " + data)
    assert collected.result == hashlib.sha256(data).hexdigest().encode(), collected.message
