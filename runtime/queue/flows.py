"""Flows: chains, groups and chords of tasks, made, read and cancelled as one thing.

A flow is the hash ``wasmq:flow:<id>`` (kind, total, counts by outcome, state), the list
of its member ids and a data hash it owns (the fields of members not created yet, their
own payloads, a chord's member results). Member ids are assigned when the flow is made
(``<flow id>.<index>``, a chord's callback ``<flow id>.callback``), so every id is known
up front and creating a member is idempotent.

- **chain**: member 0 is queued at once; when member i completes, ``ack.lua`` creates
  member i+1 in the same script (the prelude's ``flow_completed``). Its payload is the
  previous result, or, when the step was given a payload of its own, the JSON object
  ``{"payload": <own>, "previous": <previous result>}``.
- **group**: every member is queued at once; the flow ends when all have.
- **chord**: a group whose callback is created, once, when the last member completes,
  with the JSON array of the members' results in member order as its payload.

A value that is JSON goes into those documents as it is, anything else as a JSON string.
A dead-lettered member fails a chain or a chord (nothing after it runs); redriving it
(``wasmq dlq redrive``) and its completing carries the flow on.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.clock import now_ms
from runtime.errors import InvalidTask, TaskNotFound, UnknownTask
from runtime.queue import keys, scripts
from runtime.queue.broker import ENQUEUED, Broker, close_task_names
from runtime.queue.names import check_task_id
from runtime.queue.slots import tagged_id
from runtime.queue.task import Kind, Stage, Task, format_time

KINDS = ("chain", "group", "chord")
#: Most members of one flow: every member's fields pass through one script call.
MAX_MEMBERS = 100_000
#: Longest flow id, so that member ids (``<flow id>.<index>``) stay valid task ids.
MAX_FLOW_ID = 180
#: Fields of a task's hash that the flow script fills in itself.
_SCRIPT_FIELDS = ("payload", "digest", "task_version")


class FlowNotFound(TaskNotFound):
    """No flow with the given id exists (the message is exactly ``no flow <id>``)."""

    what = "flow"


@dataclass(frozen=True)
class Flow:
    """A flow as it was made: its id, kind and member ids in member order."""

    id: str
    kind: str
    member_ids: list[str]
    #: The chord's callback task id (created when the last member completes).
    callback_id: str | None = None


@dataclass
class Member:
    """One task of a flow; ``own_payload`` says whether a later chain step was given a
    payload of its own (the first step and group members always run with theirs)."""

    task: Task
    own_payload: bool = True


@dataclass
class FlowStatus:
    """What ``wasmq status FLOW_ID`` shows: the flow's state and counts, and each member's
    stage (``waiting`` for a chain step not created yet, ``expired`` for a record gone)."""

    id: str
    kind: str
    state: str
    total: int
    completed: int
    failed: int
    cancelled: int
    created_ms: int | None
    finished_ms: int | None
    members: list[tuple[str, str]]
    callback_id: str | None = None
    callback_stage: str | None = None
    stages: dict[str, int] = field(default_factory=dict)
    #: When a chord's last member completed (its callback was created then).
    members_done_ms: int | None = None

    @property
    def done(self) -> bool:
        return self.state in ("completed", "cancelled")

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "total": self.total,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "stages": dict(self.stages),
            "created_ms": self.created_ms,
            "finished_ms": self.finished_ms,
            "members_done_ms": self.members_done_ms,
            "members": [{"id": i, "stage": s} for i, s in self.members],
            "callback_id": self.callback_id,
            "callback_stage": self.callback_stage,
        }


def member_id(flow_id: str, index: int) -> str:
    return f"{flow_id}.{index}"


def callback_id(flow_id: str) -> str:
    return f"{flow_id}.callback"


def _fields_json(task: Task, flow_id: str, index: str) -> str:
    """The hash fields of ``task`` as the flow script writes them (payload apart)."""
    task.stage = Stage.PENDING
    fields = task.to_hash()
    for name in _SCRIPT_FIELDS:
        fields.pop(name, None)
    for name in ("scheduled_at", "cron_expr", "next_run_at"):
        if not fields.get(name):
            fields.pop(name, None)
    if fields.get("limits") == "{}":
        del fields["limits"]
    fields["flow"] = flow_id
    fields["flow_index"] = index
    return json.dumps({k: v if isinstance(v, str) else v.decode() for k, v in fields.items()})


class Flows:
    """Makes, reads and cancels flows through ``broker``'s connection and scripts."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def create(
        self,
        kind: str,
        members: Sequence[Member],
        callback: Task | None = None,
        flow_id: str | None = None,
    ) -> Flow:
        """Make a flow of ``members`` (in order); ``callback`` makes a group a chord.

        An existing ``flow_id`` returns that flow unchanged; an unregistered task name
        raises :class:`UnknownTask` and nothing is made."""
        if kind not in KINDS:
            raise InvalidTask(f"invalid flow kind {kind!r}: use one of {', '.join(KINDS)}")
        if not members:
            raise InvalidTask(f"a {kind} needs at least one task")
        if len(members) > MAX_MEMBERS:
            raise InvalidTask(
                f"a flow of {len(members)} tasks is over the limit of {MAX_MEMBERS}; split it"
            )
        if (callback is not None) != (kind == "chord"):
            raise InvalidTask("a chord needs a callback task and only a chord has one")
        queue = _one_queue(kind, members, callback)
        flow_id = tagged_id(self._flow_id(flow_id), queue)
        self.broker.mirrors.ensure(queue)
        limit = self.broker.settings.payload_limit
        now = now_ms()
        calls: list[scripts.FlowMember] = []
        ids: list[str] = []
        for index, member in enumerate(members):
            task = member.task
            if len(task.payload) > limit:
                raise InvalidTask(
                    f"payload of task {index} of the {kind} is {len(task.payload)} bytes, over "
                    f"the limit of {limit} bytes; send a smaller payload or raise "
                    "WASMQ_PAYLOAD_LIMIT"
                )
            if task.kind != Kind.IMMEDIATE:
                raise InvalidTask(f"task {index} of the {kind} is not immediate: flows run now")
            task.id = member_id(flow_id, index)
            task.created_ms = task.updated_ms = now
            ids.append(task.id)
            start = kind != "chain" or index == 0
            own = member.own_payload or start
            payload = task.payload if own else b""
            calls.append((_fields_json(task, flow_id, str(index)), start, own, payload))
        callback_json = ""
        if callback is not None:
            callback.id = callback_id(flow_id)
            callback.created_ms = callback.updated_ms = now
            callback_json = _fields_json(callback, flow_id, "callback")
        call = scripts.flow_create(
            flow_id=flow_id,
            kind=kind,
            now=now,
            members=calls,
            callback_json=callback_json,
            queue=queue,
        )
        replies = self.broker._run([call], replicated=ENQUEUED)
        (reply,) = self.broker.registered_again([queue], [call], replies, (), ENQUEUED)
        code = int(reply[0])
        if code == -1:
            name = _text(reply[1])
            raise UnknownTask(name, close_task_names(self.broker.redis, name))
        if code == -2:
            raise InvalidTask(f"task id {_text(reply[1])} is taken; give the flow another id")
        if code == 0:
            existing = self.status(flow_id)
            return Flow(
                flow_id, existing.kind, [i for i, _ in existing.members], existing.callback_id
            )
        return Flow(flow_id, kind, ids, callback.id if callback is not None else None)

    @staticmethod
    def _flow_id(flow_id: str | None) -> str:
        if flow_id is None:
            return uuid.uuid4().hex
        check_task_id(flow_id)
        if len(flow_id) > MAX_FLOW_ID:
            raise InvalidTask(f"invalid flow id: use at most {MAX_FLOW_ID} characters")
        return flow_id

    def status(self, flow_id: str) -> FlowStatus:
        """The flow's state, counts and member stages, read in one script call; raises
        :class:`FlowNotFound` for an unknown id."""
        reply = self.broker._run([scripts.flow_status(flow_id=flow_id)])[0]
        if not reply:
            raise FlowNotFound(flow_id)
        flat, raw_ids, raw_stages, raw_callback_stage = reply
        info = {_text(k): _text(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}
        kind = info.get("kind", "")
        step = _int(info.get("step"))
        members: list[tuple[str, str]] = []
        stages: dict[str, int] = {}
        for index, (raw_id, raw_stage) in enumerate(zip(raw_ids, raw_stages, strict=True)):
            stage = _text(raw_stage)
            if not stage:
                waiting = kind == "chain" and step is not None and index > step
                stage = "waiting" if waiting else "expired"
            members.append((_text(raw_id), stage))
            stages[stage] = stages.get(stage, 0) + 1
        callback = info.get("callback")
        return FlowStatus(
            id=flow_id,
            kind=kind,
            state=info.get("state", ""),
            total=_int(info.get("total")) or 0,
            completed=_int(info.get("completed")) or 0,
            failed=_int(info.get("failed")) or 0,
            cancelled=_int(info.get("cancelled")) or 0,
            created_ms=_int(info.get("created_ms")),
            finished_ms=_int(info.get("finished_ms")),
            members=members,
            callback_id=callback,
            callback_stage=(_text(raw_callback_stage) or "waiting") if callback else None,
            stages=stages,
            members_done_ms=_int(info.get("members_done_ms")),
        )

    def exists(self, flow_id: str) -> bool:
        return bool(self.broker.redis.exists(keys.flow(flow_id)))

    def cancel(self, flow_id: str) -> tuple[str, int, int]:
        """Cancel every unfinished task of the flow: ``(status, waiting cancelled, running
        marked)``, status ``cancelled`` or ``final`` (it had ended); raises
        :class:`FlowNotFound` for an unknown id."""
        now = now_ms()
        call = scripts.flow_cancel(
            flow_id=flow_id,
            now=now,
            now_text=format_time(now),
            retention_ms=int(self.broker.settings.result_ttl * 1000),
        )
        status, waiting, running = self.broker._run([call])[0]
        if _text(status) == "missing":
            raise FlowNotFound(flow_id)
        return _text(status), int(waiting), int(running)


def _one_queue(kind: str, members: Sequence[Member], callback: Task | None) -> str:
    """The queue of the flow's first member; in the tagged layout (Redis Cluster) every
    member's, since a flow's script calls must stay in one slot."""
    queues = {m.task.queue for m in members} | ({callback.queue} if callback else set())
    first = members[0].task.queue
    if keys.tagged() and len(queues) > 1:
        raise InvalidTask(
            f"a {kind} on a Redis Cluster runs in one queue, and this one names "
            f"{', '.join(sorted(queues))}; give every task the same queue"
        )
    return first


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None
