"""The Lua scripts in ``runtime/queue/lua``, so every multi-key change is one atomic call.

:class:`Script` lists them; one typed function per script (``ack``, ``claim``, ...)
builds a :class:`Call` with its ``KEYS`` and ``ARGV`` in the order the script's header
comment gives, and :class:`Scripts` runs calls. Each script is registered after a
prelude: the key constants of :mod:`runtime.queue.keys`, written as Lua by
:func:`prelude`, and the shared helpers of ``lua/prelude.lua``, so key names are
spelled in keys.py only. Scripts are invoked by EVALSHA of that combined text
(redis-py loads it again after a server restart).

The prelude also holds ``COMPAT``, whether the scripts write what the reference's Go
workers read (``WASMQ_REFERENCE_COMPAT``): each mode is its own registered text, so a
call carries no flag and both modes can share one server.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script as RedisScript
from redis.typing import EncodableT, KeyT

from runtime.errors import InvalidTask
from runtime.queue import keys


class Script(enum.Enum):
    """Every script, by its file name in ``lua/``."""

    ACK = "ack"
    CANCEL = "cancel"
    CLAIM = "claim"
    CRON_FIRE = "cron_fire"
    CRON_PAUSE = "cron_pause"
    CRON_REMOVE = "cron_remove"
    CRON_RESUME = "cron_resume"
    DLQ_PURGE = "dlq_purge"
    DLQ_REDRIVE = "dlq_redrive"
    ENQUEUE = "enqueue"
    FLOW_CANCEL = "flow_cancel"
    FLOW_CREATE = "flow_create"
    FLOW_STATUS = "flow_status"
    NACK = "nack"
    PROGRESS = "progress"
    PROMOTE = "promote"
    PRUNE_MODULES = "prune_modules"
    REAP = "reap"
    RECOVER = "recover"
    REGISTER = "register"
    RELEASE = "release"
    UNREGISTER = "unregister"


#: The file of shared helpers every script is registered after (not a script).
PRELUDE = "prelude"

#: The keys.py constants the scripts use, as Lua locals of the same names. Keys a script
#: is given through KEYS are not here, so no script can reach them another way.
LUA_CONSTANTS: dict[str, str | int] = {
    "DEFAULT_QUEUE": keys.DEFAULT_QUEUE,
    "QUEUE_PREFIX": keys.QUEUE_PREFIX,
    "TASK_PREFIX": keys.TASK_PREFIX,
    "PAYLOAD_PREFIX": keys.PAYLOAD_PREFIX,
    "RESULT_PREFIX": keys.RESULT_PREFIX,
    "LOGS_PREFIX": keys.LOGS_PREFIX,
    "DONE_CHANNEL_PREFIX": keys.DONE_CHANNEL_PREFIX,
    "WAKE_PREFIX": keys.WAKE_PREFIX,
    "WORKER_WAKE_PREFIX": keys.WORKER_WAKE_PREFIX,
    "THROUGHPUT_WINDOW": keys.THROUGHPUT_WINDOW,
    "DEFAULT_PRIORITY": keys.DEFAULT_PRIORITY,
    # Workflows
    "FLOW_PREFIX": keys.FLOW_PREFIX,
    "FLOW_MEMBERS_PREFIX": keys.FLOW_MEMBERS_PREFIX,
    "FLOW_DATA_PREFIX": keys.FLOW_DATA_PREFIX,
    "FLOW_INLINE_MAX": keys.FLOW_INLINE_MAX,
    "CANCEL_CHANNEL": keys.CANCEL_CHANNEL,
    # Unique tasks and cancel
    "UNIQUE_PREFIX": keys.UNIQUE_PREFIX,
    # Rate and concurrency limits
    "LIMITS": keys.LIMITS,
    "LIMIT_RUNNING_PREFIX": keys.LIMIT_RUNNING_PREFIX,
    "LIMIT_RATE_PREFIX": keys.LIMIT_RATE_PREFIX,
    "LIMIT_WAITING_PREFIX": keys.LIMIT_WAITING_PREFIX,
    "LIMIT_DUE": keys.LIMIT_DUE,
    # Task index
    "INDEX_QUEUE_PREFIX": keys.INDEX_QUEUE_PREFIX,
    "INDEX_NAME_PREFIX": keys.INDEX_NAME_PREFIX,
}

#: Constants that name a key the reference layout shares between queues and the tagged
#: layout keeps per queue: there they are built in Lua from the hash tag of the call's
#: KEYS[1] (``SLOT``), which is the tag of the queue the call is about, since every key
#: of a cluster call must be in one slot. ``True``: a prefix (``<prefix>{q}:<rest>``, as
#: keys._in_queue); ``False``: a key (``<key>:{q}``, as keys._per_queue).
_SLOT_SCOPED: dict[str, bool] = {
    "WORKER_WAKE_PREFIX": True,
    "UNIQUE_PREFIX": True,
    "LIMITS": False,
    "LIMIT_RUNNING_PREFIX": True,
    "LIMIT_RATE_PREFIX": True,
    "LIMIT_WAITING_PREFIX": True,
    "LIMIT_DUE": False,
    "INDEX_NAME_PREFIX": True,
}

#: Per-queue keys of claim.lua and recover.lua, in their scripts' order.
_CLAIM_PARTS = (keys.pending, keys.processing, keys.wake, keys.idle)
_RECOVER_PARTS = (keys.processing, keys.pending, keys.dlq, keys.wake)


@cache
def source(name: str) -> str:
    return resources.files("runtime.queue").joinpath("lua").joinpath(f"{name}.lua").read_text()


def _lua_value(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"key constant {value!r} is not printable ASCII")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _lua_constant(name: str, value: str | int, layout: str) -> str:
    text = _lua_value(value)
    if layout == "tagged" and name in _SLOT_SCOPED:
        return f"{text} .. SLOT .. ':'" if _SLOT_SCOPED[name] else f"{text} .. ':' .. SLOT"
    return text


@cache
def prelude(layout: str = "reference", compat: bool = False) -> str:
    """Lua source every script runs after: the key constants of ``layout`` and the
    ``COMPAT`` flag of reference compat mode, then ``lua/prelude.lua``."""
    tagged = layout == "tagged"
    lines = [f"-- Generated from runtime/queue/keys.py by scripts.prelude({layout!r}, {compat})."]
    if tagged:
        lines.append("local SLOT = string.match(KEYS[1] or '', '{[^}]*}') or ''")
    lines += [
        f"local {name} = {_lua_constant(name, value, layout)}"
        for name, value in LUA_CONSTANTS.items()
    ]
    # queue_scoped() in lua/prelude.lua: a queue name inside these is a hash tag.
    lines.append(f"local TAG_OPEN = {_lua_value('{' if tagged else '')}")
    lines.append(f"local TAG_CLOSE = {_lua_value('}' if tagged else '')}")
    lines.append(f"local COMPAT = {'true' if compat else 'false'}")
    parts = ", ".join(f"{part} = true" for part in keys.STAGES)
    lines.append(f"local QUEUE_PARTS = {{{parts}}}")
    levels = ", ".join(_lua_value(level) for level in keys.PRIORITIES)
    lines.append(f"local PRIORITIES = {{{levels}}}")
    named = ", ".join(f"{level} = true" for level in keys.PRIORITIES)
    lines.append(f"local PRIORITY_LEVEL = {{{named}}}")
    return "\n".join(lines) + "\n" + source(PRELUDE)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMENT = re.compile(r"--[^\n]*")


def _names(lua: str) -> set[str]:
    return set(_IDENTIFIER.findall(_COMMENT.sub("", lua)))


@cache
def _definitions(layout: str = "reference", compat: bool = False) -> tuple[tuple[str, str], ...]:
    """The prelude cut at each top-level ``local``: (name defined, its text), in order."""
    chunks: list[tuple[str, str]] = []
    for line in prelude(layout, compat).splitlines(keepends=True):
        if line.startswith("local "):
            words = line.split()
            name = words[2] if words[1] == "function" else words[1]
            chunks.append((name.split("(")[0], line))
        elif chunks:
            chunks[-1] = (chunks[-1][0], chunks[-1][1] + line)
    return tuple(chunks)


@cache
def text(script: Script, layout: str = "reference", compat: bool = False) -> str:
    """What is registered for ``script``: the prelude definitions it uses (directly or
    through another definition), then the script itself. Lua runs a script's top level
    on every call, so a helper it never calls would cost each call a closure.
    ``layout``: the key layout (:func:`keys.layout`); ``compat``: the text of reference
    compat mode (see the module docstring). Cached per script, layout and mode."""
    body = source(script.value)
    definitions = _definitions(layout, compat)
    wanted = _names(body)
    used = [False] * len(definitions)
    # Definitions only use earlier ones, so one pass from the last backwards is closed.
    for i in range(len(definitions) - 1, -1, -1):
        name, chunk = definitions[i]
        if name in wanted:
            used[i] = True
            wanted |= _names(chunk)
    kept = "".join(chunk for (_, chunk), keep in zip(definitions, used, strict=True) if keep)
    return "-- The prelude definitions this script uses (scripts.text()).\n" + kept + body


@dataclass(frozen=True)
class Call:
    """One script call: the script, its ``KEYS`` and its ``ARGV``."""

    script: Script
    keys: list[KeyT]
    args: list[EncodableT] = field(default_factory=list)


class Scripts:
    """Runs :class:`Call` objects; each script is registered once per client.
    ``compat`` runs the reference compat mode's texts (``settings.reference_compat``)."""

    def __init__(self, client: redis.Redis, compat: bool = False) -> None:
        self._client = client
        self.compat = compat
        self._loaded: dict[Script, RedisScript] = {}

    def loaded(self, script: Script) -> RedisScript:
        registered = self._loaded.get(script)
        if registered is None:
            registered = self._client.register_script(text(script, keys.layout(), self.compat))
            self._loaded[script] = registered
        return registered

    def run(self, call: Call) -> Any:
        return self.loaded(call.script)(keys=call.keys, args=call.args)


