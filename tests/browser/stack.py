"""The dashboard as a user runs it: a worker pool and ``wasmq dashboard`` as subprocesses,
the WAT tasks they run, and a headless Chromium driven by Selenium.

Shared by the end-to-end tests (``conftest.py``) and the README screenshots
(``screenshots.py``). Chromium and its driver are Debian's (``make system-deps``);
Selenium is given both paths and ``SE_OFFLINE``, so it never downloads a browser.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from runtime.client import Client
from runtime.settings import Settings
from tests.support.pools import stop_processes

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--disable-component-update",
    "--window-size=1280,900",
)
#: Long enough for a dashboard to start on a loaded machine; the wait ends when it answers.
START_TIMEOUT = 60.0

# -- the tasks ----------------------------------------------------------------------------

#: What every task module shares: the WASI imports, a bump allocator that keeps one byte
#: spare past each block (room for a newline), a one-buffer write, the clocks, a sleep
#: and a decimal parser. Scratch at 0..511, constant strings from 512, the heap from 4096.
_PRELUDE = """
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasmq" "fail" (func $fail (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func $alloc (export "alloc") (param $n i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p (global.get $heap))
    (local.set $end (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 1)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq (i32.const -1)
              (memory.grow (i32.div_u
                (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                (i32.const 65536))))
          (then (unreachable)))))
    (global.set $heap (local.get $end))
    (local.get $p))
  (func $write (param $fd i32) (param $p i32) (param $l i32)
    (i32.store (i32.const 0) (local.get $p))
    (i32.store (i32.const 4) (local.get $l))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func $now_ns (param $clock i32) (result i64)
    (drop (call $clock_time_get (local.get $clock) (i64.const 1) (i32.const 16)))
    (i64.load (i32.const 16)))
  ;; One clock subscription (monotonic, relative) at 64; its event at 128.
  (func $sleep_ms (param $ms i64)
    (i64.store (i32.const 64) (i64.const 0))
    (i32.store8 (i32.const 72) (i32.const 0))
    (i32.store (i32.const 80) (i32.const 1))
    (i64.store (i32.const 88) (i64.mul (local.get $ms) (i64.const 1000000)))
    (i64.store (i32.const 96) (i64.const 0))
    (i32.store16 (i32.const 104) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 160))))
  (func $number (param $p i32) (param $l i32) (result i64)
    (local $i i32) (local $n i64) (local $b i32)
    (block $end
      (loop $digits
        (br_if $end (i32.ge_u (local.get $i) (local.get $l)))
        (local.set $b (i32.sub (i32.load8_u (i32.add (local.get $p) (local.get $i))) (i32.const 48)))
        (br_if $end (i32.gt_u (local.get $b) (i32.const 9)))
        (local.set $n (i64.add (i64.mul (local.get $n) (i64.const 10))
                               (i64.extend_i32_u (local.get $b))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $digits)))
    (local.get $n))
  (func $span (param $p i32) (param $l i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (local.get $l))))
"""

#: ``echo``: prints its payload as one line of stdout and returns it.
ECHO_BODY = """
  (func (export "execute") (param $p i32) (param $l i32) (result i64)
    (i32.store8 (i32.add (local.get $p) (local.get $l)) (i32.const 10))
    (call $write (i32.const 1) (local.get $p) (i32.add (local.get $l) (i32.const 1)))
    (call $span (local.get $p) (local.get $l)))
"""

#: ``slow_echo``: waits 600 ms, prints its payload as one line, waits 600 ms, returns it;
#: a page opened as it starts receives the line live.
SLOW_ECHO_BODY = """
  (func (export "execute") (param $p i32) (param $l i32) (result i64)
    (call $sleep_ms (i64.const 600))
    (i32.store8 (i32.add (local.get $p) (local.get $l)) (i32.const 10))
    (call $write (i32.const 1) (local.get $p) (i32.add (local.get $l) (i32.const 1)))
    (call $sleep_ms (i64.const 600))
    (call $span (local.get $p) (local.get $l)))
