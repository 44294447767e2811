"""The first connection to a configured URL: retried with one log line per retry until
``WASMQ_CONNECT_TIMEOUT``, then the one-line error; and the URL forms settings accept."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.errors import ConnectionFailed, SettingsError
from runtime.server.connection import connect
from runtime.server.urls import parse_sentinel, redact
from runtime.settings import Settings
from tests.support.cli import cli_env
from tests.support.servers import Servers, free_port


def test_gives_up_after_connect_timeout_in_one_line() -> None:
    port = free_port()
    settings = Settings.load(
        {"redis_url": f"redis://:secret@127.0.0.1:{port}/0"},
        environ={"WASMQ_CONNECT_TIMEOUT": "1s"},
        env_file=None,
    )
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as failed:
        connect(settings)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3, elapsed
    message = str(failed.value)
    assert "\n" not in message and "secret" not in message
    assert message.startswith(f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0 (")
    assert message.endswith("check REDIS_URL, or unset it to use the embedded server")

    zero = Settings.load(
        {"redis_url": f"redis://127.0.0.1:{port}"},
        environ={"WASMQ_CONNECT_TIMEOUT": "0"},
        env_file=None,
    )
    started = time.monotonic()
    with pytest.raises(ConnectionFailed):
        connect(zero)
    assert time.monotonic() - started < 0.5


@pytest.mark.processes
def test_command_waits_for_a_server_that_starts_late(tmp_path: Path) -> None:
    port = free_port()
    env = cli_env(f"redis://127.0.0.1:{port}/0", tmp_path, WASMQ_CONNECT_TIMEOUT="20s")
    servers = Servers(tmp_path)
    command = subprocess.Popen(
        [sys.executable, "-c", "from runtime.cli import main; main()", "stats"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        servers.valkey(port)
        out, err = command.communicate(timeout=30)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
        servers.stop_all()
    assert command.returncode == 0, err
    retries = [line for line in err.splitlines() if "Redis not reachable yet, retrying" in line]
    assert retries, err
    assert all(f"127.0.0.1:{port}" in line and "attempt=" in line for line in retries)
    assert "default" in out


def test_sentinel_urls() -> None:
    target = parse_sentinel("redis+sentinel://u:p%40ss@10.0.0.1:26380,[::1],sentinel-c/orders/3")
    assert target.sentinels == (("10.0.0.1", 26380), ("::1", 26379), ("sentinel-c", 26379))
    assert (target.service, target.db, target.username, target.password) == (
        "orders",
        3,
        "u",
        "p@ss",
    )
    assert not target.tls
    query = parse_sentinel("rediss+sentinel://h:1?service=orders&db=2")
    assert (query.service, query.db, query.tls) == ("orders", 2, True)
    assert redact("redis+sentinel://u:pw@h:1,h2:2/s") == "redis+sentinel://u:***@h:1,h2:2/s"
    for bad, said in (
        ("redis+sentinel://h:1", "needs the service name"),
        ("redis+sentinel:///s", "at least one sentinel"),
        ("redis+sentinel://h:99999/s", "no valid port"),
        ("redis+sentinel://h:1/s/x", "not /SERVICE or /SERVICE/DB"),
        ("memcached://h:1", "unsupported scheme"),
    ):
        with pytest.raises(SettingsError, match=said):
            Settings.load({}, environ={"REDIS_URL": bad}, env_file=None)
    with pytest.raises(SettingsError, match="WASMQ_REDIS_TLS_CA is set but REDIS_URL is not"):
        Settings.load(
            {},
            environ={"REDIS_URL": "redis://h:1", "WASMQ_REDIS_TLS_CA": "ca.pem"},
            env_file=None,
        )


def test_a_cluster_url_is_retried_like_any_other() -> None:
    # A cluster client reads the slot map when made: the retry has to cover making it.
    ports = (free_port(), free_port())
    url = f"redis+cluster://u:secret@127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
    settings = Settings.load(
        {"redis_url": url}, environ={"WASMQ_CONNECT_TIMEOUT": "1s"}, env_file=None
    )
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as failed:
        connect(settings)
    assert 0.9 <= time.monotonic() - started < 5
    message = str(failed.value)
    assert "\n" not in message and "secret" not in message
    assert message.startswith("cannot reach Redis at redis+cluster://u:***@127.0.0.1:")


def test_every_url_form_is_accepted() -> None:
    for url in (
        "redis://h:1/0",
        "rediss://h:1",
        "unix:///tmp/redis.sock",
        "redis+sentinel://h:26379/svc",
        "rediss+sentinel://h:26379/svc",
        "redis+cluster://h:7000,h:7001",
        "rediss+cluster://u:p@h:7000",
    ):
        assert Settings.load({}, environ={"REDIS_URL": url}, env_file=None).redis_url == url
    bare = Settings.load({}, environ={"REDIS_URL": "h:6379"}, env_file=None)
    assert bare.redis_url == "redis://h:6379"
    with pytest.raises(SettingsError, match="is not host:port"):
        Settings.load({}, environ={"REDIS_URL": "redis+cluster://h"}, env_file=None)
    with pytest.raises(SettingsError, match="WASMQ_REPLICA_ACKS is not available"):
        Settings.load(
            {},
            environ={"REDIS_URL": "redis+cluster://h:7000", "WASMQ_REPLICA_ACKS": "1"},
            env_file=None,
        )
    tls = Settings.load(
        {},
        environ={"REDIS_URL": "rediss+cluster://h:7000", "WASMQ_REDIS_TLS_CA": "ca.pem"},
        env_file=None,
    )
    assert tls.redis_tls_ca is not None
