"""The README's dashboard screenshots: ``.venv/bin/python -m tests.browser.screenshots``.

Starts a private embedded server, a worker pool and a dashboard, fills them with
half a minute of a small shop's work (queues, completed and failed tasks with output, cron
entries, scheduled tasks, dead letters) and saves a PNG of each main page to
``tests/browser/screenshots/``. Nothing outside a temporary directory is touched.
"""

from __future__ import annotations

import base64
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "screenshots"
#: Each PNG the README shows stays below this.
MAX_BYTES = 200 * 1024
QUEUES = ("default", "emails", "reports")
#: The dashboard's chart counts tasks per 10 s.
WAVE_SECONDS = 10.0
WINDOW = (1280, 760)
#: (file name, path, CSS selector that says the page is ready, most pixels shown high).
PAGES = (
    ("queues", "/", "table#queues", 620),
    ("tasks", "/tasks", "table#tasks", 560),
    ("task", "/tasks/{task}", "#logs .log-line", 900),
    ("dead-letters", "/dlq", "table#dead-letters", 620),
    ("schedules", "/schedules", "table#cron", 620),
    ("workers", "/workers", "table#workers", 620),
)


def seed(client: Any) -> str:
    """Tasks as a shop's morning leaves them, enqueued in waves a chart bucket apart so
    the throughput chart has a shape; returns the id of the task page to show."""
    from runtime.clock import now_ms
    from runtime.scheduling import cron_entries

    down = str(now_ms() + 24 * 3_600_000)  # the upstream that flaky calls stays down all day
    names = iter(("ada", "grace", "linus", "barbara", "ken", "edsger"))
    invoices = iter(range(1040, 1050))

    def mail() -> None:
        to = f"{next(names)}@example.com"
        client.enqueue("echo", {"to": to, "template": "welcome"}, queue="emails")

    def invoice() -> None:
        number = next(invoices)
        client.enqueue("echo", {"invoice": number, "total_cents": 1999 + 25 * number % 700})

    client.cron("steps", "0 3 * * *", "500", queue="reports", id="nightly-rates")
    client.cron("echo", "*/15 * * * *", {"digest": "orders"}, queue="emails", id="order-digest")
    paused = client.cron("echo", "0 9 * * 1", {"report": "weekly"}, id="weekly-report").id
    cron_entries.pause(client.redis, paused)
    client.schedule("echo", {"reminder": "renewal", "account": 7731}, delay="2h", queue="emails")
    client.schedule("steps", "200", delay="35m", queue="reports")

    waves: list[list[Callable[[], object]]] = [
        [mail, invoice, lambda: client.enqueue("flaky", "1")],
        [mail, mail, invoice, invoice, lambda: client.enqueue("flaky", down, max_retries=0)],
        [mail, invoice, lambda: client.enqueue("flaky", down, max_retries=0, queue="emails")],
        [mail, mail, lambda: client.enqueue("flaky", down, max_retries=0)],
    ]
    shown = ""
    for number, wave in enumerate(waves):
        if number:
            time.sleep(WAVE_SECONDS)
        for enqueue in wave:
            enqueue()
        if number == 2:
            shown = client.enqueue("steps", "400", queue="reports").id
    client.enqueue("steps", "300", queue="reports")
    return shown


def capture(driver: Any, most: int) -> bytes:
    """The page from its top, as high as its content but at most ``most`` pixels."""
    high = driver.execute_script(
        "return document.querySelector('main').getBoundingClientRect().bottom + 24"
    )
    clip = {"x": 0, "y": 0, "width": WINDOW[0], "height": min(int(high), most), "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}
    )
    return base64.b64decode(shot["data"])


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="wasmq-screenshots-"))
    # The server roster of this run only, never the user's.
    os.environ["XDG_STATE_HOME"] = str(work / "xdg")
    sys.path.insert(0, str(HERE.parent.parent))
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from runtime.server import embedded
    from tests.browser import stack
    from tests.support.cli import cli_env
    from tests.support.pools import idle_workers

    missing = stack.chromium_missing()
    if missing:
        raise SystemExit(missing)
    server = work / "valkey"
    embedded.ensure_running(server)
    url = embedded.ServerPaths(server).url
    client = stack.client_for(url, work)
    procs = stack.Processes(cli_env(url, work, WASMQ_HEARTBEAT_INTERVAL="300ms"), work)
    driver = None
    try:
        stack.register_tasks(client, work / "tasks")
        procs.worker(*QUEUES, concurrency=2)
        base = procs.dashboard()
        wait_until(lambda: len(idle_workers(client.redis)) >= 2, "the pool's workers")
        shown = seed(client)
        wait_until(lambda: client.status(shown).terminal, "the report task")
        wait_until(
            lambda: all(s.pending == 0 and s.in_progress == 0 for s in client.stats()),
            "the queues to drain",
        )
        ran = sum(s.finished + s.dlq for s in client.stats())
        wait_until(
            lambda: sum(w.done + w.failed for w in client.workers()) >= ran,
            "the workers' heartbeats to count every task",
        )
        driver = stack.chrome()
        # A shorter window than the tests': smaller PNGs, and the README shows them small.
        driver.set_window_size(*WINDOW)
        OUT.mkdir(exist_ok=True)
        for name, path, ready, most in PAGES:
            driver.get(base + path.format(task=shown))
            WebDriverWait(driver, 20).until(lambda d, r=ready: d.find_elements(By.CSS_SELECTOR, r))
            target = OUT / f"{name}.png"
            target.write_bytes(capture(driver, most))
            size = target.stat().st_size
            print(f"{target.relative_to(HERE.parent.parent)}: {size // 1024} KiB")
            if size > MAX_BYTES:
                raise SystemExit(f"{target} is {size} bytes, over {MAX_BYTES}: simplify the page")
    finally:
        if driver is not None:
            driver.quit()
        procs.stop_all()
        client.close()
        embedded.stop(server)


if __name__ == "__main__":
    main()
