"""``/``: every queue's depth by stage, recent completions and failures, and a chart of both.

Nothing here writes on the hot path. Completions come from the per-second hash the ack
script keeps (``wasmq:throughput:<queue>``, the last :data:`keys.THROUGHPUT_WINDOW`
seconds); failures from the ``finished_ms`` of the newest dead letters, of which at most
:data:`FAILURE_SAMPLE` per queue are read, so a burst of more failures than that within
the window is drawn short (and says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from runtime.clock import now_ms
from runtime.dashboard.app import dash
from runtime.queue import keys
from runtime.queue.queries import QueueStats
from runtime.units import human_duration

#: Seconds one bar of the chart spans.
BUCKET = 10
#: Bars in the chart: the throughput hash's whole window.
BUCKETS = keys.THROUGHPUT_WINDOW // BUCKET
#: Newest dead letters per queue whose times are read for the failure series.
FAILURE_SAMPLE = 200
#: Seconds between the page's own reloads (dashboard.js reads ``data-refresh``).
REFRESH = 5

# Chart geometry, in SVG user units.
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 480, 140, 36, 18, 8


@dataclass
class Series:
    """Completions and failures per :data:`BUCKET` seconds, oldest bucket first."""

    completed: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    failed: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    #: Whether some queue had :data:`FAILURE_SAMPLE` dead letters in the window or more.
    failures_capped: bool = False

    def add(self, other: Series) -> None:
        self.completed = [a + b for a, b in zip(self.completed, other.completed, strict=True)]
        self.failed = [a + b for a, b in zip(self.failed, other.failed, strict=True)]
        self.failures_capped = self.failures_capped or other.failures_capped


@dataclass
class Row:
    stats: QueueStats
    series: Series

    @property
    def failed_window(self) -> int:
        return sum(self.series.failed)

    @property
    def failure_rate(self) -> str:
        """Failed of the tasks that ended in the window, as a percentage."""
        ended = sum(self.series.completed) + self.failed_window
        return f"{100 * self.failed_window / ended:.0f}%" if ended else "-"

    @property
    def oldest_wait(self) -> str:
        age = self.stats.oldest_pending_age_ms
        return human_duration(None if age is None else age / 1000)


def series(client: Any, names: list[str], now: int) -> dict[str, Series]:
    """The chart's data for each queue in ``names`` (two pipelined round trips)."""
    redis = client.redis
    now_s = now // 1000
    start = now_s - BUCKETS * BUCKET + 1
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(keys.throughput(name))
        pipe.lrange(keys.dlq(name), 0, FAILURE_SAMPLE - 1)
    replies = pipe.execute()
    out: dict[str, Series] = {}
    dead: list[tuple[str, bytes]] = []
    for i, name in enumerate(names):
        row = out[name] = Series()
        for second_raw, count_raw in replies[2 * i].items():
            try:
                second, count = int(second_raw), int(count_raw)
            except ValueError:
                continue
            if start <= second <= now_s:
                row.completed[(second - start) // BUCKET] += count
        ids = replies[2 * i + 1]
        dead.extend((name, task_id) for task_id in ids)
    if dead:
        pipe = redis.pipeline(transaction=False)
        for _, task_id in dead:
            pipe.hget(keys.task(task_id.decode()), "finished_ms")
        in_window: dict[str, int] = {}
        for (name, _), raw in zip(dead, pipe.execute(), strict=True):
            try:
                second = int(raw) // 1000 if raw else 0
            except ValueError:
                continue
            if start <= second <= now_s:
                out[name].failed[(second - start) // BUCKET] += 1
                in_window[name] = in_window.get(name, 0) + 1
        for name, count in in_window.items():
            out[name].failures_capped = count >= FAILURE_SAMPLE
    return out


@dataclass
class Bar:
    x: float
    width: float
    ok_y: float
    ok_h: float
    bad_y: float
    bad_h: float
    title: str


@dataclass
class Chart:
    """What ``home.html`` draws: stacked bars (completed below, failed on top)."""

    width: int
    height: int
    bars: list[Bar]
    peak: int
    base_y: float
    left: int
    ticks: list[tuple[float, str]]


def chart(total: Series) -> Chart:
    sums = [c + f for c, f in zip(total.completed, total.failed, strict=True)]
    peak = max([*sums, 1])
    plot_w = WIDTH - PAD_LEFT - 4
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / BUCKETS
    base = HEIGHT - PAD_BOTTOM
    bars = []
    for i, (ok, bad) in enumerate(zip(total.completed, total.failed, strict=True)):
        ok_h = plot_h * ok / peak
        bad_h = plot_h * bad / peak
        ago = (BUCKETS - i) * BUCKET
        bars.append(
            Bar(
                x=round(PAD_LEFT + i * step + 1, 1),
                width=round(step - 2, 1),
                ok_y=round(base - ok_h, 1),
                ok_h=round(ok_h, 1),
                bad_y=round(base - ok_h - bad_h, 1),
                bad_h=round(bad_h, 1),
                title=f"{ago - BUCKET}-{ago} s ago: {ok} completed, {bad} failed",
            )
        )
    ticks = [
        (round(PAD_LEFT + i * step, 1), f"-{(BUCKETS - i) * BUCKET}s") for i in range(0, BUCKETS, 3)
    ]
    ticks.append((PAD_LEFT + plot_w, "now"))
    return Chart(WIDTH, HEIGHT, bars, peak, base, PAD_LEFT, ticks)


def home(request: Request) -> Response:
    d = dash(request)
    report = d.client.stats_report()
    names = [q.queue for q in report.queues]
    per_queue = series(d.client, names, now_ms())
    total = Series()
    rows = []
    for stats in report.queues:
        rows.append(Row(stats, per_queue[stats.queue]))
        total.add(per_queue[stats.queue])
    return d.render(
        request,
        "home.html",
        {
            "title": "Queues",
            "rows": rows,
            "report": report,
            "chart": chart(total),
            "total": total,
            "window": BUCKETS * BUCKET,
            "refresh": REFRESH,
            "failure_sample": FAILURE_SAMPLE,
        },
    )


routes: list[BaseRoute] = [Route("/", home, methods=["GET"])]
