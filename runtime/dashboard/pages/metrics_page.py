"""``/metrics``: cluster-wide gauges read from Redis at each scrape, in Prometheus text.

What workers did (task counts and durations) is served by each pool's supervisor
(``wasmq worker --metrics-port``); this endpoint holds what is shared: queue depths,
oldest waits, dead letters and live workers (:class:`runtime.telemetry.metrics.ClusterCollector`).
"""

from __future__ import annotations

import redis
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from runtime.dashboard.app import dash
from runtime.errors import ConnectionFailed
from runtime.telemetry.metrics import render_cluster


def metrics(request: Request) -> Response:
    try:
        body = render_cluster(dash(request).client)
    except (redis.RedisError, ConnectionFailed) as exc:
        # A failed scrape (up == 0) rather than gauges that read as an empty cluster.
        return PlainTextResponse(f"cannot read Redis: {exc}", status_code=503)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes: list[BaseRoute] = [Route("/metrics", metrics, methods=["GET"])]
