"""One stack per module: the session's Valkey, a real worker pool, a dashboard and a
read-only one as ``wasmq`` subprocesses, and one headless Chromium for every test.

The module owns the database: it flushes it once, at the start, so its tests use neither
``redis_client`` nor ``settings`` (each would flush it under the running pool). Every
test makes tasks of its own and looks only at those.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from runtime.client import Client
from tests.browser import stack
from tests.support.cli import cli_env
from tests.support.pools import READY_TIMEOUT, idle_workers, wait_for

#: The queues the pool serves, and its worker processes.
QUEUES = ("default", "emails")
CONCURRENCY = 2


@dataclass
class Stack:
    client: Client
    #: The dashboard's base URL, and a read-only dashboard's.
    url: str
    read_only_url: str
    procs: stack.Processes


@pytest.fixture(scope="module")
def dashboard_stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    missing = stack.chromium_missing()
    if missing:
        pytest.skip(missing)
    home = tmp_path_factory.mktemp("dashboard")
    with redis.Redis.from_url(redis_url) as admin:
        admin.flushall()
    client = stack.client_for(redis_url, home)
    stack.register_tasks(client, home / "tasks")
    procs = stack.Processes(cli_env(redis_url, home), home)
    try:
        procs.worker(*QUEUES, concurrency=CONCURRENCY)
        url = procs.dashboard()
        read_only_url = procs.dashboard("--read-only")
        wait_for(
            lambda: len(idle_workers(client.redis)) >= CONCURRENCY,
            READY_TIMEOUT,
            "the pool's workers",
            procs.logs,
        )
        yield Stack(client, url, read_only_url, procs)
    finally:
        procs.stop_all()
        client.close()


@pytest.fixture(scope="module")
def browser(dashboard_stack: Stack) -> Iterator[Any]:
    driver = stack.chrome()
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
