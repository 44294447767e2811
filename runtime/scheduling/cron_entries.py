"""Managing cron entries: next runs, listing, pause, resume, removal.

A cron entry is a task hash with ``task_kind`` 2 (``cron_expr``, ``cron_tz``,
``next_run_at``) kept in ``task_set:scheduled`` at its next due time (scored in Unix
seconds); a paused entry leaves that set (stage ``paused``) and is remembered in
``wasmq:cron:paused``. ``compat`` (``settings.reference_compat``) writes the stages as
the reference reads them.
Removing an entry keeps the runs it already created. See :mod:`runtime.scheduling.scheduler`
for the missed-run and overlap policies.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from runtime.clock import now_ms
from runtime.errors import CronEntryNotFound, InvalidTask
from runtime.queue import keys, scripts
from runtime.queue.scripts import Scripts
from runtime.queue.slots import scopes
from runtime.queue.task import (
    TERMINAL_STAGES,
    Stage,
    format_time,
    parse_optional_time,
    score_to_ms,
    stage_of,
)
from runtime.scheduling.cron_expr import CronSchedule


def next_run(expr: str, tz: str = "UTC", now: int | None = None) -> int:
    """First firing of ``expr`` after ``now`` (ms); raises :class:`InvalidTask` when invalid.

    The enqueue side calls it to validate ``--cron``/``--tz`` and to place a new entry.
    """
    return CronSchedule.parse(expr, tz or "UTC").next_after(now_ms() if now is None else now)


@dataclass
class CronEntry:
    """One cron entry as ``wasmq cron list`` shows it."""

    id: str
    task_name: str
    expr: str
    tz: str
    queue: str
    paused: bool
    next_runs: list[int] = field(default_factory=list)
    last_run_id: str = ""
    last_run_stage: str = ""
    run_count: int = 0
    skipped_runs: int = 0
    missed_runs: int = 0
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        """Next runs as epoch ms (``next_runs_ms``); absent text is null."""
        out = asdict(self)
        out["next_runs_ms"] = out.pop("next_runs")
        for name in ("last_run_id", "last_run_stage", "error"):
            out[name] = out[name] or None
        return out


def _text(value: bytes | None) -> str:
    return value.decode(errors="replace") if value else ""


def _int(value: bytes | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _candidate_ids(client: redis.Redis) -> Iterator[str]:
    """Every id that may be a cron entry: scheduled-set members and paused entries."""
    seen: set[str] = set()
    for queue in scopes(client):
        for member, _score in client.zscan_iter(keys.scheduled(queue), count=500):
            entry = _text(member)
            if entry not in seen:
                seen.add(entry)
                yield entry
        for member in client.sscan_iter(keys.cron_paused(queue), count=500):
            entry = _text(member)
            if entry not in seen:
                seen.add(entry)
                yield entry


def list_entries(client: redis.Redis, now: int | None = None, runs: int = 3) -> list[CronEntry]:
    """Every cron entry with its next ``runs`` due times, sorted by id."""
    current = now_ms() if now is None else now
    ids = list(_candidate_ids(client))
    fields = (
        "task_kind",
        "task_name",
        "cron_expr",
        "cron_tz",
        "queue",
        "task_stage",
        "next_run_at",
        "run_count",
        "skipped_runs",
        "missed_runs",
        "error",
        "wasmq_stage",
    )
    entries: list[CronEntry] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        pipe = client.pipeline(transaction=False)
        for entry in chunk:
            pipe.hmget(keys.task(entry), fields)
            pipe.zscore(keys.scheduled(keys.id_tag(entry)), entry)
            pipe.hget(keys.cron_last_run(keys.id_tag(entry)), entry)
        replies = pipe.execute(raise_on_error=False)
        for i, entry in enumerate(chunk):
            values, score, last = replies[3 * i : 3 * i + 3]
            if not isinstance(values, list) or values[0] != b"2":
                continue
            if stage_of(_text(values[5]), _text(values[11])) in TERMINAL_STAGES:
                continue  # cancelled through `wasmq cancel`
            entries.append(
                _entry(entry, dict(zip(fields, values, strict=True)), score, last, current, runs)
            )
    last_ids = [e.last_run_id for e in entries if e.last_run_id]
    if last_ids:
        pipe = client.pipeline(transaction=False)
        for run in last_ids:
            pipe.hmget(keys.task(run), ["task_stage", "wasmq_stage"])
        stages = dict(zip(last_ids, pipe.execute(), strict=True))
        for e in entries:
            if e.last_run_id:
                coarse, fine = stages[e.last_run_id]
                e.last_run_stage = stage_of(_text(coarse), _text(fine)) or "gone"
    return sorted(entries, key=lambda e: e.id)


def _entry(
    entry: str,
    h: dict[str, Any],
    score: Any,
    last: bytes | None,
    now: int,
    runs: int,
) -> CronEntry:
    expr, tz = _text(h["cron_expr"]), _text(h["cron_tz"]) or "UTC"
    paused = stage_of(_text(h["task_stage"]), _text(h["wasmq_stage"])) == Stage.PAUSED
    out = CronEntry(
        id=entry,
        task_name=_text(h["task_name"]),
        expr=expr,
        tz=tz,
        queue=_text(h["queue"]) or keys.DEFAULT_QUEUE,
        paused=paused,
        last_run_id=_text(last),
        run_count=_int(h["run_count"]),
        skipped_runs=_int(h["skipped_runs"]),
        missed_runs=_int(h["missed_runs"]),
        error=_text(h["error"]),
    )
    if paused:
        return out
    try:
        schedule = CronSchedule.parse(expr, tz)
    except InvalidTask as exc:
        out.error = out.error or str(exc)
        return out
    # The stored score is the truth for the first run; the rest follow the schedule.
    first = score_to_ms(float(score)) if score is not None else None
    if first is None:
        text = _text(h["next_run_at"])
        first = (parse_optional_time(text) if text else None) or schedule.next_after(now)
    out.next_runs = [first, *schedule.upcoming(max(first, now), runs - 1)] if runs > 0 else []
    return out


def _result(code: int, entry: str) -> None:
    if code == -1:
        raise CronEntryNotFound(entry)
    if code == -2:
        raise InvalidTask(f"task {entry} is not a cron entry: use `wasmq cancel` for other tasks")


def remove(client: redis.Redis, entry: str) -> None:
    """Delete a cron entry (its past runs stay); raises CronEntryNotFound / InvalidTask."""
    code = int(Scripts(client).run(scripts.cron_remove(entry=entry)))
    _result(code, entry)


def pause(client: redis.Redis, entry: str, now: int | None = None, *, compat: bool = False) -> bool:
    """Pause an entry; ``False`` when it was paused already."""
    current = now_ms() if now is None else now
    code = int(
        Scripts(client, compat).run(
            scripts.cron_pause(entry=entry, now_text=format_time(current), reason="")
        )
    )
    _result(code, entry)
    return code == 1


def resume(
    client: redis.Redis, entry: str, now: int | None = None, *, compat: bool = False
) -> int | None:
    """Resume a paused entry at its next tick after ``now``; returns that tick (ms),
    or ``None`` when the entry was not paused."""
    current = now_ms() if now is None else now
    raw = client.hmget(keys.task(entry), ["task_kind", "cron_expr", "cron_tz"])
    if raw[0] is None and raw[1] is None:
        raise CronEntryNotFound(entry)
    if raw[0] != b"2":
        _result(-2, entry)
    nxt = next_run(_text(raw[1]), _text(raw[2]) or "UTC", current)
    code = int(
        Scripts(client, compat).run(
            scripts.cron_resume(
                entry=entry, next_ms=nxt, next_text=format_time(nxt), now_text=format_time(current)
            )
        )
    )
    _result(code, entry)
    return nxt if code == 1 else None
