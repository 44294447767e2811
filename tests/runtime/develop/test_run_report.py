"""How a local run is shown: stream-tagged lines, the result, the summary, the JSON."""

from __future__ import annotations

import base64
import json

from runtime.develop.local_run import LocalRun
from runtime.develop.run_report import (
    HEX_BYTES,
    hex_dump,
    log_lines,
    result_text,
    run_json,
    summary_lines,
)
from runtime.output.chunks import STDERR, STDOUT, LogChunk
from runtime.queue.task import OutcomeKind
from runtime.sandbox import Outcome, TaskLimits

LIMITS = TaskLimits(timeout=30.0, memory=64 * 1024**2, result=1024, logs=1024)


def test_lines_split_over_writes_are_joined_and_tagged() -> None:
    chunks = [
        LogChunk(STDOUT, 1, b"hel"),
        LogChunk(STDERR, 2, b"warn\n"),
        LogChunk(STDOUT, 3, b"lo\nsecond"),
        LogChunk(STDERR, 4, b"\xff bad\n"),
    ]
    assert list(log_lines(chunks)) == [
        "stderr | warn",
        "stdout | hello",
        "stderr | \ufffd bad",
        "stdout | second",
    ]


def test_text_results_are_text_and_others_a_note_and_hex() -> None:
    assert result_text('{"ok": "é"}'.encode()) == ('{"ok": "é"}', [])
    text, lines = result_text(b"\x00\xffAB" * 1000)
    assert text is None
    assert lines[0] == (
        f"the result is 4000 bytes, not UTF-8; the first {HEX_BYTES} in hex"
        " (--output FILE writes them all)"
    )
    assert (
        lines[1] == "00000000  00 ff 41 42 00 ff 41 42 00 ff 41 42 00 ff 41 42  |..AB..AB..AB..AB|"
    )
    assert len(lines) == 1 + HEX_BYTES // 16
    assert list(hex_dump(b"abc")) == [f"00000000  {'61 62 63':<47}  |abc|"]


def test_summary_of_a_failure_with_progress() -> None:
    outcome = Outcome(
        OutcomeKind.HANDLER,
        message="no name given",
        retryable=False,
        duration_ms=1.5,
        progress=(50.0, "halfway"),
        memory_bytes=2 * 65536,
    )
    assert list(summary_lines(LocalRun(outcome, LIMITS, 3.0))) == [
        "outcome: handler (terminal): no name given",
        "progress: 50 halfway",
        "time: 1.50 ms (limit 30.0 s), memory: 128.0 KiB (limit 64.0 MiB), result: 0 B",
    ]
    ok = Outcome(OutcomeKind.OK, result=b"x" * 2048, duration_ms=0.25)
    assert list(summary_lines(LocalRun(ok, LIMITS, 1.0))) == [
        "outcome: ok",
        "time: 250 µs (limit 30.0 s), memory: - (limit 64.0 MiB), result: 2.0 KiB",
    ]


def test_json_holds_everything_with_raw_numbers() -> None:
    outcome = Outcome(
        OutcomeKind.TRAP,
        result=b"\xff\x00",
        message="trapped",
        retryable=True,
        logs=[LogChunk(STDOUT, 5, b"line\n")],
        duration_ms=2.0,
        memory_bytes=65536,
    )
    data = json.loads(json.dumps(run_json(LocalRun(outcome, LIMITS, 4.0), source="h.wat")))
    assert data["source"] == "h.wat"
    assert (data["ok"], data["kind"], data["retryable"], data["message"]) == (
        False,
        "trap",
        True,
        "trapped",
    )
    assert data["encoding"] == "base64" and base64.b64decode(data["result"]) == b"\xff\x00"
    assert data["logs"] == [{"stream": "stdout", "ts_ms": 5, "text": "line\n"}]
    assert (data["duration_ms"], data["wall_ms"], data["memory_bytes"]) == (2.0, 4.0, 65536)
    assert data["progress"] is None
    assert data["limits"]["memory_bytes"] == 64 * 1024**2
    assert data["limits"]["timeout_ms"] == 30_000
    # What did not run from a registered task is there, as null.
    assert (data["task"], data["version"], data["log_dropped_bytes"]) == (None, None, 0)
