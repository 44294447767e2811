"""The embedded Valkey server: start, reuse, one server under concurrent starts, SIGKILL
recovery (fast, logged once), and the supervisor a worker pool runs."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from runtime.errors import ConnectionFailed
from runtime.server import embedded
from runtime.server.connection import connect, redact
from runtime.settings import Settings
from tests.support.cli import cli_env, run_cli


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    try:
        yield state
    finally:
        embedded.stop(state)


def _client(state: Path) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(embedded.ServerPaths(state).socket))


def _kill(state: Path) -> int:
    """SIGKILL the server and wait until it is gone; its socket and pid file stay."""
    pid = embedded.status(state).pid
    assert pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while embedded._alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return pid


def _wait_for_new_server(state: Path, old_pid: int, timeout: float) -> float:
    """Seconds until a server other than ``old_pid`` answers."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        st = embedded.status(state)
        if st.running and st.pid != old_pid:
            return time.monotonic() - began
        time.sleep(0.02)
    raise AssertionError(
        f"no new server within {timeout}s; log: {embedded._log_tail(embedded.ServerPaths(state))}"
    )


def _valkey_processes(state: Path) -> list[str]:
    # Valkey retitles itself "valkey-server unixsocket:<path>".
    sock = b"unixsocket:" + str(embedded.ServerPaths(state).socket).encode()
    found = []
    for proc_dir in Path("/proc").iterdir():
        try:
            title = (proc_dir / "cmdline").read_bytes().rstrip(b"\0")
        except OSError:
            continue
        if b"valkey-server" in title and title.endswith(sock):
            found.append(proc_dir.name)
    return found


SUPERVISE = (
    "import sys, threading; from pathlib import Path; from runtime.server import embedded;"
    "embedded.supervise(Path(sys.argv[1]), threading.Event())"
)


@pytest.mark.processes
def test_first_command_starts_a_private_unix_socket_server(state_dir: Path) -> None:
    url = embedded.ensure_running(state_dir)
    assert url.startswith("unix://")
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
    client = _client(state_dir)
    config = {k: v for k, v in client.config_get("*").items()}
    assert config["port"] == "0"  # no TCP listener
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert Path(config["dir"]) == (state_dir / "data").resolve()
    client.close()


