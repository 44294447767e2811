"""The demo behind ``make demo``: the whole life of a task, on the embedded server.

It registers ``tasks/``, starts ``wasmq worker --queue demo --concurrency 2`` as a
subprocess, enqueues an immediate task (Go), a task scheduled a few seconds ahead (C) and a
cron task every 2 s (WAT; removed after three runs), all on the ``demo`` queue, prints each
result and its captured logs as ``wasmq result`` and ``wasmq logs`` show them, then stops
the worker (SIGTERM: it drains) and says what to run next.

The demo may share a server with the user's own workers, so it keeps out of their way: a
worker serving ``default`` never sees a demo task, and an embedded server that was running
before the demo is left running (one the demo started is stopped at the end).
:func:`run_demo` holds the steps and :func:`run` the whole demo; both take any settings,
so the tests run exactly these steps against their own servers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runtime import logging_config

# The components bind their loggers when imported, so they are imported in the functions:
# main() quiets logging first, and the demo prints only what a user would look at.
if TYPE_CHECKING:
    from runtime.client import Client
    from runtime.settings import Settings

TASKS = Path(__file__).resolve().parent.parent / "tasks"
#: Every demo task runs here, so a worker serving another queue never runs one.
DEMO_QUEUE = "demo"
#: The cron entry's fixed id: a rerun replaces the entry of an interrupted run.
CRON_ID = "demo-cron"
CRON_RUNS = 3
SCHEDULE_DELAY = 3.0
#: What to try after the demo: each command, and what it shows.
NEXT_COMMANDS = (
    (f"wasmq list --queue {DEMO_QUEUE}", "the demo's tasks"),
    ("wasmq worker", "serve the default queue (Ctrl-C stops it)"),
    ("wasmq new hello --lang go", "start a handler: hello/hello.go"),
    ("wasmq run hello/hello.go --payload @hello/payload.json", "build and run it, no queue"),
)
#: Longest wait for any one step (a cold Go compile happens before the clock starts).
STEP_TIMEOUT = 60.0


@dataclass
class Shown:
    """One task the demo printed: what ran, what it returned, what it wrote."""

    label: str
    task_id: str
    task_name: str
    result: bytes
    log_lines: list[str] = field(default_factory=list)


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that points a ``wasmq`` subprocess at the same server and dirs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WASMQ_", "TASK_QUEUE_"))}
    env["REDIS_URL"] = settings.redis_url or ""
    env["WASMQ_MODULE_DIR"] = str(settings.module_dir)
    env["WASMQ_STATE_DIR"] = str(settings.state_dir)
    env["TASK_QUEUE_WASM_LOG_DIR"] = str(settings.wasm_log_dir)
    return env


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """``wasmq worker --queue demo --concurrency 2``, its log output going to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = ["worker", "--queue", DEMO_QUEUE, "--concurrency", "2"]
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-c", "from runtime.cli import main; main()", *command],
            env=worker_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_worker(proc: subprocess.Popen[bytes], settings: Settings) -> int:
    """SIGTERM: the worker finishes its running tasks (drain), then exits."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=settings.drain_timeout + 15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def wait_ready(client: Client, worker: subprocess.Popen[bytes], log_path: Path) -> None:
    """Until the demo worker's processes report in (other workers may share the server); a
    worker that exits is an error, not a hang."""
    from runtime.errors import WasmqError

    deadline = time.monotonic() + STEP_TIMEOUT
    while not any(w.alive and w.queues == [DEMO_QUEUE] for w in client.workers()):
        if worker.poll() is not None:
            raise WasmqError(f"the worker exited with code {worker.returncode}: see {log_path}")
        if time.monotonic() > deadline:
            raise WasmqError(f"the worker did not start in {STEP_TIMEOUT:g}s: see {log_path}")
        time.sleep(0.1)


def show(client: Client, label: str, task_id: str, out: Callable[[str], None]) -> Shown:
    """Wait for the task, print its result and logs; failures are printed, not raised."""
    from runtime.errors import WasmqError
    from runtime.output.files import format_lines

    status = client.status(task_id)
    try:
        result = client.result(task_id, wait=True, timeout=STEP_TIMEOUT)
    except WasmqError as exc:
        result = b""
        out(f"{label}: {status.task_name} {task_id} failed: {exc}")
    lines = list(format_lines(client.logs(task_id)))
    out(f"{label}: {status.task_name} ({task_id})")
    out(f"  result: {result.decode(errors='replace')}")
    out("  logs:")
    for line in lines:
        out(f"    {line}")
    return Shown(label, task_id, status.task_name, result, lines)


def cron_runs(client: Client, entry_id: str, since_ms: int) -> list[str]:
    """Ids of the entry's finished runs, oldest first."""
    from runtime.queue.task import TERMINAL_STAGES

    runs = [
        s
        for s in client.list_tasks(queue=DEMO_QUEUE, limit=200)
        if s.cron_id == entry_id and s.stage in TERMINAL_STAGES and (s.enqueued_ms or 0) >= since_ms
    ]
    return [s.id for s in sorted(runs, key=lambda s: (s.scheduled_ms or 0, s.id))]


