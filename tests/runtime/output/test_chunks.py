"""One chunk type: what the sandbox captures is what the queue stores, streams and shows."""

from __future__ import annotations

import wasmtime

from runtime.output.chunks import STDERR, STDOUT, LogChunk, decode_chunk, encode_chunk
from runtime.sandbox import Sandbox, TaskLimits
from runtime.sandbox.engine import get_engine
from tests.support.paths import WAT

LIMITS = TaskLimits(timeout=5.0, memory=16 << 20, result=1 << 16, logs=1 << 16)


def test_captured_chunks_are_the_stored_type_and_survive_storage(sandbox: Sandbox) -> None:
    live: list[LogChunk] = []
    module = wasmtime.Module(get_engine(), (WAT / "echo.wat").read_text())
    outcome = sandbox.run(module, "echo", b"hi", LIMITS, task_name="echo", on_output=live.append)
    assert outcome.ok, outcome.message
    assert {c.stream for c in outcome.logs} == {STDOUT, STDERR}
    for chunk in [*outcome.logs, *live]:
        assert type(chunk) is LogChunk
        assert decode_chunk(encode_chunk(chunk)) == chunk
    assert live == outcome.logs
