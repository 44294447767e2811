"""Results of one run: a JSON file, a table on stdout and a bar chart."""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from wasmq_side import REFERENCE

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / ".results"
CHART = BENCH_DIR / "chart.png"
DISTRIBUTIONS = {"huey": "huey", "dramatiq": "dramatiq", "celery": "celery", "rq": "rq"}


def version_of(name: str) -> str:
    try:
        return metadata.version(DISTRIBUTIONS.get(name, name))
    except metadata.PackageNotFoundError:
        return "?"


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "redis_py": version_of("redis"),
        "hiredis": version_of("hiredis"),
    }


def ratios(results: dict[str, Any]) -> None:
    """Processing rate of the reference wasmq entry over each system's."""
    ref = results.get(REFERENCE, {}).get("median", {}).get("process_rate")
    for entry in results.values():
        rate = entry.get("median", {}).get("process_rate")
        entry["wasmq_ratio"] = round(ref / rate, 2) if ref and rate else None


def _fmt(value: float | None) -> str:
    return f"{value:,.0f}" if value else "-"


def _latency(median: dict[str, float]) -> str:
    p50, p99 = median.get("latency_p50_ms"), median.get("latency_p99_ms")
    return f"{p50:.2f}/{p99:.2f}" if p50 is not None and p99 is not None else "-"


def table(results: dict[str, Any], cores: int | None) -> str:
    head = f"{'system':<17} {'process/s':>10} {'bulk enq/s':>11} {'1-by-1 enq/s':>13} "
    head += f"{'wasmq x':>8} {'p50/p99 ms':>11}  note"
    lines = [f"jobs per second on {cores} cores (median)", head, "-" * len(head)]
    for name, entry in results.items():
        med = entry.get("median", {})
        ratio = entry.get("wasmq_ratio")
        note = entry.get("error") or entry.get("skipped") or entry.get("workers", "")
        lines.append(
            f"{name:<17} {_fmt(med.get('process_rate')):>10} "
            f"{_fmt(med.get('enqueue_bulk_rate')):>11} {_fmt(med.get('enqueue_rate')):>13} "
            f"{(f'{ratio:.2f}' if ratio else '-'):>8} {_latency(med):>11}  {note}"
        )
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(n, e["median"]) for n, e in results.items() if e.get("median", {}).get("process_rate")]
    if not rows:
        return
    rows.sort(key=lambda row: row[1]["process_rate"], reverse=True)
    names = [n for n, _ in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    colors = ["tab:orange" if n.startswith("wasmq") else "tab:blue" for n in names]
    bars = left.bar(names, [m["process_rate"] for _, m in rows], color=colors)
    left.bar_label(bars, fmt="{:,.0f}", fontsize=8)
    left.set_title("Processing rate (jobs/s, higher is better)")
    width = 0.4
    xs = range(len(names))
    for offset, key, label in (
        (-width / 2, "enqueue_bulk_rate", "bulk"),
        (width / 2, "enqueue_rate", "one by one"),
    ):
        right.bar([x + offset for x in xs], [m.get(key, 0) for _, m in rows], width, label=label)
    right.set_xticks(list(xs), names)
    right.set_title("Enqueue rate (jobs/s)")
    right.legend()
    for axis in (left, right):
        axis.tick_params(axis="x", rotation=30)
        axis.grid(axis="y", alpha=0.3)
    fig.suptitle(subtitle)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict[str, Any], *, tasks: int, reps: int) -> Path:
    ratios(results)
    info = machine()
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S")
    # Only a run at full size replaces the published chart.
    full = tasks >= 10_000 and reps >= 3
    suffix = "" if full else "-quick"
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{stamp}{suffix}.json"
    doc = {"date": stamp, "machine": info, "tasks": tasks, "repetitions": reps, "systems": results}
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(table(results, info["cores"]))
    picture = CHART if full else RESULTS_DIR / f"{stamp}{suffix}.png"
    subtitle = f"{tasks:,} jobs x {reps}, {info['cores']} cores, {stamp[:10]}"
    chart(results, picture, subtitle)
    print(f"results: {out}\nchart: {picture}")
    return out
