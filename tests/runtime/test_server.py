"""The embedded Valkey server: start, reuse, one server under concurrent starts, SIGKILL recovery."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from runtime import server
from runtime.connection import connect, redact
from runtime.errors import ConnectionFailed
from runtime.settings import Settings
from tests.conftest import cli_env, run_cli


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    try:
        yield state
    finally:
        server.stop(state)


def _client(state: Path) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(server.ServerPaths(state).socket))


def test_first_command_starts_a_private_unix_socket_server(state_dir: Path) -> None:
    url = server.ensure_running(state_dir)
    assert url.startswith("unix://")
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
    client = _client(state_dir)
    config = {k: v for k, v in client.config_get("*").items()}
    assert config["port"] == "0"  # no TCP listener
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert Path(config["dir"]) == (state_dir / "data").resolve()
    client.close()


def test_a_second_process_reuses_the_server(state_dir: Path, tmp_path: Path) -> None:
    server.ensure_running(state_dir)
    pid = server.status(state_dir).pid
    env = cli_env(None, tmp_path, WASMQ_STATE_DIR=str(state_dir))
    proc = run_cli("server", "status", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f'"pid": {pid}' in proc.stdout
    assert server.status(state_dir).pid == pid


def test_concurrent_starts_give_one_server(state_dir: Path, tmp_path: Path) -> None:
    env = cli_env(None, tmp_path, WASMQ_STATE_DIR=str(state_dir))
    code = (
        "import sys; from pathlib import Path; from runtime import server;"
        "print(server.ensure_running(Path(sys.argv[1])))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(state_dir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(4)
    ]
    urls = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(urls) == 1
    # Valkey retitles itself "valkey-server unixsocket:<path>".
    sock = b"unixsocket:" + str(server.ServerPaths(state_dir).socket).encode()
    servers = []
    for proc_dir in Path("/proc").iterdir():
        try:
            title = (proc_dir / "cmdline").read_bytes().rstrip(b"\0")
        except OSError:
            continue
        if b"valkey-server" in title and title.endswith(sock):
            servers.append(proc_dir.name)
    assert len(servers) == 1


def test_sigkilled_server_is_replaced_and_keeps_its_data(state_dir: Path) -> None:
    server.ensure_running(state_dir)
    client = _client(state_dir)
    client.set("kept", "yes")
    time.sleep(1.5)  # appendfsync everysec
    old_pid = server.status(state_dir).pid
    assert old_pid
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{old_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    client.close()
    assert server.ServerPaths(state_dir).socket.exists()  # stale socket left behind
    server.ensure_running(state_dir)
    new_pid = server.status(state_dir).pid
    assert new_pid != old_pid
    client = _client(state_dir)
    assert client.get("kept") == b"yes"
    client.close()


def test_stale_pid_file_is_ignored(state_dir: Path) -> None:
    paths = server.ServerPaths(state_dir)
    state_dir.mkdir(parents=True, mode=0o700)
    paths.pid_file.write_text("999999\n")
    server.ensure_running(state_dir)
    assert server.status(state_dir).running


def test_stop_then_status_reports_not_running(state_dir: Path, tmp_path: Path) -> None:
    server.ensure_running(state_dir)
    assert server.stop(state_dir) is True
    assert server.status(state_dir).running is False
    env = cli_env(None, tmp_path, WASMQ_STATE_DIR=str(state_dir))
    proc = run_cli("server", "stop", env=env)
    assert proc.returncode == 0
    assert "not running" in proc.stdout


def test_connect_through_url_starts_no_embedded_server(redis_url: str, tmp_path: Path) -> None:
    settings = Settings.load(
        {"redis_url": redis_url, "state_dir": tmp_path / "unused"}, environ={}, env_file=None
    )
    client = connect(settings)
    assert client.ping()
    assert not (tmp_path / "unused").exists()


def test_password_and_acl_user_urls(redis_client: redis.Redis, redis_url: str) -> None:
    redis_client.acl_setuser(
        "alice", enabled=True, passwords=["+s3cret"], commands=["+@all"], keys=["*"]
    )
    try:
        socket_path = redis_url.removeprefix("unix://")
        url = f"unix://alice:s3cret@{socket_path}"
        client = connect(Settings.load({"redis_url": url}, environ={}, env_file=None))
        assert client.acl_whoami() in ("alice", b"alice")
        bad = f"unix://alice:wrong@{socket_path}"
        with pytest.raises(ConnectionFailed) as info:
            connect(Settings.load({"redis_url": bad}, environ={}, env_file=None))
        assert "wrong" not in str(info.value)
    finally:
        redis_client.acl_deluser("alice")


def test_unreachable_server_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://:pw@127.0.0.1:{port}/0"
    with pytest.raises(ConnectionFailed) as info:
        connect(Settings.load({"redis_url": url}, environ={}, env_file=None))
    assert "cannot reach Redis" in str(info.value)
    assert "pw" not in str(info.value)
    assert redact(url) == f"redis://:***@127.0.0.1:{port}/0"
