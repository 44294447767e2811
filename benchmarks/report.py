"""Results of one run: a JSON file, a table on stdout and a bar chart."""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from wasmq_side import REFERENCE, SNAPSHOT_PAIR, WORKERS

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / ".results"
CHART = BENCH_DIR / "chart.png"
DISTRIBUTIONS = {"huey": "huey", "dramatiq": "dramatiq", "celery": "celery", "rq": "rq"}
#: The issue's targets for the reference entry, in the same run on the same server.
TARGET_PROCESSING = 2.5  # x the fastest peer's processing rate
TARGET_ONE_BY_ONE = 1.0  # x Huey's one-by-one enqueue rate
TARGET_IDLE_P50_MS = 0.5
TARGET_IDLE_P99_MS = 2.0
#: Go task_1 run from its snapshot over the same module as built, same run.
TARGET_SNAPSHOT = 2.0
#: The peer every one-by-one enqueue ratio is taken against.
ONE_BY_ONE_PEER = "huey"


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


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The reference wasmq entry against the peers of the same run: processing over the
    fastest peer's, one-by-one enqueue over Huey's, idle latency, server CPU per job."""
    ref = results.get(REFERENCE, {}).get("median", {})
    peers = {
        name: entry["median"]
        for name, entry in results.items()
        if entry.get("kind") == "peer" and entry.get("median", {}).get("process_rate")
    }
    out: dict[str, Any] = {"reference": REFERENCE, "workers": WORKERS}
    if peers:
        fastest = max(peers, key=lambda name: peers[name]["process_rate"])
        out["fastest_peer"] = fastest
        out["fastest_peer_rate"] = peers[fastest]["process_rate"]
        if ref.get("process_rate"):
            out["processing_ratio"] = round(ref["process_rate"] / out["fastest_peer_rate"], 2)
        if ref.get("server_cpu_per_task_us") and peers[fastest].get("server_cpu_per_task_us"):
            out["server_cpu_ratio"] = round(
                ref["server_cpu_per_task_us"] / peers[fastest]["server_cpu_per_task_us"], 2
            )
    huey = peers.get(ONE_BY_ONE_PEER, {})
    if ref.get("enqueue_rate") and huey.get("enqueue_rate"):
        out["one_by_one_peer"] = ONE_BY_ONE_PEER
        out["one_by_one_ratio"] = round(ref["enqueue_rate"] / huey["enqueue_rate"], 2)
    for key in ("latency_p50_ms", "latency_p99_ms"):
        if ref.get(key) is not None:
            out[key] = ref[key]
    snap, built = (results.get(n, {}).get("median", {}).get("process_rate") for n in SNAPSHOT_PAIR)
    if snap and built:
        out["snapshot_pair"] = list(SNAPSHOT_PAIR)
        out["snapshot_ratio"] = round(snap / built, 2)
        out["snapshot_rates"] = [snap, built]
    return out


def headline(s: dict[str, Any], cores: int | None) -> str:
    """The summary as sentences, each with its target."""

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    where = f"{s['workers']} worker processes per system, one server, {cores} cores"
    lines = [f"{s['reference']}, {where}:"]
    if "processing_ratio" in s:
        r = s["processing_ratio"]
        lines.append(
            f"  processing      {r:.2f}x the fastest peer ({s['fastest_peer']}, "
            f"{s['fastest_peer_rate']:,.0f}/s); target >= {TARGET_PROCESSING}x: "
            f"{met(r >= TARGET_PROCESSING)}"
        )
    else:
        lines.append("  processing      no ratio (the reference or every peer is missing)")
    if "one_by_one_ratio" in s:
        r = s["one_by_one_ratio"]
        lines.append(
            f"  1-by-1 enqueue  {r:.2f}x {s['one_by_one_peer']}'s; target >= "
            f"{TARGET_ONE_BY_ONE}x: {met(r >= TARGET_ONE_BY_ONE)}"
        )
    else:
        lines.append(f"  1-by-1 enqueue  no ratio ({ONE_BY_ONE_PEER} or the reference is missing)")
    if "latency_p50_ms" in s and "latency_p99_ms" in s:
        p50, p99 = s["latency_p50_ms"], s["latency_p99_ms"]
        ok = p50 <= TARGET_IDLE_P50_MS and p99 <= TARGET_IDLE_P99_MS
        lines.append(
            f"  idle latency    p50 {p50:.2f} ms, p99 {p99:.2f} ms; target <= "
            f"{TARGET_IDLE_P50_MS} / {TARGET_IDLE_P99_MS} ms: {met(ok)}"
        )
    if "server_cpu_ratio" in s:
        lines.append(f"  Valkey CPU      {s['server_cpu_ratio']:.2f}x the fastest peer's per job")
    if "snapshot_ratio" in s:
        r = s["snapshot_ratio"]
        snap, built = s["snapshot_rates"]
        lines.append(
            f"  Go snapshot     {r:.2f}x as built ({snap:,.0f} vs {built:,.0f} jobs/s, "
            f"{s['snapshot_pair'][0]}); target >= {TARGET_SNAPSHOT}x: {met(r >= TARGET_SNAPSHOT)}"
        )
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return f"{value:,.0f}" if value else "-"


def _latency(median: dict[str, float]) -> str:
    p50, p99 = median.get("latency_p50_ms"), median.get("latency_p99_ms")
    return f"{p50:.2f}/{p99:.2f}" if p50 is not None and p99 is not None else "-"


def table(results: dict[str, Any], cores: int | None) -> str:
    head = f"{'system':<23} {'process/s':>10} {'bulk enq/s':>11} {'1-by-1 enq/s':>13} "
    head += f"{'wasmq x':>8} {'Valkey us/job':>13} {'p50/p99 ms':>11}  note"
    lines = [f"jobs per second on {cores} cores (median)", head, "-" * len(head)]
    for name, entry in results.items():
        med = entry.get("median", {})
        ratio = entry.get("wasmq_ratio")
        note = entry.get("error") or entry.get("skipped") or entry.get("workers", "")
        lines.append(
            f"{name:<23} {_fmt(med.get('process_rate')):>10} "
            f"{_fmt(med.get('enqueue_bulk_rate')):>11} {_fmt(med.get('enqueue_rate')):>13} "
            f"{(f'{ratio:.2f}' if ratio else '-'):>8} "
            f"{_fmt(med.get('server_cpu_per_task_us')):>13} {_latency(med):>11}  {note}"
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


def write(results: dict[str, Any], *, tasks: int, reps: int, every_system: bool = True) -> Path:
    ratios(results)
    info = machine()
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S")
    # Only a run at full size of every system replaces the published chart.
    full = tasks >= 10_000 and reps >= 3 and every_system
    suffix = "" if full else "-quick"
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{stamp}{suffix}.json"
    headlines = summary(results)
    doc = {
        "date": stamp,
        "machine": info,
        "tasks": tasks,
        "repetitions": reps,
        "summary": headlines,
        "systems": results,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(headline(headlines, info["cores"]))
    print(table(results, info["cores"]))
    picture = CHART if full else RESULTS_DIR / f"{stamp}{suffix}.png"
    subtitle = f"{tasks:,} jobs x {reps}, {info['cores']} cores, {stamp[:10]}"
    try:
        chart(results, picture, subtitle)
    except ModuleNotFoundError:  # run outside make bench-peers' venv
        print(f"results: {out}\nchart: none (matplotlib is missing: benchmarks/requirements.txt)")
        return out
    print(f"results: {out}\nchart: {picture}")
    return out
