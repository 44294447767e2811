"""The dashboard's Starlette app: page modules' routes, templates, the guard, /metrics.

Page modules (:mod:`runtime.dashboard.pages`) each expose ``routes``. Their handlers are
plain functions where they only read (Starlette runs those in its thread pool, so the
blocking Redis client is fine) and ``async`` where they read a form or stream.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from runtime.dashboard.config import DashboardConfig
from runtime.dashboard.security import CSRF_FIELD, Guard, GuardMiddleware, Refused
from runtime.errors import WasmqError
from runtime.queue.task import format_time

HERE = Path(__file__).parent
#: Page modules under runtime.dashboard.pages, in navigation order.
PAGE_MODULES = (
    "home",
    "task_list",
    "task_detail",
    "dead_letters",
    "schedules",
    "fleet",
    "registered",
    "metrics_page",
)
#: Navigation: (path, label).
NAV = (
    ("/", "Queues"),
    ("/tasks", "Tasks"),
    ("/dlq", "Dead letters"),
    ("/schedules", "Cron & scheduled"),
    ("/workers", "Workers"),
    ("/registry", "Registered tasks"),
)


class Dash:
    """What every page handler reaches through ``dash(request)``."""

    def __init__(self, client: Any, config: DashboardConfig) -> None:
        #: A :class:`runtime.client.Client` (thread-safe: one connection pool).
        self.client = client
        self.config = config
        self.guard = Guard(config)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.globals["nav"] = NAV
        env.filters["when"] = _when
        env.filters["pretty_json"] = pretty_json

    @property
    def read_only(self) -> bool:
        return self.config.read_only

    def render(
        self, request: Request, template: str, context: Mapping[str, Any], status: int = 200
    ) -> HTMLResponse:
        ctx = {
            "read_only": self.read_only,
            "csrf_field": CSRF_FIELD,
            "csrf_token": self.guard.csrf_token(),
            "root": request.scope.get("root_path", ""),
            "path": request.url.path,
            **context,
        }
        return self.templates.TemplateResponse(request, template, ctx, status_code=status)

    async def action(self, request: Request) -> FormData:
        """The checked form of a POST (raises :class:`Refused`: the app answers it)."""
        return await self.guard.action_form(request)

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a blocking client call from an async handler."""
        return await run_in_threadpool(fn, *args, **kwargs)

    def done(self, request: Request, target: str, message: str) -> Response:
        """After an action: back to ``target`` with a one-line notice."""
        from urllib.parse import quote

        sep = "&" if "?" in target else "?"
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}{target}{sep}notice={quote(message)}", status_code=303)


def dash(request: Request) -> Dash:
    state = request.app.state.dash
    assert isinstance(state, Dash)
    return state


def create_app(client: Any, config: DashboardConfig | None = None) -> Starlette:
    config = config or DashboardConfig()
    state = Dash(client, config)
    routes: list[BaseRoute] = []
    for name in PAGE_MODULES:
        module = importlib.import_module(f"runtime.dashboard.pages.{name}")
        routes.extend(module.routes)
    routes.append(Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"))

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return state.render(
            request, "error.html", {"title": "Refused", "message": exc.reason}, exc.status
        )

    async def failed(request: Request, exc: Exception) -> Response:
        return state.render(request, "error.html", {"title": "Error", "message": str(exc)}, 400)

    app = Starlette(
        routes=routes,
        middleware=[Middleware(GuardMiddleware, guard=state.guard)],
        exception_handlers={Refused: refused, WasmqError: failed},
    )
    app.state.dash = state
    return app


def _when(ms: int | None) -> str:
    return format_time(ms) if ms else "-"


def pretty_json(raw: bytes | str, cap: int = 64 * 1024) -> tuple[str, bool, bool]:
    """(text, is_json, truncated) of a result: indented when it parses as JSON."""
    data = raw.encode() if isinstance(raw, str) else raw
    truncated = len(data) > cap
    try:
        text = json.dumps(json.loads(data), indent=2, ensure_ascii=False) if not truncated else ""
        if text:
            return (text[:cap], True, len(text) > cap)
    except (ValueError, UnicodeDecodeError):
        pass
    return (data[:cap].decode("utf-8", "replace"), False, truncated)
