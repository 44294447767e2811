"""The dashboard's admin pages (/dlq, /schedules, /workers, /registry), their actions and
the guard in front of them, over the real app, server, registry and worker loop.

Dead letters are made the way they are in production: a WAT task that traps, enqueued
with no retries, run by an in-process burst worker.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from starlette.testclient import TestClient
from typer.testing import CliRunner

from runtime.cli import app as cli_app
from runtime.client import Client
from runtime.dashboard.app import create_app
from runtime.dashboard.config import DashboardConfig
from runtime.errors import WasmqError
from runtime.modules.registry import Registry
from runtime.queue import keys
from runtime.settings import Settings
from runtime.worker.heartbeats import Heartbeat, WorkerStats
from runtime.worker.loop import Worker

TRAP_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64) unreachable))
"""
TOKEN = "t0ken-long-enough-for-the-check"


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Client]:
    source = tmp_path / "boom.wat"
    source.write_text(TRAP_WAT)
    Registry(settings, redis_client).register(source)
    yield Client(settings=settings, client=redis_client)


def web(client: Client, **config: object) -> TestClient:
    return TestClient(create_app(client, DashboardConfig(**config)))  # type: ignore[arg-type]


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def rows(html: str, attr: str) -> list[str]:
    return re.findall(rf'<tr {attr}="([^"]+)"', html)


def notice(html: str) -> str:
    found = re.search(r'<p class="notice" id="notice">([^<]*)</p>', html)
    assert found, "no notice on the page"
    return found.group(1)


def dead_letters(client: Client, settings: Settings, count: int) -> list[str]:
    """``count`` tasks of ``boom`` failed for good (and any redriven ones again)."""
    ids = [client.enqueue("boom", max_retries=0).id for _ in range(count)]
    run_burst(client, settings)
    return ids