@pytest.mark.processes
def test_a_second_process_reuses_the_server(state_dir: Path, tmp_path: Path) -> None:
    embedded.ensure_running(state_dir)
    pid = embedded.status(state_dir).pid
    env = cli_env(None, tmp_path, WASMQ_STATE_DIR=str(state_dir))
    proc = run_cli("server", "status", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f'"pid": {pid}' in proc.stdout
    assert embedded.status(state_dir).pid == pid


@pytest.mark.processes
def test_concurrent_starts_give_one_server(state_dir: Path, tmp_path: Path) -> None:
    env = cli_env(None, tmp_path, WASMQ_STATE_DIR=str(state_dir))
    code = (
        "import sys; from pathlib import Path; from runtime.server import embedded;"
        "print(embedded.ensure_running(Path(sys.argv[1])))"
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
    assert len(_valkey_processes(state_dir)) == 1


@pytest.mark.processes
def test_sigkilled_server_is_replaced_and_keeps_its_data(state_dir: Path) -> None:
    embedded.ensure_running(state_dir)
    client = _client(state_dir)
    client.set("kept", "yes")
    time.sleep(1.5)  # appendfsync everysec
    old_pid = _kill(state_dir)
    client.close()
    assert embedded.ServerPaths(state_dir).socket.exists()  # stale socket left behind
    embedded.ensure_running(state_dir)
    new_pid = embedded.status(state_dir).pid
    assert new_pid != old_pid
    client = _client(state_dir)
    assert client.get("kept") == b"yes"
    client.close()


@pytest.mark.processes
def test_stale_pid_file_is_ignored(state_dir: Path) -> None:
    paths = embedded.ServerPaths(state_dir)
    state_dir.mkdir(parents=True, mode=0o700)
    paths.pid_file.write_text("999999\n")
    embedded.ensure_running(state_dir)
    assert embedded.status(state_dir).running


@pytest.mark.processes
def test_commands_after_a_sigkill_are_fast(state_dir: Path) -> None:
    # The stale socket refuses at once: no redis-py retries, no timeouts. Before, the
    # status took about 3.5 s and the restarting connect 6 to 8 s; both bounds are loose.
    embedded.ensure_running(state_dir)
    old_pid = _kill(state_dir)
    began = time.monotonic()
    st = embedded.status(state_dir)
    assert time.monotonic() - began < 1.0
    assert not st.running and st.died
    settings = Settings.load({"state_dir": state_dir}, environ={}, env_file=None)
    began = time.monotonic()
    client = connect(settings)
    assert time.monotonic() - began < 2.0
    assert embedded.status(state_dir).pid != old_pid
    client.close()


@pytest.mark.processes
def test_a_death_is_logged_once_with_where_to_look(state_dir: Path, tmp_path: Path) -> None:
    embedded.ensure_running(state_dir)
    old_pid = _kill(state_dir)
    env = cli_env(None, tmp_path, WASMQ_STATE_DIR=str(state_dir))
    status = run_cli("server", "status", env=env)
    assert status.returncode == 3
    assert "died" in status.stdout and "valkey.log" in status.stdout
    procs = [
        subprocess.Popen(
            # -v: the restart is logged at info, and one-shot commands log warnings only.
            [sys.executable, "-c", "from runtime.cli import main; main()", "-v", "server", "start"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    logs = "".join(p.communicate(timeout=60)[1] for p in procs)
    assert all(p.returncode == 0 for p in procs), logs
    assert logs.count("embedded server died") == 1, logs
    assert logs.count("restarted embedded server") == 1, logs
    died = next(line for line in logs.splitlines() if "embedded server died" in line)
    assert str(old_pid) in died
    assert str(embedded.ServerPaths(state_dir).log_file) in died
    assert "Ready to accept connections" in died  # the log's last line
    assert len(_valkey_processes(state_dir)) == 1


@pytest.mark.processes
def test_supervisor_restarts_a_dead_server_and_leaves_a_stopped_one(state_dir: Path) -> None:
    embedded.ensure_running(state_dir)
    client = _client(state_dir)
    client.set("kept", "yes")
    time.sleep(1.5)  # appendfsync everysec
    stop = threading.Event()
    watcher = threading.Thread(target=embedded.supervise, args=(state_dir, stop, 0.1))
    watcher.start()
    try:
        old_pid = _kill(state_dir)
        # The target is under 2 s (about 50 ms here); the bound only catches a hang.
        assert _wait_for_new_server(state_dir, old_pid, 10) < 5
        assert client.get("kept") == b"yes"  # same AOF, and the client reconnects
        # Alive but not answering is not dead: the supervisor leaves it alone.
        pid = embedded.status(state_dir).pid
        assert pid
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.5)
        os.kill(pid, signal.SIGCONT)
        assert embedded.status(state_dir).pid == pid
        # Stopped on purpose: it stays stopped until something starts it.
        embedded.stop(state_dir)
        time.sleep(0.5)
        assert not embedded.status(state_dir).running
        embedded.ensure_running(state_dir)
        old_pid = _kill(state_dir)
        assert _wait_for_new_server(state_dir, old_pid, 10) < 5
    finally:
        stop.set()
        watcher.join(timeout=5)
        client.close()
    assert not watcher.is_alive()


@pytest.mark.processes
def test_a_server_that_keeps_dying_is_restarted_with_a_delay(state_dir: Path) -> None:
    embedded.ensure_running(state_dir)
    stop = threading.Event()
    watcher = threading.Thread(target=embedded.supervise, args=(state_dir, stop, 0.1))
    watcher.start()
    try:
        first = _kill(state_dir)
        _wait_for_new_server(state_dir, first, 10)
        second = _kill(state_dir)  # right after its restart: a crash loop
        assert 0.4 < _wait_for_new_server(state_dir, second, 10) < 5
    finally:
        stop.set()
        watcher.join(timeout=5)


@pytest.mark.processes
def test_supervisor_retries_a_server_that_fails_to_start(state_dir: Path) -> None:
    embedded.ensure_running(state_dir)
    incr = next((state_dir / "data" / "appendonlydir").glob("*.incr.aof"))
    intact = incr.read_bytes()
    stop = threading.Event()
    watcher = threading.Thread(target=embedded.supervise, args=(state_dir, stop, 0.1))
    watcher.start()
    try:
        with incr.open("ab") as aof:
            aof.write(b"*2\r\n$3\r\nSET\r\ngarbage\r\n")
        old_pid = _kill(state_dir)
        time.sleep(1.0)  # the restart fails: the server refuses the damaged AOF
        assert not embedded.status(state_dir).running
        assert "Bad file format" in embedded._log_tail(embedded.ServerPaths(state_dir))
        incr.write_bytes(intact)
        # The supervisor did not give up: its next attempt (2 s after the first) works.
        _wait_for_new_server(state_dir, old_pid, 10)
    finally:
        stop.set()
        watcher.join(timeout=5)


@pytest.mark.processes
def test_two_supervisors_restart_the_server_once(state_dir: Path, tmp_path: Path) -> None:
    embedded.ensure_running(state_dir)
    env = cli_env(None, tmp_path)
    watchers = [
        subprocess.Popen(
            [sys.executable, "-c", SUPERVISE, str(state_dir)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for w in watchers:
            assert w.stderr is not None
            line = w.stderr.readline()  # once it runs, it says so
            assert "watching the embedded server" in line, line
        old_pid = _kill(state_dir)
        _wait_for_new_server(state_dir, old_pid, 10)
        time.sleep(0.5)  # the other one notices the new server
        assert len(_valkey_processes(state_dir)) == 1
    finally:
        for w in watchers:
            w.terminate()
        logs = "".join(w.communicate(timeout=10)[1] for w in watchers)
    assert logs.count("embedded server died") == 1, logs
    assert logs.count("restarted embedded server") == 1, logs
    assert logs.count("restarted by another process") == 1, logs


@pytest.mark.processes
def test_stop_then_status_reports_not_running(state_dir: Path, tmp_path: Path) -> None:
    embedded.ensure_running(state_dir)
    assert embedded.stop(state_dir) is True
    assert embedded.status(state_dir).running is False
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
        connect(
            Settings.load({"redis_url": url}, environ={"WASMQ_CONNECT_TIMEOUT": "0"}, env_file=None)
        )
    assert "cannot reach Redis" in str(info.value)
    assert "pw" not in str(info.value)
    assert redact(url) == f"redis://:***@127.0.0.1:{port}/0"
