"""Task logs: chunk format, stored list, log files, mirror, live stream and follow."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest
import redis

from runtime.output.chunks import LogChunk, decode_chunk, encode_chunk, read_logs
from runtime.output.files import mirror_chunks, save_log_file
from runtime.output.follow import follow
from runtime.output.live import LiveLogPublisher
from runtime.queue import keys
from runtime.queue.task import Stage, Task
from runtime.settings import Settings


def test_chunk_round_trip_keeps_spaces_newlines_and_binary() -> None:
    for data in (b"", b"hello world\n", b"a b  c\r\n\n", bytes(range(256))):
        chunk = LogChunk(2, 1_700_000_000_123, data)
        raw = encode_chunk(chunk)
        assert raw.startswith(b"2 1700000000123 ")
        assert decode_chunk(raw) == chunk


def test_malformed_chunk_is_a_value_error() -> None:
    for raw in (b"", b"1", b"x 5 data", b"1 nope data"):
        with pytest.raises(ValueError):
            decode_chunk(raw)


def test_read_logs_in_order_and_by_stream(redis_client: redis.Redis) -> None:
    chunks = [LogChunk(1, 10, b"out 1\n"), LogChunk(2, 11, b"err 1\n"), LogChunk(1, 12, b"out 2")]
    redis_client.rpush(keys.logs("t1"), *[encode_chunk(c) for c in chunks])
    assert read_logs(redis_client, "t1") == chunks
    assert read_logs(redis_client, "t1", "stdout") == [chunks[0], chunks[2]]
    assert read_logs(redis_client, "t1", "stderr") == [chunks[1]]
    assert read_logs(redis_client, "missing") == []
    with pytest.raises(ValueError, match="unknown stream"):
        read_logs(redis_client, "t1", "stdin")


def test_log_file_at_reference_path_with_streams_times_and_truncation(
    settings: Settings,
) -> None:
    chunks = [LogChunk(1, 0, b"first line\nsecond"), LogChunk(2, 1000, b"oops\n")]
    path = save_log_file(settings, "task_1", "abc-123", chunks, dropped=42)
    assert path == settings.wasm_log_dir / "task_1" / "abc-123.log"
    assert path.read_text().splitlines() == [
        "1970-01-01T00:00:00.000Z stdout | first line",
        "1970-01-01T00:00:00.000Z stdout | second",
        "1970-01-01T00:00:01.000Z stderr | oops",
        "[output truncated: 42 bytes dropped at the log limit]",
    ]
    # A later attempt replaces the file; no temporary files are left behind.
    save_log_file(settings, "task_1", "abc-123", [LogChunk(1, 0, b"again\n")], dropped=0)
    assert path.read_text() == "1970-01-01T00:00:00.000Z stdout | again\n"
    assert [p.name for p in path.parent.iterdir()] == ["abc-123.log"]


def test_log_file_refuses_names_that_escape_the_directory(settings: Settings) -> None:
    from runtime.errors import InvalidTask

    with pytest.raises(InvalidTask):
        save_log_file(settings, "..", "x", [], 0)
    with pytest.raises(InvalidTask):
        save_log_file(settings, "ok", "../../etc/x", [], 0)
    assert not Path(settings.wasm_log_dir).exists()


def test_mirror_prefixes_every_line_with_name_and_id() -> None:
    out = io.StringIO()
    mirror_chunks("task_1", "id-9", [LogChunk(1, 0, b"a\nb\n"), LogChunk(2, 0, b"c")], out)
    assert out.getvalue().splitlines() == [
        "[task_1 id-9] stdout: a",
        "[task_1 id-9] stdout: b",
        "[task_1 id-9] stderr: c",
    ]


def test_short_tasks_never_touch_the_stream(redis_client: redis.Redis) -> None:
    publisher = LiveLogPublisher(redis_client)
    try:
        for i in range(50):
            publisher.start_task(f"quick-{i}")
            publisher.publish(LogChunk(1, 0, b"hi"))
            publisher.end_task(f"quick-{i}")
        time.sleep(0.2)
    finally:
        publisher.close()
    assert redis_client.keys(keys.LOG_STREAM_PREFIX + "*") == []


def test_long_task_streams_from_its_first_chunk(redis_client: redis.Redis) -> None:
    publisher = LiveLogPublisher(redis_client)
    try:
        publisher.start_task("slow")
        publisher.publish(LogChunk(1, 1, b"early"))
        time.sleep(0.15)
        entries = redis_client.xrange(keys.log_stream("slow"))
        assert [(e[1][b"d"], e[1][b"n"]) for e in entries] == [(b"early", b"0")]
        publisher.publish(LogChunk(2, 2, b"late"), task_id="slow")
        publisher.end_task("slow")
    finally:
        publisher.close()
    entries = redis_client.xrange(keys.log_stream("slow"))
    assert [e[1] for e in entries][1:] == [
        {b"s": b"2", b"t": b"2", b"d": b"late", b"n": b"1"},
        {b"e": b"1"},
    ]
    assert 0 < redis_client.pttl(keys.log_stream("slow")) <= 60_000


def _running_task(client: redis.Redis, task_id: str) -> None:
    task = Task(id=task_id, task_name="job", stage=Stage.IN_PROGRESS, created_ms=1)
    client.hset(keys.task(task_id), mapping=task.to_hash())  # type: ignore[arg-type]


def _finish(client: redis.Redis, task_id: str, chunks: list[LogChunk]) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.logs(task_id))
    if chunks:
        pipe.rpush(keys.logs(task_id), *[encode_chunk(c) for c in chunks])
    pipe.hset(keys.task(task_id), "task_stage", Stage.COMPLETED)
    pipe.publish(keys.done_channel(task_id), Stage.COMPLETED)
    pipe.execute()


def test_follow_sees_a_line_before_the_task_ends(redis_client: redis.Redis) -> None:
    _running_task(redis_client, "live")
    publisher = LiveLogPublisher(redis_client)
    chunks = [LogChunk(1, 1, b"before\n"), LogChunk(2, 2, b"after\n")]
    ended_at: list[float] = []

    def task() -> None:
        publisher.start_task("live")
        publisher.publish(chunks[0])
        time.sleep(1.0)
        publisher.publish(chunks[1])
        publisher.end_task("live")
        time.sleep(0.05)
        ended_at.append(time.monotonic())
        _finish(redis_client, "live", chunks)

    thread = threading.Thread(target=task)
    thread.start()
    seen: list[tuple[float, LogChunk]] = []
    try:
        for chunk in follow(redis_client, "live"):
            seen.append((time.monotonic(), chunk))
    finally:
        thread.join()
        publisher.close()
    assert [c for _, c in seen] == chunks
    assert seen[0][0] < ended_at[0] - 0.5
    # It returned promptly once the task ended.
    assert time.monotonic() - ended_at[0] < 0.5


def test_follow_of_a_quick_task_yields_the_stored_chunks(redis_client: redis.Redis) -> None:
    _running_task(redis_client, "quick")
    chunks = [LogChunk(1, 1, b"one\n"), LogChunk(2, 2, b"two\n")]
    threading.Timer(0.2, _finish, (redis_client, "quick", chunks)).start()
    assert list(follow(redis_client, "quick")) == chunks
    assert list(follow(redis_client, "quick", "stderr")) == chunks[1:]


def test_follow_switches_to_the_stored_rest_without_repeats(redis_client: redis.Redis) -> None:
    _running_task(redis_client, "mixed")
    chunks = [LogChunk(1, i, f"line {i}\n".encode()) for i in range(5)]
    # The stream has the first three chunks; the task then ends before the rest streams.
    for i, chunk in enumerate(chunks[:3]):
        redis_client.xadd(
            keys.log_stream("mixed"), {"s": 1, "t": chunk.ts_ms, "d": chunk.data, "n": i}
        )
    threading.Timer(0.3, _finish, (redis_client, "mixed", chunks)).start()
    assert list(follow(redis_client, "mixed")) == chunks


def test_worker_streams_live_output_through_the_publisher(
    redis_client: redis.Redis, settings: Settings
) -> None:
    """The real worker loop wires ``on_output`` to the publisher (stand-in sandbox)."""
    import json

    from runtime.queue.broker import Broker
    from runtime.queue.task import OutcomeKind
    from runtime.sandbox.outcome import Outcome
    from runtime.worker.loop import Worker
    from tests.support.standins import DIGEST, StandInRegistry, StandInSandbox

    class PrintingSandbox(StandInSandbox):
        def run(
            self, module: object, digest: str, payload: bytes, limits: object, **kw: object
        ) -> Outcome:
            on_output = kw["on_output"]
            assert callable(on_output)
            chunks = [LogChunk(1, 1, b"before\n"), LogChunk(2, 2, b"after\n")]
            on_output(chunks[0])
            time.sleep(0.6)
            on_output(chunks[1])
            return Outcome(OutcomeKind.OK, result=b"done", logs=chunks, log_bytes=13)

    redis_client.hset(keys.TASK_REGISTRY, "job", json.dumps({"digest": DIGEST, "version": 1}))
    Broker(redis_client, settings).enqueue(Task(id="w-live", task_name="job"))
    worker = Worker(
        settings,
        ["default"],
        client=redis_client,
        burst=True,
        registry=StandInRegistry(redis_client),
        sandbox=PrintingSandbox(),
    )
    thread = threading.Thread(target=worker.run, args=(threading.Event(),))
    thread.start()
    seen = []
    try:
        while redis_client.hget(keys.task("w-live"), "task_stage") != b"in_progress":
            time.sleep(0.005)
        for chunk in follow(redis_client, "w-live"):
            seen.append((chunk, redis_client.hget(keys.task("w-live"), "task_stage")))
    finally:
        thread.join(10)
    assert [c for c, _ in seen] == [LogChunk(1, 1, b"before\n"), LogChunk(2, 2, b"after\n")]
    assert seen[0][1] == b"in_progress"