def _task_key(task_id: str | bytes) -> KeyT:
    # The scheduler holds entry ids as the bytes it read, which may not be UTF-8.
    if isinstance(task_id, bytes):
        return keys.TASK_PREFIX.encode() + task_id
    return keys.task(task_id)


def _queue_of(task_id: str | bytes) -> str | None:
    """The queue a tagged id (``{q}...``) belongs to: its scripts' shared keys are that
    queue's (None: the reference layout's, which ignores it)."""
    if isinstance(task_id, bytes):
        task_id = task_id.decode("utf-8", "replace")
    found = keys.id_tag(task_id)
    if found is None and keys.tagged():
        # Every id made on a cluster starts with its queue's tag: this one names nothing.
        raise InvalidTask(
            f"id {task_id!r} has no {{queue}} prefix; on a Redis Cluster give the whole id"
            " as enqueue printed it (it starts with its queue's hash tag)"
        )
    return found


def _one_queue(queues: Sequence[str]) -> str | None:
    if keys.tagged() and len(queues) != 1:
        raise ValueError("in the tagged layout a claim or recover call takes one queue")
    return queues[0] if queues else None


# -- producing -------------------------------------------------------------------------


def enqueue(
    *,
    task_id: str,
    task_name: str,
    queue: str,
    due_ms: int | None,
    payload: str | bytes,
    payload_apart: bool,
    fields_json: str,
    now: int,
    idle_live_ms: int,
    priority: str = keys.DEFAULT_PRIORITY,
) -> Call:
    """``enqueue.lua``; ``due_ms`` None pushes to the pending list of ``priority`` now,
    and ``payload_apart`` says the caller SETs the payload at ``keys.payload(task_id)``
    in the same MULTI."""
    call_keys: list[KeyT] = [
        keys.task(task_id),
        keys.pending_at(queue, priority),
        keys.scheduled(queue),
        keys.registry_mirror(queue),
        keys.queue_names(queue),
        keys.scheduler_wake(queue),
        keys.wake(queue),
        keys.payload(task_id),
        keys.idle(queue),
    ]
    args: list[EncodableT] = [
        task_id,
        task_name,
        queue,
        "" if due_ms is None else str(due_ms),
        "1" if payload_apart else "",
        b"" if payload_apart else payload,
        fields_json,
        now,
        idle_live_ms,
    ]
    return Call(Script.ENQUEUE, call_keys, args)


