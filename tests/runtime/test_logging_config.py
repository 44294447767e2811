"""One log format for the whole process: structlog events (from loggers made before the
configuration too), standard ``logging`` records, warnings and uncaught exceptions."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import warnings
from collections.abc import Iterator

import pytest

from runtime import logging_config
from runtime.output.chunks import LogChunk
from runtime.output.files import mirror_chunks
from tests.support.logs import restored_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    with restored_logging():
        yield


def records(stream: io.StringIO) -> list[dict[str, object]]:
    """Every line written, each parsed as one JSON object (fails on any other line)."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_a_logger_made_before_configure_follows_its_format_and_level() -> None:
    early = logging_config.get_logger("registry")  # as modules do at import
    out = io.StringIO()
    logging_config.configure("warning", "json", stream=out)
    early.info("hidden at warning")
    early.warning("shown", task_name="t")
    (line,) = records(out)
    assert line["event"] == "shown" and line["level"] == "warning"
    assert line["component"] == "registry" and line["task_name"] == "t"

    logging_config.configure("debug", "pretty", stream=out)
    early.debug("now in the pretty format")
    assert "now in the pretty format" in out.getvalue().splitlines()[-1]
    assert not out.getvalue().splitlines()[-1].startswith("{")


def test_stdlib_records_and_warnings_come_out_as_json_lines() -> None:
    out = io.StringIO()
    with warnings.catch_warnings():
        logging_config.configure("info", "json", stream=out)
        warnings.simplefilter("always")
        logging.getLogger("redis.connection").warning("from a library %s", "here")
        logging.getLogger("redis.connection").debug("below the level")
        warnings.warn("an old call", DeprecationWarning, stacklevel=1)
    stdlib, warned = records(out)
    assert stdlib["event"] == "from a library here" and stdlib["level"] == "warning"
    assert stdlib["logger"] == "redis.connection"
    assert warned["level"] == "warning" and warned["logger"] == "py.warnings"
    assert "DeprecationWarning: an old call" in str(warned["event"])


def test_configure_again_replaces_its_handler_instead_of_adding_one() -> None:
    out = io.StringIO()
    logging_config.configure("info", "json", stream=out)
    logging_config.configure("info", "json", stream=out)
    logging.getLogger("lib").warning("once")
    assert [r["event"] for r in records(out)] == ["once"]


def test_an_uncaught_exception_in_a_thread_is_one_json_line() -> None:
    out = io.StringIO()
    logging_config.configure("info", "json", stream=out)

    def boom() -> None:
        raise RuntimeError("broken thread")

    thread = threading.Thread(target=boom, name="the-thread")
    thread.start()
    thread.join()
    (line,) = records(out)
    assert line["event"] == "uncaught exception in thread" and line["level"] == "error"
    assert line["thread"] == "the-thread"
    assert "RuntimeError: broken thread" in str(line["exception"])


def test_the_pretty_format_keeps_python_s_own_exception_hooks() -> None:
    logging_config.configure("info", "json", stream=io.StringIO())
    logging_config.configure("info", "pretty", stream=io.StringIO())
    assert sys.excepthook is sys.__excepthook__
    assert threading.excepthook is threading.__excepthook__


def test_mirrored_task_output_in_json_is_one_log_object_per_line() -> None:
    out = io.StringIO()
    chunks = [LogChunk(1, 1_700_000_000_000, b"a\nb\n"), LogChunk(2, 1_700_000_000_001, b"c")]
    mirror_chunks("task_1", "id-9", chunks, out, as_json=True)
    lines = records(out)
    assert [(r["stream"], r["line"]) for r in lines] == [
        ("stdout", "a"),
        ("stdout", "b"),
        ("stderr", "c"),
    ]
    assert {(r["event"], r["level"], r["task_id"]) for r in lines} == {
        ("task output", "info", "id-9")
    }
