"""``/tasks/{id}``: every field ``wasmq status`` prints, the result, the stored output, and
while the task runs its output live (``/tasks/{id}/events``, server-sent events).

The live stream follows the task with :func:`runtime.output.follow.follow`, a blocking
iterator, on a thread of its own rather than one of the pool the pages share: a task may
run for hours, and a few open tabs must not starve every other page. The thread hands
chunks to the response through a queue, so the response can send keep-alives and notice
a gone client while no chunk comes; when the response ends for any reason the thread is
told to stop and returns within one follow read (:data:`FOLLOW_BLOCK_MS`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from runtime.cli.inspect import status_rows
from runtime.dashboard.app import dash, pretty_json
from runtime.errors import TaskNotFound, WasmqError
from runtime.logging_config import get_logger
from runtime.output.chunks import LogChunk, read_logs, stream_name
from runtime.output.files import truncation_marker
from runtime.output.follow import FOLLOW_BLOCK_MS, follow
from runtime.queue import keys
from runtime.queue.flows import FlowNotFound
from runtime.queue.queries import TaskStatus
from runtime.queue.task import Stage, format_time, stage_of

#: Largest part of a result the page shows.
RESULT_CAP = 64 * 1024
#: Most output lines the page shows (the rest: ``wasmq logs ID``).
LINES_CAP = 5000
#: Seconds between keep-alive comments on a quiet event stream.
KEEPALIVE = 15.0
#: Seconds between checks that the client of an event stream is still there.
POLL = 1.0
#: Most event streams served at once (each holds a thread while its task runs).
MAX_STREAMS = 64

log = get_logger("dashboard")
_streams: set[threading.Event] = set()
_streams_lock = threading.Lock()


@dataclass
class LogLine:
    stream: str
    ms: int
    time: str
    text: str


@dataclass
class ResultView:
    text: str
    is_json: bool
    truncated: bool
    binary: bool
    size: int


def log_lines(chunks: list[LogChunk]) -> list[LogLine]:
    """One line per line of each chunk, as ``wasmq logs`` splits them."""
    out = []
    for chunk in chunks:
        lines = chunk.data.decode("utf-8", errors="replace").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for text in lines:
            out.append(
                LogLine(stream_name(chunk.stream), chunk.ts_ms, format_time(chunk.ts_ms), text)
            )
    return out


def result_view(raw: bytes) -> ResultView:
    """Indented JSON when it is JSON, text when UTF-8, else escaped bytes; capped."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw[:RESULT_CAP].decode("utf-8", errors="backslashreplace")
        return ResultView(text, False, len(raw) > RESULT_CAP, True, len(raw))
    text, is_json, truncated = pretty_json(raw, RESULT_CAP)
    return ResultView(text, is_json, truncated, False, len(raw))


def _result(client: Any, st: TaskStatus) -> tuple[ResultView | None, str | None]:
    """(the result, or a note saying why there is none)."""
    if st.stage != Stage.COMPLETED:
        return None, None
    try:
        return result_view(client.result(st.id)), None
    except WasmqError as exc:
        return None, str(exc)


def _flow(st: TaskStatus) -> tuple[str, str] | None:
    flow_id = st.extra.get("flow")
    if not flow_id:
        return None
    return flow_id, st.extra.get("flow_index", "")


def task_detail(request: Request) -> Response:
    d = dash(request)
    task_id = request.path_params["task_id"]
    try:
        st = d.client.status(task_id)
    except TaskNotFound:
        return _flow_page(request, task_id)
    result, result_note = _result(d.client, st)
    chunks = read_logs(d.client.redis, task_id)
    lines = log_lines(chunks)
    shown_extra = {k: v for k, v in st.extra.items() if k not in ("flow", "flow_index", "priority")}
    return d.render(
        request,
        "task_detail.html",
        {
            "title": f"Task {task_id}",
            "st": st,
            "rows": status_rows(st),
            "extra": shown_extra,
            "flow": _flow(st),
            "result": result,
            "result_note": result_note,
            "lines": lines[:LINES_CAP],
            "lines_cut": max(len(lines) - LINES_CAP, 0),
            "dropped": truncation_marker(st.log_dropped) if st.log_dropped else None,
            "live": not st.terminal,
        },
    )