# -- consuming -------------------------------------------------------------------------


def claim(
    *,
    queues: Sequence[str],
    worker_id: str,
    now: int,
    now_text: str,
    count: int,
    grace_ms: int,
    default_timeout_ms: int,
    max_timeout_ms: int,
    fields: Sequence[str],
) -> Call:
    """``claim.lua`` over ``queues`` in priority order (one queue in the tagged layout);
    ``fields`` are returned per task."""
    call_keys: list[KeyT] = [keys.timeout(_one_queue(queues))]
    for queue in queues:
        call_keys += [part(queue) for part in _CLAIM_PARTS]
    call_keys.append(keys.worker_wake(worker_id, _one_queue(queues)))
    args: list[EncodableT] = [
        now,
        now_text,
        count,
        grace_ms,
        worker_id,
        default_timeout_ms,
        max_timeout_ms,
        *fields,
    ]
    return Call(Script.CLAIM, call_keys, args)


@dataclass(frozen=True)
class Acked:
    """One task of an ``ack.lua`` call. ``flags`` are ack.lua's k, e, l and p; the r flag
    is added when ``result`` is given (a small result, passed inline), the g flag when
    ``progress`` is (the handler's last progress report), the x flag when ``stopped`` is
    (the error message of a run a cancel stopped)."""

    id: str
    retention_ms: int
    duration_ms: str
    log_bytes: int
    log_dropped: int
    log_file: str
    started_ms: int
    flags: str
    result: bytes | None
    logs: Sequence[bytes]
    progress: tuple[float, str] | None = None
    stopped: str | None = None

    def args(self) -> list[EncodableT]:
        inline = self.result is not None
        stopped: list[EncodableT] = [] if self.stopped is None else [self.stopped]
        progress: list[EncodableT] = []
        if self.progress is not None:
            progress = [repr(self.progress[0]), self.progress[1]]
        return [
            self.id,
            self.retention_ms,
            self.duration_ms,
            self.log_bytes,
            self.log_dropped,
            self.log_file,
            self.started_ms,
            self.flags
            + ("r" if inline else "")
            + ("g" if progress else "")
            + ("x" if stopped else ""),
            len(self.logs),
            *([self.result] if self.result is not None else []),
            *stopped,
            *progress,
            *self.logs,
        ]