"""

#: ``steps``: prints a line, sleeps the payload's milliseconds, prints another.
STEPS_BODY = """
  (data (i32.const 512) "step 1/2: fetching exchange rates\\n")
  (data (i32.const 576) "step 2/2: stored 32 rates\\n")
  (data (i32.const 640) "{\\"rates\\":32}")
  (func (export "execute") (param $p i32) (param $l i32) (result i64)
    (call $write (i32.const 1) (i32.const 512) (i32.const 34))
    (call $sleep_ms (call $number (local.get $p) (local.get $l)))
    (call $write (i32.const 1) (i32.const 576) (i32.const 26))
    (call $span (i32.const 640) (i32.const 12)))
"""

#: ``flaky``: payload ``T`` (ms since the epoch). Before ``T`` the upstream is "down": it
#: fails with a retryable error; from ``T`` on it succeeds. A dead letter made before
#: ``T`` runs again and completes when redriven after it.
FLAKY_BODY = """
  (data (i32.const 512) "calling upstream\\n")
  (data (i32.const 576) "upstream unavailable (503): try again later\\n")
  (data (i32.const 640) "{\\"delivered\\":true}")
  (func (export "execute") (param $p i32) (param $l i32) (result i64)
    (call $write (i32.const 1) (i32.const 512) (i32.const 17))
    (if (i64.lt_u (i64.div_u (call $now_ns (i32.const 0)) (i64.const 1000000))
                  (call $number (local.get $p) (local.get $l)))
      (then
        (call $write (i32.const 2) (i32.const 576) (i32.const 44))
        (drop (call $fail (i32.const 1) (i32.const 576) (i32.const 43)))
        (return (i64.const 0))))
    (call $span (i32.const 640) (i32.const 18)))
"""

TASKS = {
    "echo": ECHO_BODY,
    "slow_echo": SLOW_ECHO_BODY,
    "steps": STEPS_BODY,
    "flaky": FLAKY_BODY,
}


def wat(body: str) -> str:
    return f"(module{_PRELUDE}{body})\n"


def register_tasks(client: Client, directory: Path) -> None:
    """Write and register every task of :data:`TASKS` (name = file stem)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in TASKS.items():
        source = directory / f"{name}.wat"
        source.write_text(wat(body))
        client.register(source)


# -- the processes ------------------------------------------------------------------------


def client_for(redis_url: str, home: Path) -> Client:
    """A producer sharing the subprocesses' module directory."""
    settings = Settings.load(
        {"redis_url": redis_url, "module_dir": home / "modules", "state_dir": home / "state"},
        environ={},
        env_file=None,
    )
    return Client(settings=settings)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Processes:
    """``wasmq`` subprocesses, each in a session of its own, stopped by :meth:`stop_all`."""

    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.env = env
        self.home = home
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.home / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from runtime.cli import main; main()", *args],
                env=self.env,
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((proc, log))
        return proc

    def worker(self, *queues: str, concurrency: int = 2) -> subprocess.Popen[bytes]:
        args = [arg for queue in queues for arg in ("--queue", queue)]
        return self.start("worker", "worker", "--concurrency", str(concurrency), *args)

    def dashboard(self, *args: str) -> str:
        """Start ``wasmq dashboard ARGS`` on a free port; its base URL once it answers."""
        port = free_port()
        proc = self.start(f"dashboard-{port}", "dashboard", "--port", str(port), *args)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the dashboard exited ({proc.returncode})\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{url}/static/dashboard.js", timeout=5):
                    return url
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"the dashboard did not answer\n{self.logs()}") from None
                time.sleep(0.05)

    def stop_all(self) -> None:
        stop_processes([proc for proc, _ in self.procs])

    def logs(self) -> str:
        return "\n".join(log.read_text(errors="replace")[-3000:] for _, log in self.procs)


# -- the browser --------------------------------------------------------------------------


def chromium_missing() -> str | None:
    """Why Chromium cannot be driven here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.access(path, os.X_OK) or shutil.which(path)):
            return f"{path} is missing: install {package} (make system-deps does, as root)"
    return None


def chrome() -> Any:
    """A headless Chromium under Debian's chromedriver; never a downloaded one."""
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