def _flow_page(request: Request, flow_id: str) -> Response:
    d = dash(request)
    try:
        flow = d.client.flow(flow_id)
    except FlowNotFound:
        return d.render(
            request, "error.html", {"title": "Not found", "message": f"no task {flow_id}"}, 404
        )
    return d.render(request, "task_detail.html", {"title": f"Flow {flow_id}", "flow_status": flow})


async def cancel(request: Request) -> Response:
    d = dash(request)
    await d.action(request)
    task_id = request.path_params["task_id"]
    status = await d.call(d.client.cancel, task_id)
    return d.done(request, f"/tasks/{task_id}", f"cancel {task_id}: {status}")


class _Stoppable:
    """The Redis client as :func:`follow` uses it, until ``stop`` is set: then the task
    reads as gone (follow returns at its next stage check) and no stored chunk is read."""

    def __init__(self, redis: Any, stop: threading.Event) -> None:
        self._redis = redis
        self._stop = stop

    def hget(self, *args: Any) -> Any:
        return None if self._stop.is_set() else self._redis.hget(*args)

    def lrange(self, *args: Any) -> Any:
        return [] if self._stop.is_set() else self._redis.lrange(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)


def _event(name: str, data: dict[str, object]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _chunk_event(chunk: LogChunk) -> str:
    text = chunk.data.decode("utf-8", errors="replace")
    data = {
        "stream": stream_name(chunk.stream),
        "ms": chunk.ts_ms,
        "time": format_time(chunk.ts_ms),
        "text": text,
    }
    return _event("chunk", data)


async def _stream(request: Request, redis: Any, task_id: str) -> AsyncGenerator[str, None]:
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[LogChunk | None] = asyncio.Queue()
    stop = threading.Event()

    def hand(item: LogChunk | None) -> None:
        try:
            loop.call_soon_threadsafe(chunks.put_nowait, item)
        except RuntimeError:
            stop.set()  # the event loop is gone, and the response with it

    def produce() -> None:
        try:
            for chunk in follow(_Stoppable(redis, stop), task_id):
                if stop.is_set():
                    break
                hand(chunk)
        except Exception as exc:  # a Redis error ends the stream, said as its end
            log.warning("live output stopped", task_id=task_id, error=str(exc))
        finally:
            hand(None)
            with _streams_lock:
                _streams.discard(stop)

    with _streams_lock:
        if len(_streams) >= MAX_STREAMS:
            yield _event("end", {"stage": "busy"})
            return
        _streams.add(stop)
    threading.Thread(target=produce, name=f"follow {task_id}", daemon=True).start()
    try:
        yield ": following\n\n"
        quiet = 0.0
        while True:
            try:
                chunk = await asyncio.wait_for(chunks.get(), POLL)
            except asyncio.TimeoutError:
                quiet += POLL
                if await request.is_disconnected():
                    return
                if quiet >= KEEPALIVE:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                continue
            quiet = 0.0
            if chunk is None:
                break
            yield _chunk_event(chunk)
        raw, fine = await run_in_threadpool(
            redis.hmget, keys.task(task_id), ["task_stage", "wasmq_stage"]
        )
        stage = stage_of(raw.decode(), fine.decode() if fine else None) if raw else "gone"
        yield _event("end", {"stage": stage})
    finally:
        stop.set()


async def events(request: Request) -> Response:
    d = dash(request)
    task_id = request.path_params["task_id"]
    redis = d.client.redis
    if not await run_in_threadpool(redis.exists, keys.task(task_id)):
        return d.render(
            request, "error.html", {"title": "Not found", "message": f"no task {task_id}"}, 404
        )
    return StreamingResponse(
        _stream(request, redis, task_id),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


assert FOLLOW_BLOCK_MS <= 1000, "a stopped follower must return within a second"

routes: list[BaseRoute] = [
    Route("/tasks/{task_id}", task_detail, methods=["GET"]),
    Route("/tasks/{task_id}/events", events, methods=["GET"]),
    Route("/tasks/{task_id}/cancel", cancel, methods=["POST"]),
]