def ack(
    *,
    queue: str,
    now: int,
    now_text: str,
    finished_max: int,
    completed_max: int,
    tasks: Sequence[Acked],
) -> Call:
    """``ack.lua`` for ``tasks`` of one queue; replies one status per task."""
    call_keys: list[KeyT] = [
        keys.timeout(queue),
        keys.processing(queue),
        keys.finished(queue),
        keys.pending(queue),
        keys.scheduled(queue),
        keys.throughput(queue),
    ]
    args: list[EncodableT] = [now, now_text, finished_max, completed_max, len(tasks)]
    for task in tasks:
        args += task.args()
    return Call(Script.ACK, call_keys, args)


def nack(
    *,
    task_id: str,
    queue: str,
    now: int,
    now_text: str,
    error: str,
    error_kind: str,
    retryable: bool,
    retry_delay_ms: int,
    retention_ms: int,
    duration_ms: str,
    log_bytes: int,
    log_dropped: int,
    log_file: str,
    started_ms: int,
    logs: Sequence[bytes],
    progress: tuple[float, str] | None = None,
) -> Call:
    """``nack.lua``: retry or dead-letter one failed attempt."""
    call_keys: list[KeyT] = [
        keys.task(task_id),
        keys.processing(queue),
        keys.timeout(queue),
        keys.scheduled(queue),
        keys.dlq(queue),
        keys.logs(task_id),
        keys.pending(queue),
        keys.scheduler_wake(queue),
    ]
    args: list[EncodableT] = [
        task_id,
        now,
        now_text,
        error,
        error_kind,
        "1" if retryable else "0",
        retry_delay_ms,
        retention_ms,
        duration_ms,
        log_bytes,
        log_dropped,
        log_file,
        started_ms,
        "" if progress is None else repr(progress[0]),
        "" if progress is None else progress[1],
        *logs,
    ]
    return Call(Script.NACK, call_keys, args)


def progress(*, task_id: str, worker_id: str, value: float, message: str, now: int) -> Call:
    """``progress.lua``: a running task's progress, unless it is no longer this worker's."""
    return Call(Script.PROGRESS, [keys.task(task_id)], [worker_id, repr(value), message, now])


def release(*, queue: str, worker_id: str, now_text: str, ids: Sequence[str]) -> Call:
    """``release.lua``: give ``ids`` (claimed, in that order) back to pending."""
    call_keys: list[KeyT] = [
        keys.timeout(queue),
        keys.processing(queue),
        keys.pending(queue),
        keys.wake(queue),
    ]
    return Call(Script.RELEASE, call_keys, [now_text, worker_id, *ids])