def run_burst(client: Client, settings: Settings) -> None:
    worker = Worker(settings, ["default"], client=client.redis, burst=True)
    thread = threading.Thread(target=worker.run, args=(threading.Event(),), daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()


def stage(client: Client, task_id: str) -> str:
    return client.status(task_id).stage


def test_dead_letters_listed_redriven_and_purged(client: Client, settings: Settings) -> None:
    ids = dead_letters(client, settings, 4)
    browser = web(client)
    page = browser.get("/dlq")
    assert page.status_code == 200
    assert sorted(rows(page.text, "data-task-id")) == sorted(ids)
    assert 'id="dlq-selected"' in page.text and "trap" in page.text
    assert f'href="/tasks/{ids[0]}"' in page.text
    token = csrf(page.text)

    # A row's button sends its own id; boxes ticked elsewhere do not ride along.
    one = browser.post("/dlq/redrive", data={"csrf": token, "one": ids[0], "id": [ids[1]]})
    assert notice(one.text).startswith("redrove 1 task (boom v1")
    assert [stage(client, i) for i in ids] == ["pending", "failed", "failed", "failed"]

    selected = browser.post("/dlq/redrive", data={"csrf": token, "id": [ids[1], ids[2]]})
    assert notice(selected.text).startswith("redrove 2 tasks")
    assert stage(client, ids[2]) == "pending" and stage(client, ids[3]) == "failed"

    every = browser.post(
        "/dlq/redrive", data={"csrf": token, "all": "1", "latest": "1", "queue": "default"}
    )
    assert every.url.path == "/dlq" and every.url.params["queue"] == "default"
    assert notice(every.text).startswith("redrove 1 task")
    assert rows(every.text, "data-task-id") == []

    run_burst(client, settings)  # the redriven tasks trap again: four dead letters
    assert len(client.dlq_list()) == 4
    kept = browser.post("/dlq/purge", data={"csrf": token, "older_than": "1h"})
    assert notice(kept.text) == "purged 0 dead letters older than 1h"
    purged = browser.post("/dlq/purge", data={"csrf": token})
    assert notice(purged.text) == "purged 4 dead letters"
    assert client.dlq_list() == []
    for task_id in ids:
        assert not client.redis.exists(keys.task(task_id))


def test_schedules_pause_resume_and_remove(client: Client) -> None:
    entry = client.cron("boom", "@every 1h", id="hourly")
    later = client.schedule("boom", delay="2h", id="later")
    browser = web(client)
    page = browser.get("/schedules")
    assert rows(page.text, "data-entry") == [entry.id]
    assert rows(page.text, "data-task-id") == [later.id]  # the cron entry is not repeated
    assert re.search(r'<td class="cron-state[^"]*">active</td>', page.text)
    assert 'class="pause"' in page.text and 'class="resume"' not in page.text
    token = csrf(page.text)

    paused = browser.post("/schedules/pause", data={"csrf": token, "entry": entry.id})
    assert notice(paused.text) == "paused hourly"
    assert re.search(r'<td class="cron-state[^"]*">paused</td>', paused.text)
    assert 'class="resume"' in paused.text and 'class="pause"' not in paused.text
    assert client.redis.zscore(keys.SCHEDULED, entry.id) is None

    resumed = browser.post("/schedules/resume", data={"csrf": token, "entry": entry.id})
    assert notice(resumed.text).startswith("resumed hourly; next run ")
    assert client.redis.zscore(keys.SCHEDULED, entry.id) is not None

    removed = browser.post("/schedules/remove", data={"csrf": token, "entry": entry.id})
    assert notice(removed.text).startswith("removed cron entry hourly")
    assert rows(removed.text, "data-entry") == []
    assert rows(removed.text, "data-task-id") == [later.id]

    missing = browser.post("/schedules/pause", data={"csrf": token, "entry": "nope"})
    assert missing.status_code == 400 and "nope" in missing.text


def test_workers_and_registry_pages(
    client: Client, settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    stats = WorkerStats(done=7, failed=2, current_task="t-running", current_name="boom")
    beat = Heartbeat(redis_client, "host:1:ab", ["default", "mail"], stats, 1.0)
    beat.beat()
    source = tmp_path / "boom.wat"
    source.write_text(TRAP_WAT.replace("1024", "2048"))
    registry = Registry(settings, redis_client)
    record = registry.register(source).record
    keyed = tmp_path / "keyed.wat"
    keyed.write_text(TRAP_WAT)
    registry.register(keyed, capabilities={"env": {"API_KEY": "hunter2"}, "dirs": []})
    browser = web(client)

    workers = browser.get("/workers")
    assert rows(workers.text, "data-worker-id") == ["host:1:ab"]
    assert 'href="/tasks/t-running"' in workers.text
    assert "default, mail" in workers.text and "s ago" in workers.text

    page = browser.get("/registry")
    assert rows(page.text, "data-task-name") == ["boom", "keyed"]
    assert record.version == 2 and record.digest[:12] in page.text
    assert "2 versions" in page.text and "<details" in page.text
    # Capabilities name the variables a task sees, never their values.
    assert "env API_KEY" in page.text and "hunter2" not in page.text


def test_actions_need_the_csrf_token_and_the_same_origin(client: Client) -> None:
    client.cron("boom", "@every 1h", id="hourly")
    browser = web(client)
    token = csrf(browser.get("/schedules").text)
    forged = browser.post("/schedules/pause", data={"entry": "hourly"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    foreign = browser.post(
        "/schedules/pause",
        data={"csrf": token, "entry": "hourly"},
        headers={"origin": "https://evil.example"},
    )
    assert foreign.status_code == 403 and "cross-origin" in foreign.text
    assert client.redis.zscore(keys.SCHEDULED, "hourly") is not None


def test_read_only_shows_no_actions_and_refuses_them(client: Client, settings: Settings) -> None:
    (dead,) = dead_letters(client, settings, 1)
    client.cron("boom", "@every 1h", id="hourly")
    writable = web(client)
    token = csrf(writable.get("/dlq").text)
    browser = web(client, read_only=True)
    for path, attr in (("/dlq", "data-task-id"), ("/schedules", "data-entry")):
        page = browser.get(path)
        assert rows(page.text, attr), path
        assert 'method="post"' not in page.text and 'name="csrf"' not in page.text
        for hook in ('class="redrive"', 'id="redrive-all"', 'id="purge"', 'class="pause"'):
            assert hook not in page.text, (path, hook)
    for path, data in (
        ("/dlq/redrive", {"all": "1"}),
        ("/dlq/purge", {}),
        ("/schedules/pause", {"entry": "hourly"}),
        ("/schedules/remove", {"entry": "hourly"}),
    ):
        refused = browser.post(path, data={"csrf": token, **data})
        assert refused.status_code == 403 and "read-only" in refused.text, path
    assert stage(client, dead) == "failed"
    assert client.redis.zscore(keys.SCHEDULED, "hourly") is not None


def test_token_and_basic_auth(client: Client) -> None:
    browser = web(client, token=TOKEN)
    assert browser.get("/workers").status_code == 401
    bearer = browser.get("/workers", headers={"authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200
    login = browser.get(f"/registry?token={TOKEN}", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/registry"
    assert "wasmq_dashboard=" in login.headers["set-cookie"]
    assert browser.get("/registry").status_code == 200  # the cookie now

    basic = web(client, basic_auth=("admin", "s3cret"))
    challenged = basic.get("/dlq")
    assert (
        challenged.status_code == 401 and "basic" in challenged.headers["www-authenticate"].lower()
    )
    wrong = base64.b64encode(b"admin:guess").decode()
    assert basic.get("/dlq", headers={"authorization": f"Basic {wrong}"}).status_code == 401
    right = base64.b64encode(b"admin:s3cret").decode()
    assert basic.get("/dlq", headers={"authorization": f"Basic {right}"}).status_code == 200


def test_an_exposed_host_needs_auth(settings: Settings) -> None:
    with pytest.raises(WasmqError) as raised:
        DashboardConfig(host="0.0.0.0").check()
    assert "\n" not in str(raised.value) and "--token" in str(raised.value)
    DashboardConfig(host="0.0.0.0", token=TOKEN).check()

    result = CliRunner().invoke(
        cli_app,
        ["--redis-url", str(settings.redis_url), "dashboard", "--host", "0.0.0.0"],
        env={"WASMQ_DASHBOARD_TOKEN": None},
    )
    assert result.exit_code == 1
    assert isinstance(result.exception, WasmqError)
    assert "exposes the dashboard beyond this machine" in str(result.exception)
