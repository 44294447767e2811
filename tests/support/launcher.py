"""``wasmq`` commands as processes of their own, without paying the CLI's imports each time.

Importing ``runtime.cli`` takes most of a short command's 0.4 s, and the suite runs
hundreds of them. The launcher is one ``python -c`` process that has done that import
once and forks a child per command: the child takes the command's stdin, stdout, stderr,
working directory, environment and arguments, then calls ``main()`` and exits as the
console script does (``SystemExit``, atexit handlers). A fork carries no state of a
previous command: the launcher itself never runs one.

What the interpreter reads once at start (``PYTHON*`` variables, the locale, typer's and
OpenTelemetry's switches) is the launcher's; a command whose environment changes one of
them runs as a fresh interpreter instead (:func:`forkable`).

Each request is one message on a Unix socket carrying five descriptors: the request
(JSON in a temporary file), stdin, stdout, stderr and a pipe for the reply. A waiter
process forked per request forks the command, writes its pid to the pipe, waits for it
and writes its exit code, so commands run side by side as subprocesses do.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.support import tiers

#: Variables the interpreter or a library imported with ``runtime.cli`` reads at start.
STARTUP_PREFIXES = ("PYTHON", "LC_", "LANG", "TYPER_", "_TYPER", "OTEL_")
#: How long a fork, or the end of a killed command, may take.
START_TIMEOUT = 30.0

SERVER = r"""
import gc, json, os, socket, sys
from runtime.cli import main

# What the import built lives as long as any command: no collection need walk it (as in
# any pre-fork server, this also keeps the children's pages shared).
gc.freeze()

def reap():
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass

def command(sock, fds):
    request_fd, stdin, stdout, stderr, reply = fds
    sock.close()
    os.close(reply)
    with os.fdopen(request_fd) as request_file:
        request = json.load(request_file)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["-c", *request["args"]]
    main()

def waiter(sock, fds):
    pid = os.fork()
    if pid == 0:
        command(sock, fds)
        return
    reply = fds[4]
    for fd in fds[:4]:
        os.close(fd)
    os.write(reply, b"%d\n" % pid)
    _, status = os.waitpid(pid, 0)
    os.write(reply, b"%d\n" % os.waitstatus_to_exitcode(status))
    os._exit(0)

def serve(sock):
    while True:
        message, fds, _, _ = socket.recv_fds(sock, 16, 5)
        reap()
        if not message:
            return
        if os.fork() == 0:
            waiter(sock, fds)
            return
        for fd in fds:
            os.close(fd)

serve(socket.socket(fileno=int(sys.argv[1])))
"""


class Launcher:
    """The launcher process and the socket to it; :meth:`run` is ``subprocess.run``."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.startup = startup_env(os.environ)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        theirs.close()
        self.sock = ours
        self.lock = threading.Lock()

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def run(
        self,
        args: list[str],
        *,
        env: dict[str, str],
        cwd: Path | None,
        timeout: float,
        input: str | None,
    ) -> tuple[int, bytes, bytes]:
        """The exit code, stdout and stderr of ``wasmq ARGS``; TimeoutExpired kills it."""
        request = {"args": args, "env": env, "cwd": str(cwd or os.getcwd())}
        with (
            tempfile.TemporaryFile() as request_file,
            tempfile.TemporaryFile() as stdin,
            tempfile.TemporaryFile() as stdout,
            tempfile.TemporaryFile() as stderr,
        ):
            request_file.write(json.dumps(request).encode())
            request_file.seek(0)
            if input is not None:
                stdin.write(input.encode())
                stdin.seek(0)
            reply_r, reply_w = os.pipe()
            try:
                fds = [request_file.fileno(), stdin.fileno(), stdout.fileno(), stderr.fileno()]
                with self.lock:
                    socket.send_fds(self.sock, [b"run"], [*fds, reply_w])
                os.close(reply_w)
                reply_w = -1
                code = self._wait(reply_r, args, timeout)
            finally:
                os.close(reply_r)
                if reply_w != -1:
                    os.close(reply_w)
            stdout.seek(0)
            stderr.seek(0)
            out, err = stdout.read(), stderr.read()
        if code is None:
            raise subprocess.TimeoutExpired(args, timeout, out, err)
        return code, out, err

    def _wait(self, reply: int, args: list[str], timeout: float) -> int | None:
        """The command's exit code, or None when it ran past ``timeout`` and was killed."""
        lines = ReplyLines(reply)
        pid = lines.next(START_TIMEOUT)
        if pid is None:
            raise AssertionError(f"the launcher did not start wasmq {' '.join(args)}")
        code = lines.next(timeout)
        if code is None:
            os.kill(pid, signal.SIGKILL)
            if lines.next(START_TIMEOUT) is None:
                raise AssertionError(f"wasmq {' '.join(args)} outlived its SIGKILL")
        return code


class ReplyLines:
    """The numbers a waiter writes to its reply pipe, one a line."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def next(self, timeout: float) -> int | None:
        """The next number, or None if none came within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                return None
            chunk = os.read(self.fd, 64)
            if not chunk:
                raise AssertionError("the launcher's waiter ended without a reply")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return int(line)


def startup_env(env: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(STARTUP_PREFIXES)}


_launcher: Launcher | None = None
_started = threading.Lock()


def launcher() -> Launcher:
    """The launcher, started on first use and stopped when this interpreter exits."""
    global _launcher
    # Shared by every test, as the session's server is; each command's fork is checked
    # against its test's markers (run_cli).
    with _started, tiers.unwatched():
        if _launcher is not None and _launcher.startup != startup_env(os.environ):
            _launcher.close()
            _launcher = None
        if _launcher is None or _launcher.proc.poll() is not None:
            _launcher = Launcher()
            atexit.register(_launcher.close)
        return _launcher


def forkable(env: dict[str, str]) -> bool:
    """Whether a command with ``env`` can run as a fork of the launcher, which starts
    with this process's environment."""
    return startup_env(env) == startup_env(os.environ)
