"""The dashboard's read pages (/, /tasks, /tasks/{id} and its live events) over the real
app, server, registry, sandbox and worker loop.

Task records, results and output are written by real runs: ``pages.wat`` is registered,
enqueued and run by an in-process worker, printing with WASI ``fd_write``.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.requests import Request
from starlette.testclient import TestClient

from runtime.client import Client
from runtime.dashboard.app import create_app
from runtime.dashboard.pages import task_detail, task_list
from runtime.modules.registry import Registry
from runtime.queue import keys
from runtime.settings import Settings
from runtime.worker.loop import Worker

WAT = Path(__file__).parent / "pages.wat"


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> Client:
    Registry(settings, redis_client).register(WAT, name="pages")
    return Client(settings=settings, client=redis_client)


@pytest.fixture
def web(client: Client) -> TestClient:
    return TestClient(create_app(client))


def run_burst(client: Client, settings: Settings, queues: tuple[str, ...] = ("default",)) -> None:
    worker = Worker(settings, list(queues), client=client.redis, burst=True)
    worker.run(threading.Event())


@pytest.fixture
def running_worker(client: Client, settings: Settings) -> Iterator[None]:
    stop = threading.Event()
    worker = Worker(settings, ["default"], client=client.redis)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def wait_stage(client: Client, task_id: str, *stages: str) -> None:
    deadline = time.monotonic() + 15
    while client.status(task_id).stage not in stages:
        assert time.monotonic() < deadline, client.status(task_id)
        time.sleep(0.01)


def row_ids(page: str) -> list[str]:
    return re.findall(r'<tr data-task-id="([^"]+)"', page)


def field(page: str, label: str) -> str:
    found = re.search(rf'<dt>{label}</dt>\s*<dd data-field="{label}">([^<]*)</dd>', page)
    assert found, f"no field {label}"
    return html.unescape(found.group(1))


def log_lines(page: str) -> list[tuple[str, str]]:
    spans = re.findall(
        r'<span class="log-line \w+" data-stream="(\w+)" data-ms="\d+">'
        r'<span class="t">[^<]+</span><span class="s">\w+</span>([^<]*)</span>',
        page,
    )
    return [(stream, html.unescape(text)) for stream, text in spans]


def events(body: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in body.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_queues_overview_counts_and_chart(
    client: Client, settings: Settings, web: TestClient
) -> None:
    for _ in range(3):
        client.enqueue("pages", b"{}")
    client.enqueue("pages", b"t", max_retries=0)
    client.enqueue("pages", b"{}", queue="other")
    run_burst(client, settings)
    page = web.get("/").text
    assert re.findall(r'<tr data-queue="([^"]+)"', page) == ["default", "other"]
    default = page.split('<tr data-queue="default">')[1].split("</tr>")[0]
    cells = re.findall(r'<td class="num">(?:<a [^>]*>)?([^<]*)', default)
    # pending, running, scheduled, retrying, cron, finished, dlq, done/min, failed, rate
    assert cells[:10] == ["0", "0", "0", "0", "0", "3", "1", "3", "1", "25%"]
    other = page.split('<tr data-queue="other">')[1].split("</tr>")[0]
    assert re.findall(r'<td class="num">([^<]*)', other)[0] == "1"  # pending
    chart = page.split('<svg class="chart"')[1].split("</svg>")[0]
    assert '<rect class="bar-ok"' in chart and '<rect class="bar-failed"' in chart
    assert "completed (3)" in page and "failed (1)" in page and 'data-refresh="' in page


def test_list_filters_pages_and_id_search(
    client: Client, settings: Settings, web: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = []
    for _ in range(3):
        done.append(client.enqueue("pages", b"{}").id)
        time.sleep(0.002)  # one enqueue per millisecond: "newest first" is one order
    run_burst(client, settings)
    waiting = client.enqueue("pages", b"{}", queue="other").id
    everything = row_ids(web.get("/tasks").text)
    assert everything == [waiting, *reversed(done)]  # newest first
    assert row_ids(web.get("/tasks", params={"queue": "other"}).text) == [waiting]
    assert row_ids(web.get("/tasks", params={"stage": "completed"}).text) == done[::-1]
    assert row_ids(web.get("/tasks", params={"task": "pages", "since": "1h"}).text) == everything
    assert row_ids(web.get("/tasks", params={"task": "nope"}).text) == []
    assert row_ids(web.get("/tasks", params={"until": "1h"}).text) == []
    bad = web.get("/tasks", params={"since": "yesterday"})
    assert bad.status_code == 400 and "since &#39;yesterday&#39; is neither a time" in bad.text
    page = web.get("/tasks").text
    assert f'<a class="task-link" href="/tasks/{waiting}">' in page
    assert 'id="next-page"' not in page

    monkeypatch.setattr(task_list, "PAGE", 2)
    seen: list[str] = []
    url: str | None = "/tasks?queue=default"
    while url:
        page = web.get(url).text
        seen += row_ids(page)
        found = re.search(r'<a id="next-page" href="([^"]+)"', page)
        url = html.unescape(found.group(1)) if found else None
        assert url is None or "queue=default" in url
    assert seen == done[::-1]

    moved = web.get("/tasks", params={"id": done[0]}, follow_redirects=False)
    assert (moved.status_code, moved.headers["location"]) == (303, f"/tasks/{done[0]}")
    missing = web.get("/tasks", params={"id": "no-such-id"})
    assert '<p class="notice" id="notice">no task no-such-id</p>' in missing.text


def test_detail_shows_fields_json_result_and_lines(
    client: Client, settings: Settings, web: TestClient
) -> None:
    value = {"a": [1, 2], "b": "ü"}
    task = client.enqueue("pages", json.dumps(value).encode())
    binary = client.enqueue("pages", b"\xff\xfe raw")
    big = client.enqueue("pages", b"z" * (70 * 1024))
    run_burst(client, settings)

    page = web.get(f"/tasks/{task.id}").text
    labels = re.findall(r"<dt>([^<]+)</dt>", page.split('id="task-fields"')[1].split("</dl>")[0])
    for label in ("id", "task", "queue", "kind", "stage", "attempts", "outcome", "enqueued"):
        assert label in labels
    for label in ("started", "finished", "duration", "timeout", "worker", "digest", "logs"):
        assert label in labels
    assert field(page, "task").startswith("pages v")
    assert re.fullmatch(r"1 \(max retries \d+\)", field(page, "attempts"))
    assert field(page, "outcome") == "ok"
    assert '<span id="task-stage" class="stage-completed" data-stage="completed">completed' in page
    result = re.search(r'<pre id="result" class="json">([^<]*)</pre>', page)
    assert result and html.unescape(result.group(1)) == json.dumps(
        value, indent=2, ensure_ascii=False
    )
    assert log_lines(page) == [("stdout", "line one"), ("stdout", "line two"), ("stderr", "warn")]
    assert "data-live" not in page and 'class="cancel"' not in page

    page = web.get(f"/tasks/{binary.id}").text
    assert r"\xff\xfe raw" in page and "not UTF-8" in page
    page = web.get(f"/tasks/{big.id}").text
    shown = re.search(r'<pre id="result">([^<]*)</pre>', page)
    assert shown and len(shown.group(1)) == 64 * 1024 and "truncated" in page

    assert web.get("/tasks/no-such-id").status_code == 404


def test_detail_links_a_flow_member_and_shows_the_flow(
    client: Client, settings: Settings, web: TestClient
) -> None:
    flow = client.chain(("pages", b"[1]"), ("pages", b"[2]"))
    run_burst(client, settings)
    first = web.get(f"/tasks/{flow.member_ids[0]}").text
    assert f'<a id="flow-link" href="/tasks/{flow.id}">{flow.id}</a> (member 0)' in first
    page = web.get(f"/tasks/{flow.id}").text
    assert f"<h1>Flow {flow.id}</h1>" in page
    assert row_ids(page) == flow.member_ids


def test_markup_from_output_and_result_is_shown_as_text(
    client: Client, settings: Settings, web: TestClient
) -> None:
    task = client.enqueue("pages", b"x")
    run_burst(client, settings)
    page = web.get(f"/tasks/{task.id}").text
    for raw in ("<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "<script>alert(3)"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in page
    assert log_lines(page) == [
        ("stdout", "<script>alert(1)</script>"),
        ("stderr", "<img src=x onerror=alert(2)>"),
    ]
    # The only scripts are the page's own.
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/dashboard.js" defer>']


def test_events_follow_a_running_task_to_its_end(
    client: Client, web: TestClient, running_worker: None
) -> None:
    task = client.enqueue("pages", b"s")
    wait_stage(client, task.id, "in_progress")
    page = web.get(f"/tasks/{task.id}").text
    assert f'data-live="/tasks/{task.id}/events"' in page
    with web.stream("GET", f"/tasks/{task.id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        got = events(response.read().decode())
    assert [(name, data.get("stream"), data.get("text")) for name, data in got] == [
        ("chunk", "stdout", "before\n"),
        ("chunk", "stderr", "after\n"),
        ("end", None, None),
    ]
    assert got[-1][1] == {"stage": "completed"}
    assert got[0][1]["time"].endswith("Z") and got[0][1]["ms"] > 0
    assert web.get("/tasks/no-such-id/events").status_code == 404

    # Live: the first line arrives while the task still runs.
    task = client.enqueue("pages", b"s")
    wait_stage(client, task.id, "in_progress")

    async def first_chunk() -> tuple[str, str]:
        async def never() -> dict[str, Any]:
            await asyncio.Event().wait()
            return {}

        request = Request({"type": "http", "method": "GET", "headers": []}, never)
        parts = task_detail._stream(request, client.redis, task.id)
        async for part in parts:
            if part.startswith("event: chunk"):
                await parts.aclose()
                return part, client.status(task.id).stage
        raise AssertionError("no chunk")

    part, stage = asyncio.run(first_chunk())
    assert '"text": "before\\n"' in part and stage == "in_progress"


def test_cancel_from_the_detail_page(client: Client, web: TestClient) -> None:
    task = client.enqueue("pages", b"{}")
    page = web.get(f"/tasks/{task.id}").text
    assert '<button type="submit" class="cancel">' in page
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert token
    done = web.post(f"/tasks/{task.id}/cancel", data={"csrf": token.group(1)})
    assert f"cancel {task.id}: cancelled" in done.text
    assert client.status(task.id).stage == "cancelled"
    refused = web.post(f"/tasks/{task.id}/cancel", data={"csrf": "forged"})
    assert refused.status_code == 403


def test_a_gone_client_stops_the_follower(
    client: Client, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(task_detail, "POLL", 0.1)
    task = client.enqueue("pages", b"{}")  # no worker: it stays pending, never ends

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def stream() -> list[str]:
        request = Request({"type": "http", "method": "GET", "headers": []}, gone)
        return [part async for part in task_detail._stream(request, redis_client, task.id)]

    started = time.monotonic()
    assert asyncio.run(stream()) == [": following\n\n"]
    deadline = time.monotonic() + 2
    while any(t.name == f"follow {task.id}" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the follower thread outlived its response"
        time.sleep(0.01)
    assert time.monotonic() - started < 2
    assert keys.task(task.id).encode() in redis_client.keys("*")
