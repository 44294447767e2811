"""Running real ``wasmq worker`` pools in tests, and waiting for what they do.

A pool is a subprocess in a process group of its own, as under systemd. Tests wait for
state they can observe in Redis (worker records, the idle set, task stages) instead of
sleeping: on a loaded machine a pool can take seconds to start its workers.

The task these tests run is :data:`SPIN_WAT`: payload ``spin:<ms>`` busy-waits on the
WASI clock and returns ``done``; anything else is echoed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from runtime.client import Client
from runtime.modules.registry import Registry
from runtime.queue import keys
from runtime.settings import Settings

SPIN_WAT = """
(module
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock_time_get (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 16) "done")
  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func $now (result i64)
    (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 0)))
    (i64.load (i32.const 0)))
  (func (export "execute") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $ms i64) (local $start i64)
    (if (i32.and (i32.ge_u (local.get $len) (i32.const 6))
                 (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 115)))
      (then
        (local.set $i (i32.const 5))
        (block $end
          (loop $digits
            (br_if $end (i32.ge_u (local.get $i) (local.get $len)))
            (local.set $ms (i64.add (i64.mul (local.get $ms) (i64.const 10))
              (i64.extend_i32_u (i32.sub
                (i32.load8_u (i32.add (local.get $ptr) (local.get $i))) (i32.const 48)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $digits)))
        (local.set $start (call $now))
        (block $done
          (loop $spin
            (br_if $done (i64.ge_u (i64.sub (call $now) (local.get $start))
                                   (i64.mul (local.get $ms) (i64.const 1000000))))
            (br $spin)))
        (return (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 4)))))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))
)
"""

#: Short leases, reaper and heartbeat intervals, so recovery happens within a test.
FAST = {
    "WASMQ_LEASE_GRACE": "1s",
    "WASMQ_REAPER_INTERVAL": "300ms",
    "WASMQ_HEARTBEAT_INTERVAL": "300ms",
    "WASMQ_DRAIN_TIMEOUT": "15s",
}

#: Long enough for a pool to start on a loaded machine; the wait ends as soon as it has.
READY_TIMEOUT = 60.0


def register_spin(settings: Settings, client: redis.Redis, tmp_path: Path) -> None:
    """Register :data:`SPIN_WAT` as task ``spin``."""
    source = tmp_path / "spin.wat"
    source.write_text(SPIN_WAT)
    Registry(settings, client).register(source)


def client_for(url: str, tmp_path: Path, client: redis.Redis) -> Client:
    """A producer on ``url`` that shares the test's module directory."""
    settings = Settings.load(
        {"redis_url": url, "module_dir": tmp_path / "modules"}, environ={}, env_file=None
    )
    return Client(settings=settings, client=client)


def wait_for(check: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str]) -> None:
    """Poll ``check`` until it holds; on timeout, fail with the tail of ``logs()``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{logs()[-4000:]}")
        time.sleep(0.02)


def idle_workers(client: redis.Redis, queue: str = keys.DEFAULT_QUEUE) -> set[str]:
    """Ids of the registered workers that are blocked waiting for a task on ``queue``."""
    pipe = client.pipeline(transaction=False)
    pipe.zrange(keys.WORKERS, 0, -1)
    pipe.zrange(keys.idle(queue), 0, -1)
    registered, idle = pipe.execute()
    return {worker_id.decode() for worker_id in set(registered) & set(idle)}


def running_tasks(client: redis.Redis) -> set[str]:
    """Ids of the tasks the registered workers' last heartbeats name as running.

    A task's ``in_progress`` stage only says it was claimed: until its worker starts
    it, a SIGTERM gives it back unstarted, so a test of draining a running task must
    wait for this instead.
    """
    pipe = client.pipeline(transaction=False)
    for worker_id in client.zrange(keys.WORKERS, 0, -1):
        pipe.hget(keys.worker(worker_id.decode()), "current_task")
    return {task_id.decode() for task_id in pipe.execute() if task_id}


def terminate(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM (a worker drains), then SIGKILL if it has not exited within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_processes(procs: list[subprocess.Popen[Any]], timeout: float = 20) -> None:
    """SIGTERM every process, then wait for each (killing one that outlasts ``timeout``)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Pools:
    """Starts ``wasmq worker`` supervisors and stops them at the end of the test."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        with open(self.cwd / f"worker-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from runtime.cli import main; main()", "worker", *args],
                env={**self.env, **extra_env},
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A group of its own, as under systemd: tests signal the whole group.
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def wait_idle(
        self, client: redis.Redis, count: int, queue: str = keys.DEFAULT_QUEUE
    ) -> set[str]:
        """Wait until ``count`` worker processes have registered and wait for work.

        Only then does an enqueue reach every pool: an idle worker is woken by the
        enqueue itself, while one still starting may find the queue already drained.
        Returns the idle workers' ids.
        """
        ready: set[str] = set()

        def check() -> bool:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise AssertionError(
                        f"a pool exited ({proc.returncode}) before its workers were ready\n"
                        f"{self.logs()[-4000:]}"
                    )
            ready.clear()
            ready.update(idle_workers(client, queue))
            return len(ready) >= count

        wait_for(check, READY_TIMEOUT, f"{count} idle worker processes", self.logs)
        return ready

    def stop_all(self) -> None:
        stop_processes(self.procs)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.cwd.glob("worker-*.log"))