# -- recovery and administration -------------------------------------------------------


def reap(*, now: int, now_text: str, limit: int, skip: int = 0, queue: str | None = None) -> Call:
    """``reap.lua``: recover up to ``limit`` expired leases (of ``queue``, tagged),
    passing over ``skip`` first."""
    return Call(Script.REAP, [keys.timeout(queue)], [now, now_text, limit, skip])


def recover(
    *,
    worker_id: str,
    queues: Sequence[str],
    now: int,
    now_text: str,
    reason: str,
    unstarted: Sequence[str],
) -> Call:
    """``recover.lua``: recover what a dead worker held in ``queues``."""
    call_keys: list[KeyT] = [keys.timeout(_one_queue(queues))]
    for queue in queues:
        call_keys += [part(queue) for part in _RECOVER_PARTS]
    return Call(Script.RECOVER, call_keys, [now, now_text, worker_id, reason, *unstarted])


def cancel(*, task_id: str, now: int, now_text: str, retention_ms: int) -> Call:
    """``cancel.lua``; replies ``[status, previous stage]``."""
    call_keys: list[KeyT] = [keys.task(task_id), keys.scheduled(_queue_of(task_id))]
    return Call(Script.CANCEL, call_keys, [task_id, now, now_text, retention_ms])


def dlq_redrive(*, queue: str, now_text: str, ids: Sequence[str], latest: bool = False) -> Call:
    """``dlq_redrive.lua``; no ``ids`` redrives the whole list, ``latest`` moves each
    task onto its task's current registered version."""
    call_keys: list[KeyT] = [
        keys.dlq(queue),
        keys.pending(queue),
        keys.wake(queue),
        keys.registry_mirror(queue),
    ]
    return Call(Script.DLQ_REDRIVE, call_keys, [now_text, "1" if latest else "", *ids])


def dlq_purge(*, queue: str, cutoff_ms: int) -> Call:
    """``dlq_purge.lua``; ``cutoff_ms`` 0 deletes every dead letter of ``queue``."""
    return Call(Script.DLQ_PURGE, [keys.dlq(queue)], [cutoff_ms])


# -- flows: chains, groups and chords --------------------------------------------------


#: One member of a ``flow_create.lua`` call: its fields as JSON, whether it is queued
#: now, whether it has a payload of its own, and that payload.
FlowMember = tuple[str, bool, bool, bytes]


def flow_create(
    *,
    flow_id: str,
    kind: str,
    now: int,
    members: Sequence[FlowMember],
    callback_json: str,
    queue: str = keys.DEFAULT_QUEUE,
) -> Call:
    """``flow_create.lua``; replies ``[1]`` created, ``[0]`` the flow exists, ``[-1, name]``
    an unregistered task, ``[-2, id]`` a member id that is taken. ``queue`` is the one
    queue of every member in the tagged layout (whose registry mirror is read)."""
    call_keys: list[KeyT] = [
        keys.flow(flow_id),
        keys.flow_members(flow_id),
        keys.flow_data(flow_id),
        keys.registry_mirror(queue),
        keys.queue_names(queue),
    ]
    args: list[EncodableT] = [kind, now, len(members), callback_json]
    for fields_json, now_, own, payload in members:
        args += [fields_json, "1" if now_ else "", "1" if own else "", payload]
    return Call(Script.FLOW_CREATE, call_keys, args)


def flow_status(*, flow_id: str) -> Call:
    """``flow_status.lua``: the flow hash, member ids, their stages, the callback's stage."""
    return Call(Script.FLOW_STATUS, [keys.flow(flow_id), keys.flow_members(flow_id)])


def flow_cancel(*, flow_id: str, now: int, now_text: str, retention_ms: int) -> Call:
    """``flow_cancel.lua``; replies ``[status, waiting cancelled, running marked]``."""
    call_keys: list[KeyT] = [
        keys.flow(flow_id),
        keys.flow_members(flow_id),
        keys.flow_data(flow_id),
        keys.scheduled(_queue_of(flow_id)),
    ]
    return Call(Script.FLOW_CANCEL, call_keys, [now, now_text, retention_ms])


# -- scheduling ------------------------------------------------------------------------


