"""``/tasks``: tasks newest first, filtered by queue, name, stage and enqueue time, a page
at a time; an ``id`` that exists goes straight to its detail page."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from runtime.clock import now_ms
from runtime.dashboard.app import dash
from runtime.errors import WasmqError
from runtime.queue import keys
from runtime.queue.queries import TaskBrowse, TaskStatus
from runtime.queue.task import Stage, parse_time
from runtime.units import human_duration, parse_duration

#: Tasks per page.
PAGE = 50
#: Filters the form sends and the next-page link carries on.
FILTERS = ("queue", "task", "stage", "since", "until")
STAGES = tuple(s.value for s in Stage)


class BadFilter(WasmqError):
    """A filter value the list cannot use (the page shows the form again with it)."""


def parse_when(name: str, text: str, now: int) -> int | None:
    """``since``/``until``: a UTC time (``2024-05-01T10:00``, RFC3339) or a duration ago
    (``90s``, ``1h``); ms since the epoch, or None when empty."""
    text = text.strip()
    if not text:
        return None
    try:
        return now - int(parse_duration(text) * 1000)
    except ValueError:
        pass
    try:
        return parse_time(text)
    except ValueError:
        raise BadFilter(
            f"{name} {text!r} is neither a time (2024-05-01T10:00, UTC) nor a duration ago"
            " (15m, 1h): give one of those"
        ) from None


def outcome(st: TaskStatus) -> str:
    """The list's last column: how long it took, or how it ended."""
    if st.stage == Stage.COMPLETED:
        return human_duration(None if st.duration_ms is None else st.duration_ms / 1000)
    if st.error_label:
        return st.error_label
    return "-"


def task_list(request: Request) -> Response:
    d = dash(request)
    params = request.query_params
    wanted = params.get("id", "").strip()
    if wanted:
        if d.client.redis.exists(keys.task(wanted), keys.flow(wanted)):
            return RedirectResponse(f"{_root(request)}/tasks/{quote(wanted, safe='')}", 303)
        return d.done(request, "/tasks", f"no task {wanted}")
    values = {name: params.get(name, "").strip() for name in FILTERS}
    error = None
    found = TaskBrowse([], None, 0, False)
    try:
        now = now_ms()
        if values["stage"] and values["stage"] not in STAGES:
            raise BadFilter(
                f"stage {values['stage']!r} is not a stage: use one of {', '.join(STAGES)}"
            )
        found = d.client.browse(
            queue=values["queue"] or None,
            task=values["task"] or None,
            stage=values["stage"] or None,
            since_ms=parse_when("since", values["since"], now),
            until_ms=parse_when("until", values["until"], now),
            cursor=params.get("cursor") or None,
            limit=PAGE,
        )
    except WasmqError as exc:
        error = str(exc)
    next_url = None
    if found.next_cursor:
        carried = [(k, v) for k, v in values.items() if v]
        next_url = "/tasks?" + urlencode([*carried, ("cursor", found.next_cursor)])
    return d.render(
        request,
        "task_list.html",
        {
            "title": "Tasks",
            "values": values,
            "stages": STAGES,
            "queues": d.client.queues(),
            "tasks": found.tasks,
            "outcome": outcome,
            "next_url": next_url,
            "first_page": not params.get("cursor"),
            "budget_spent": found.budget_spent,
            "error": error,
        },
        400 if error else 200,
    )


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


routes: list[BaseRoute] = [Route("/tasks", task_list, methods=["GET"])]
