"""``/workers``: the worker processes from their heartbeats, alive first."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from runtime.clock import now_ms
from runtime.dashboard.app import dash
from runtime.units import human_age


def page(request: Request) -> Response:
    d = dash(request)
    workers = d.client.workers()
    now = now_ms()
    ages = {w.id: human_age((now - w.heartbeat_ms) / 1000) for w in workers}
    return d.render(
        request,
        "fleet.html",
        {
            "title": "Workers",
            "workers": workers,
            "ages": ages,
            "alive": sum(1 for w in workers if w.alive),
        },
    )


routes: list[BaseRoute] = [Route("/workers", page, methods=["GET"])]