def promote(*, now: int, limit: int, now_text: str, skip: int, queue: str | None = None) -> Call:
    """``promote.lua``: look at up to ``limit`` due ids, passing over the latest ``skip``
    (of ``queue``'s scheduled set, tagged)."""
    return Call(Script.PROMOTE, [keys.scheduled(queue)], [now, limit, now_text, skip])


#: One tick group of a ``cron_fire.lua`` call: due ms, next due ms, both as RFC3339,
#: ticks missed, and the cron expression and zone the times come from.
FireGroup = tuple[int, int, str, str, int, str | bytes, str | bytes]
#: One entry of a ``cron_fire.lua`` call: entry id, its group (1-based), run id.
FireEntry = tuple[str | bytes, int, str]


def cron_fire(
    *,
    now: int,
    now_text: str,
    groups: Sequence[FireGroup],
    entries: Sequence[FireEntry],
    queue: str | None = None,
) -> Call:
    """``cron_fire.lua``; replies one outcome per entry (all of ``queue``, tagged)."""
    args: list[EncodableT] = [now, now_text, len(groups)]
    for group in groups:
        args += group
    for entry in entries:
        args += entry
    call_keys: list[KeyT] = [
        keys.scheduled(queue),
        keys.cron_last_run(queue),
        keys.registry_mirror(queue or keys.DEFAULT_QUEUE),
    ]
    return Call(Script.CRON_FIRE, call_keys, args)


def cron_pause(*, entry: str | bytes, now_text: str, reason: str) -> Call:
    """``cron_pause.lua``; ``reason`` is empty when a user paused the entry."""
    queue = _queue_of(entry)
    call_keys: list[KeyT] = [keys.scheduled(queue), keys.cron_paused(queue), _task_key(entry)]
    return Call(Script.CRON_PAUSE, call_keys, [entry, now_text, reason])


def cron_resume(*, entry: str, next_ms: int, next_text: str, now_text: str) -> Call:
    """``cron_resume.lua``: back in the scheduled set at ``next_ms``."""
    queue = _queue_of(entry)
    call_keys: list[KeyT] = [
        keys.scheduled(queue),
        keys.cron_paused(queue),
        keys.task(entry),
        keys.scheduler_wake(queue),
    ]
    return Call(Script.CRON_RESUME, call_keys, [entry, next_ms, next_text, now_text])


def cron_remove(*, entry: str) -> Call:
    """``cron_remove.lua``."""
    queue = _queue_of(entry)
    call_keys: list[KeyT] = [
        keys.scheduled(queue),
        keys.cron_paused(queue),
        keys.cron_last_run(queue),
        keys.task(entry),
    ]
    return Call(Script.CRON_REMOVE, call_keys, [entry])


# -- the module registry ---------------------------------------------------------------


def register(
    *,
    name: str,
    digest: str,
    module: bytes,
    compile_key: str,
    record_json: str,
    now: int,
    source_digest: str = "",
    source: bytes = b"",
    snapshot_field: str = "",
    snapshot_json: str = "",
) -> Call:
    """``register.lua``; ``module`` (``source``) empty when Redis should have the bytes
    already. ``source_digest`` is the compiled module a snapshot ``digest`` was made from
    (default: ``digest`` itself), ``snapshot_field`` and ``snapshot_json`` its entry in
    the snapshot index."""
    source_digest = source_digest or digest
    call_keys: list[KeyT] = [
        keys.registry(),
        keys.task_versions(name),
        keys.module(digest),
        keys.compile_index(),
        keys.module(source_digest),
        keys.snapshot_index(),
    ]
    args: list[EncodableT] = [name, digest, module, compile_key, record_json, now]
    args += [source_digest, source, snapshot_field, snapshot_json]
    return Call(Script.REGISTER, call_keys, args)


def unregister(*, name: str) -> Call:
    """``unregister.lua``; replies 1 when ``name`` was registered."""
    return Call(Script.UNREGISTER, [keys.registry(), keys.task_versions(name)], [name])


def prune_modules() -> Call:
    """``prune_modules.lua``; replies ``[modules deleted, index entries deleted]``."""
    call_keys: list[KeyT] = [keys.registry(), keys.compile_index(), keys.snapshot_index()]
    args: list[EncodableT] = [keys.versions_prefix(), keys.module_prefix()]
    return Call(Script.PRUNE_MODULES, call_keys, args)
