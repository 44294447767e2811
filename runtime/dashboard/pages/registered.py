"""``/registry``: registered tasks, what ``wasmq tasks`` shows plus capabilities and
each task's version history."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from runtime.dashboard.app import dash
from runtime.modules.registry import Registry, TaskRecord
from runtime.modules.snapshots import SnapshotInfo
from runtime.units import format_size


@dataclass
class Entry:
    record: TaskRecord
    size: str
    snapshot: str
    #: Why not snapshotted, or what a snapshot kept (its title text).
    snapshot_note: str
    #: ``HOST -> GUEST (ro)`` per directory, then the names of the environment variables
    #: (their values may be secrets: never shown).
    capabilities: list[str]
    #: (version, digest), newest first.
    versions: list[tuple[int, str]]


def _snapshot(info: SnapshotInfo | None) -> tuple[str, str]:
    if info is None:
        return "-", "no _initialize to snapshot"
    if not info.taken:
        return "no", info.reason
    kept = f"; kept state drawn from {', '.join(info.kept)}" if info.kept else ""
    note = f"initializer took {info.init_ms:.1f} ms, memory {format_size(info.memory_bytes)}"
    return ("yes*" if info.kept else "yes"), note + kept


def _capabilities(record: TaskRecord) -> list[str]:
    caps = record.capabilities
    if caps is None:
        return []
    out = [f"{host} -> {guest}{' (ro)' if ro else ''}" for host, guest, ro in caps.dirs]
    out.extend(f"env {name}" for name in sorted(caps.env))
    return out


def page(request: Request) -> Response:
    d = dash(request)
    registry = Registry(d.client.settings, d.client.redis)
    entries = []
    for record in registry.list():
        snapshot, note = _snapshot(record.snapshot)
        history = sorted(registry.versions(record.name).items(), reverse=True)
        entries.append(
            Entry(record, format_size(record.size), snapshot, note, _capabilities(record), history)
        )
    return d.render(request, "registered.html", {"title": "Registered tasks", "entries": entries})


routes: list[BaseRoute] = [Route("/registry", page, methods=["GET"])]
