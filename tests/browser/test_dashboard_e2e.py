"""The dashboard in a real browser: headless Chromium against ``wasmq dashboard`` and a
real worker pool, through the DOM hooks the pages promise (ids, classes, data-*)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from runtime.clock import now_ms
from runtime.queue.queries import TaskStatus
from tests.browser.conftest import Stack
from tests.support.pools import wait_for

pytestmark = pytest.mark.processes

#: Bound of every wait for the page or the pool (they end as soon as what they wait for
#: holds; this is for a loaded machine).
TIMEOUT = 20.0
XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
LIVE_PROBE = """
const [text] = arguments;
const logs = document.getElementById("logs");
sessionStorage.removeItem("live-line");
new MutationObserver(() => {
  if (logs.textContent.includes(text) && !sessionStorage.getItem("live-line")) {
    sessionStorage.setItem("live-line", document.getElementById("task-stage").dataset.stage);
  }
}).observe(logs, {childList: true, subtree: true});
"""
#: The action buttons a read-only dashboard must not show.
ACTIONS = (
    "button.redrive",
    "button#redrive-selected",
    "button#redrive-all",
    "button#purge",
    "button.pause",
    "button.resume",
    "button.remove",
    "button.cancel",
)


def until(browser: Any, check: Callable[[Any], Any], timeout: float = TIMEOUT) -> Any:
    wait = WebDriverWait(
        browser,
        timeout,
        poll_frequency=0.05,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    )
    try:
        return wait.until(check)
    except TimeoutException:
        body = browser.find_element(By.TAG_NAME, "body").text
        raise AssertionError(
            f"timed out after {timeout} s on {browser.current_url}; the page says:\n{body[:3000]}"
        ) from None


def css(browser: Any, selector: str) -> WebElement:
    """The element, once it is on the page."""
    return until(browser, lambda b: b.find_element(By.CSS_SELECTOR, selector))


def notice(browser: Any, opening: str) -> None:
    """Wait for the page an action leads to, by the notice it opens with."""
    until(browser, lambda b: b.find_element(By.ID, "notice").text.startswith(opening))


def ended(stack: Stack, task_id: str, stage: str = "completed") -> TaskStatus:
    """Wait for the pool to bring the task to ``stage``."""
    found: list[TaskStatus] = []

    def check() -> bool:
        found[:] = [stack.client.status(task_id)]
        return found[0].stage == stage

    wait_for(check, TIMEOUT, f"task {task_id} to be {stage}", stack.procs.logs)
    return found[0]


def fill(form: WebElement, name: str, value: str) -> None:
    field = form.find_element(By.NAME, name)
    if field.tag_name == "select":
        Select(field).select_by_value(value)
    else:
        field.clear()
        field.send_keys(value)


def submit(form: WebElement) -> None:
    buttons = form.find_elements(By.CSS_SELECTOR, "button[type=submit], input[type=submit]")
    if buttons:
        buttons[0].click()
    else:
        form.submit()


def stage_of(browser: Any) -> str:
    return str(browser.find_element(By.ID, "task-stage").get_attribute("data-stage"))


def test_the_task_list_filters_and_opens_a_task(dashboard_stack: Stack, browser: Any) -> None:
    client = dashboard_stack.client
    others = [client.enqueue("echo", {"invoice": n}).id for n in range(3)]
    mails = [
        client.enqueue("echo", {"to": f"user{n}@example.com"}, queue="emails").id for n in range(2)
    ]
    for task_id in others + mails:
        ended(dashboard_stack, task_id)

    browser.get(f"{dashboard_stack.url}/")
    css(browser, 'table#queues tr[data-queue="emails"]')

    browser.get(f"{dashboard_stack.url}/tasks")
    form = css(browser, "form#task-filters")
    fill(form, "queue", "emails")
    submit(form)
    until(browser, lambda b: "queue=emails" in b.current_url)

    def listed(b: Any) -> set[str]:
        rows = b.find_elements(By.CSS_SELECTOR, "table#tasks tr[data-task-id]")
        return {str(row.get_attribute("data-task-id")) for row in rows}

    until(browser, lambda b: listed(b) == set(mails), timeout=5)
    rows = browser.find_elements(By.CSS_SELECTOR, "table#tasks tr[data-task-id]")

    rows[-1].find_element(By.CSS_SELECTOR, "a.task-link").click()
    fields = css(browser, "dl#task-fields")
    task_id = browser.current_url.rsplit("/", 1)[-1].split("?")[0]
    assert task_id in mails
    assert stage_of(browser) == "completed"
    assert "emails" in fields.text and "echo" in fields.text
    number = mails.index(task_id)
    assert f'"to": "user{number}@example.com"' in css(browser, "pre#result").text
    (line,) = browser.find_elements(By.CSS_SELECTOR, "#logs .log-line")
    assert line.get_attribute("data-stream") == "stdout"
    assert f"user{number}@example.com" in line.text

    browser.get(f"{dashboard_stack.url}/tasks")
    form = css(browser, "form#task-filters")
    fill(form, "id", others[0])
    submit(form)
    until(browser, lambda b: b.current_url.split("?")[0].endswith(f"/tasks/{others[0]}"))
    css(browser, "dl#task-fields")


def test_logs_arrive_while_the_task_runs(dashboard_stack: Stack, browser: Any) -> None:
    task_id = dashboard_stack.client.enqueue("steps", "1500").id
    browser.get(f"{dashboard_stack.url}/tasks/{task_id}")
    css(browser, "#logs")
    # Records, in storage that outlives a reload, the stage shown when the second line
    # was appended to this page: it came live, before the task ended.
    browser.execute_script(LIVE_PROBE, "step 2/2")

    first = until(browser, lambda b: _line(b, "step 1/2"))
    assert not dashboard_stack.client.status(task_id).terminal, "the line came after the end"
    assert first.get_attribute("data-stream") == "stdout"
    assert _line(browser, "step 2/2") is None

    until(browser, lambda b: stage_of(b) == "completed", timeout=TIMEOUT + 2)
    assert browser.find_element(By.ID, "task-stage").text.strip() == "completed"
    assert browser.execute_script("return sessionStorage.getItem('live-line')") == "in_progress"
    texts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#logs .log-line")]
    steps = [t for t in texts if "step" in t]
    assert len(steps) == 2 and "step 1/2" in steps[0] and "step 2/2" in steps[1]


def _line(browser: Any, text: str) -> WebElement | None:
    for element in browser.find_elements(By.CSS_SELECTOR, "#logs .log-line"):
        if text in element.text:
            return element
    return None


def test_a_dead_letter_is_redriven_and_runs_again(dashboard_stack: Stack, browser: Any) -> None:
    # The upstream is "down" until `back`: the first attempt fails, the redriven one works.
    back = now_ms() + 2500
    task_id = dashboard_stack.client.enqueue("flaky", str(back), max_retries=0).id
    failed = ended(dashboard_stack, task_id, "failed")
    assert failed.finished_ms is not None

    browser.get(f"{dashboard_stack.url}/dlq")
    row = css(browser, f'table#dead-letters tr[data-task-id="{task_id}"]')
    assert "upstream unavailable (503)" in row.text
    time.sleep(max(0.0, (back - now_ms()) / 1000 + 0.05))  # the upstream comes back

    row.find_element(By.CSS_SELECTOR, "button.redrive").click()
    notice(browser, "redrove 1 task")
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-task-id="{task_id}"]')

    status = ended(dashboard_stack, task_id)
    assert status.started_ms is not None and status.started_ms >= failed.finished_ms
    browser.get(f"{dashboard_stack.url}/tasks/{task_id}")
    assert stage_of(browser) == "completed"
    assert '"delivered": true' in css(browser, "pre#result").text


def test_a_cron_entry_is_paused_and_resumed(dashboard_stack: Stack, browser: Any) -> None:
    entry = dashboard_stack.client.cron("echo", "0 3 * * *", {"report": "nightly"}).id
    row = f'table#cron tr[data-entry="{entry}"]'
    browser.get(f"{dashboard_stack.url}/schedules")
    assert css(browser, f"{row} td.cron-state").text.strip() == "active"

    css(browser, f"{row} button.pause").click()
    notice(browser, f"paused {entry}")
    assert css(browser, f"{row} td.cron-state").text.strip() == "paused"
    assert not browser.find_elements(By.CSS_SELECTOR, f"{row} button.pause")

    css(browser, f"{row} button.resume").click()
    notice(browser, f"resumed {entry}")
    assert css(browser, f"{row} td.cron-state").text.strip() == "active"
    assert css(browser, f"{row} button.pause")


def test_markup_from_a_task_is_shown_as_text(dashboard_stack: Stack, browser: Any) -> None:
    task_id = dashboard_stack.client.enqueue("slow_echo", XSS).id
    # Opened as the task starts, so its line reaches the page live; then served whole.
    browser.get(f"{dashboard_stack.url}/tasks/{task_id}")
    until(browser, lambda b: stage_of(b) == "completed")
    for reload in (False, True):
        if reload:
            browser.refresh()
        assert until(browser, lambda b: _line(b, XSS)).text.strip().endswith(f"stdout{XSS}")
        assert css(browser, "pre#result").text.strip() == XSS
        assert browser.execute_script("return typeof window.__pwned") == "undefined"
        assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script")


def test_a_read_only_dashboard_shows_no_actions(dashboard_stack: Stack, browser: Any) -> None:
    client = dashboard_stack.client
    dead = client.enqueue("flaky", str(now_ms() + 3_600_000), max_retries=0).id
    client.cron("echo", "30 4 * * *", {"report": "weekly"})
    waiting = client.schedule("echo", {"later": True}, delay="1h").id
    ended(dashboard_stack, dead, "failed")
    pages = ("/dlq", "/schedules", f"/tasks/{waiting}", f"/tasks/{dead}", "/tasks", "/")

    def actions() -> list[str]:
        return [s for s in ACTIONS if browser.find_elements(By.CSS_SELECTOR, s)]

    # The same pages with writes allowed have the buttons: their absence below means
    # something.
    shown: set[str] = set()
    for page in pages:
        browser.get(f"{dashboard_stack.url}{page}")
        css(browser, "h1")
        shown.update(actions())
    assert shown >= {"button.redrive", "button#redrive-all", "button#purge", "button.pause"}
    assert "button.cancel" in shown

    for page in pages:
        browser.get(f"{dashboard_stack.read_only_url}{page}")
        css(browser, "h1")
        assert actions() == [], page
        assert not browser.find_elements(By.CSS_SELECTOR, "form[method=post]"), page
        assert css(browser, "#read-only").text == "read-only"