def run_demo(
    settings: Settings,
    tasks_dir: Path = TASKS,
    *,
    out: Callable[[str], None] = print,
    toolchain_cache: Path | None = None,
) -> list[Shown]:
    """Register, start a worker, enqueue now / later / every 2 s, print, stop the worker."""
    from runtime.client import Client
    from runtime.clock import now_ms
    from runtime.errors import TaskNotFound
    from runtime.modules.registry import Registry
    from runtime.scheduling import cron_entries

    shown: list[Shown] = []
    with Client(settings=settings) as client:
        out(f"registering {tasks_dir.name}/ (the first run compiles; later runs hit the cache)")
        registry = Registry(settings, client.redis, toolchain_cache=toolchain_cache)
        for path in sorted(tasks_dir.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                reg = registry.register(path)
                how = "cached" if reg.cache_hit else f"compiled with {reg.record.toolchain}"
                out(f"  {reg.record.name} v{reg.record.version} ({how})")
        with contextlib.suppress(TaskNotFound):
            cron_entries.remove(client.redis, CRON_ID)

        worker_log = settings.state_dir / "demo-worker.log"
        worker = start_worker(settings, worker_log)
        out(f"worker started for queue {DEMO_QUEUE} (pid {worker.pid}, concurrency 2)")
        try:
            now = client.enqueue("task_1", {"name": "demo"}, queue=DEMO_QUEUE)
            later = client.schedule(
                "task_1_c", {"name": "later"}, delay=SCHEDULE_DELAY, queue=DEMO_QUEUE
            )
            started = now_ms()
            entry = client.cron(
                "task_1_wat", "@every 2s", {"name": "cron"}, id=CRON_ID, queue=DEMO_QUEUE
            )
            out(f"enqueued {now.id}; scheduled {later.id} in {SCHEDULE_DELAY:g}s;")
            out(f"cron entry {entry.id} runs task_1_wat every 2s")
            wait_ready(client, worker, worker_log)
            shown.append(show(client, "immediate", now.id, out))
            shown.append(show(client, "scheduled", later.id, out))
            deadline = time.monotonic() + STEP_TIMEOUT
            runs = cron_runs(client, entry.id, started)
            while len(runs) < CRON_RUNS and time.monotonic() < deadline:
                time.sleep(0.2)
                runs = cron_runs(client, entry.id, started)
            cron_entries.remove(client.redis, entry.id)
            out(f"cron entry {entry.id} removed after {len(runs)} runs")
            for number, run_id in enumerate(runs[:CRON_RUNS], 1):
                shown.append(show(client, f"cron run {number}", run_id, out))
        finally:
            code = stop_worker(worker, settings)
            out(f"worker stopped (exit code {code})")
    return shown


def display(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


def next_steps(bin_dir: Path, on_path: bool) -> list[str]:
    """What to type after the demo; how to get ``wasmq`` on PATH only when it is not."""
    where = display(bin_dir)
    if on_path:
        first = "next, try:"
    elif (bin_dir.parent / "pyvenv.cfg").is_file():
        shell = " (or 'make shell')" if display(bin_dir.parent) == ".venv" else ""
        first = f"wasmq is installed in {where}: run 'source {where}/activate'{shell}, then:"
    else:
        first = f"wasmq is installed in {where}: put it on PATH, then:"
    width = max(len(command) for command, _ in NEXT_COMMANDS)
    return [first, *(f"  {command:<{width}}  # {what}" for command, what in NEXT_COMMANDS)]


def installed_bin() -> tuple[Path, bool]:
    """The directory of this interpreter's ``wasmq`` script, and whether PATH finds it."""
    bin_dir = Path(sys.prefix) / "bin"
    found = shutil.which("wasmq")
    on_path = found is not None and Path(found).resolve() == (bin_dir / "wasmq").resolve()
    return bin_dir, on_path


@contextlib.contextmanager
def embedded_server(state_dir: Path, out: Callable[[str], None]) -> Iterator[str]:
    """The embedded server's URL. One that was running before stays running; one started
    here is stopped on the way out, unless someone else's worker has come to use it."""
    from runtime.server import embedded

    paths = embedded.ServerPaths(state_dir)
    was_running = embedded.status(state_dir).running
    embedded.ensure_running(state_dir)
    where = display(state_dir)
    if was_running:
        out(f"using the embedded server already running in {where}/ (it stays running)")
    else:
        out(f"embedded server started in {where}/ (the demo stops it at the end)")
    try:
        yield paths.url
    finally:
        if not was_running:
            users = other_workers(paths.url)
            if users:
                out(f"embedded server left running: {len(users)} other worker(s) use it")
            else:
                embedded.stop(state_dir)
                out("embedded server stopped")


def other_workers(url: str) -> list[str]:
    """Live workers on the server other than the demo's (stopped by now); none when the
    server no longer answers."""
    import redis

    from runtime.client import Client
    from runtime.errors import WasmqError

    with contextlib.suppress(WasmqError, redis.RedisError), Client(url) as client:
        return [w.id for w in client.workers() if w.alive and w.queues != [DEMO_QUEUE]]
    return []


def run(
    settings: Settings,
    tasks_dir: Path = TASKS,
    *,
    out: Callable[[str], None] = print,
    toolchain_cache: Path | None = None,
) -> list[Shown]:
    """The whole demo: on ``settings.redis_url``, or on the embedded server of
    ``settings.state_dir`` (started and stopped here only if it was not running), then
    the next steps."""
    with contextlib.ExitStack() as stack:
        if not settings.redis_url:
            url = stack.enter_context(embedded_server(settings.state_dir, out))
            settings = dataclasses.replace(settings, redis_url=url)
        shown = run_demo(settings, tasks_dir, out=out, toolchain_cache=toolchain_cache)
    out("")
    for line in next_steps(*installed_bin()):
        out(line)
    return shown


def main() -> None:
    # The demo prints what a user would look at; the components' own logs only on trouble.
    logging_config.configure("warning")
    from runtime.errors import WasmqError
    from runtime.settings import Settings

    loaded = Settings.load()
    # Absolute dirs: the toolchains and the worker subprocess resolve paths on their own.
    settings = dataclasses.replace(
        loaded,
        module_dir=loaded.module_dir.resolve(),
        state_dir=loaded.state_dir.resolve(),
        wasm_log_dir=loaded.wasm_log_dir.resolve(),
    )
    try:
        # Flushed line by line: through a pipe (`make demo | tee`) too, each step shows as it ends.
        run(settings, out=functools.partial(print, flush=True))
    except WasmqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
