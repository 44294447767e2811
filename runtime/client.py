"""The Python client: produce tasks, manage dead letters, see workers, read results.

``Client(url)`` is what the CLI uses; everything it does goes through
:class:`runtime.queue.broker.Broker` (writes) or :class:`runtime.queue.queries.Queries` (reads)::

    from wasmq import Client

    client = Client("redis://localhost:6379")
    task = client.enqueue("task_1", {"name": "world"})
    print(client.result(task.id, wait=True, timeout=10))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from runtime.clock import now_ms
from runtime.errors import InvalidTask, TaskNotFound
from runtime.logging_config import get_logger
from runtime.queue import catalog, ceilings, keys
from runtime.queue import throttles as limit_store
from runtime.queue.broker import BadTask, Broker, check_priority
from runtime.queue.ceilings import check_at_most
from runtime.queue.flows import Flow, Flows, FlowStatus, Member
from runtime.queue.names import check_queue_name, check_task_id, check_task_name
from runtime.queue.queries import LIST_SCAN, Queries, TaskBrowse, TaskPage, TaskStatus
from runtime.queue.slots import new_id, tagged_id
from runtime.queue.task import Kind, Limits, Stage, Task, parse_time
from runtime.server.connection import connect
from runtime.settings import Settings
from runtime.telemetry.tracing import enqueue_spans
from runtime.units import parse_duration, parse_size
from runtime.worker.heartbeats import WorkerInfo, list_workers

#: A payload: raw bytes, text (sent as UTF-8) or anything JSON can encode.
Payload = bytes | str | dict[str, Any] | list[Any] | int | float | bool | None


#: A member of a flow: a task name, ``(name, payload)`` or a built task.
FlowStep = str | tuple[str, Payload] | Task

#: Every value of ``--stage`` / ``stage=`` (from :class:`Stage`, the one source).
STAGE_NAMES = tuple(s.value for s in Stage)


def _new_server(state_dir: Path) -> None:
    get_logger("client").warning(
        "started a new, empty embedded server; register tasks with wasmq register PATH",
        state_dir=str(state_dir),
    )


def encode_payload(payload: Payload) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload, separators=(",", ":")).encode()


class Client(Queries):
    """Producer and inspection API over one Redis connection.

    :param url: Redis URL; ``None`` uses ``settings`` (or the environment and ``.env``),
        and with no URL anywhere the embedded server.
    :param settings: settings to use (defaults, limits, retention).
    :param client: an existing ``redis.Redis`` (bytes responses) to reuse.
    """

    def __init__(
        self,
        url: str | None = None,
        settings: Settings | None = None,
        *,
        client: redis.Redis | None = None,
    ) -> None:
        if settings is None:
            settings = Settings.load({"redis_url": url})
        elif url:
            settings = dataclasses.replace(settings, redis_url=url)
        self.settings = settings
        self.redis = client if client is not None else connect(settings, on_new_server=_new_server)
        self.broker = Broker(self.redis, settings)

    def close(self) -> None:
        self.redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building tasks ------------------------------------------------------------------

    def task(
        self,
        name: str,
        payload: Payload = b"",
        *,
        queue: str | None = None,
        max_retries: int | None = None,
        timeout: float | str | None = None,
        id: str | None = None,
        memory: int | str | None = None,
        limits: Limits | None = None,
        keep_result: float | str | None = None,
        keep_payload: bool = False,
        priority: str | None = None,
        unique_key: str | None = None,
        unique_for: float | str | None = None,
        unique: bool = False,
    ) -> Task:
        """A validated :class:`Task` for an immediate run, not yet sent.

        ``keep_result`` keeps the result and record that long after the task ends
        (default: the queue's retention, ``WASMQ_RESULT_TTL``); ``keep_payload`` keeps the
        payload after success (dropped by default). ``priority`` is the task's level in
        its queue: ``high``, ``normal`` (the default) or ``low``.

        ``unique_key`` (or ``unique=True``: a key from the task name, queue and payload)
        makes the task unique: while a task enqueued with the same key has not ended,
        enqueueing returns that task instead. The key is held at most ``unique_for``
        (default one hour)."""
        check_task_name(name)
        queue_name = queue or self.settings.queue
        try:
            check_queue_name(queue_name)
        except ValueError as exc:
            raise InvalidTask(str(exc)) from None
        task_id = tagged_id(check_task_id(id), queue_name) if id is not None else new_id(queue_name)
        retries = self.settings.max_retries if max_retries is None else max_retries
        if retries < 0:
            raise InvalidTask(f"invalid max retries {retries}: use 0 or more")
        check_at_most("max retries", retries, ceilings.MAX_RETRIES)
        seconds = self.settings.task_timeout
        if timeout is not None:
            try:
                seconds = parse_duration(timeout)
            except ValueError as exc:
                raise InvalidTask(f"invalid timeout: {exc}") from None
            if seconds <= 0:
                raise InvalidTask("invalid timeout: it must be greater than zero")
        task_limits = dataclasses.replace(limits) if limits is not None else Limits()
        if memory is not None:
            try:
                task_limits.memory = parse_size(memory)
            except ValueError as exc:
                raise InvalidTask(f"invalid memory limit: {exc}") from None
        task_limits.timeout = seconds
        keep = None if keep_result is None else _at_least_1ms("keep-result", keep_result)
        body = encode_payload(payload)
        key, hold = _unique(name, queue_name, body, unique_key, unique_for, unique)
        return Task(
            id=task_id,
            task_name=name,
            payload=body,
            queue=queue_name,
            max_retries=retries,
            timeout=seconds,
            limits=task_limits,
            keep_result=keep,
            keep_payload=keep_payload,
            priority=check_priority(priority or keys.DEFAULT_PRIORITY),
            unique_key=key,
            unique_for=hold,
        )

    # -- producing -----------------------------------------------------------------------

    def submit(self, task: Task) -> tuple[Task, bool]:
        """Send a built task; ``(task, created)`` (``False`` when the id existed)."""
        with enqueue_spans([task]):
            return self.broker.enqueue(task)

    def enqueue(self, name: str, payload: Payload = b"", **options: Any) -> Task:
        """Enqueue one task to run now; options as in :meth:`task`. With an ``id`` that
        exists already, the stored task is returned and nothing is enqueued."""
        return self.submit(self.task(name, payload, **options))[0]

    def enqueue_many(
        self, items: Iterable[Task | tuple[str, Payload]], **options: Any
    ) -> list[Task]:
        """Enqueue many tasks in pipelined batches (tasks, or ``(name, payload)`` pairs
        that share ``options``)."""
        tasks = [
            item if isinstance(item, Task) else self.task(item[0], item[1], **options)
            for item in items
        ]
        with enqueue_spans(tasks):
            return [task for task, _ in self.broker.enqueue_many(tasks)]

    def schedule(
        self,
        name: str,
        payload: Payload = b"",
        *,
        at: datetime | int | str | None = None,
        delay: float | str | None = None,
        **options: Any,
    ) -> Task:
        """Enqueue a one-off task due ``at`` (datetime, ms since the epoch or RFC3339) or
        after ``delay`` (seconds or ``"30s"``). A time in the past is refused."""
        from runtime.scheduling.scheduler import check_future

        task = self.task(name, payload, **options)
        task.kind = Kind.SCHEDULED
        task.scheduled_ms = check_future(self._due(at, delay))
        return self.submit(task)[0]

    def cron(
        self, name: str, expr: str, payload: Payload = b"", *, tz: str = "UTC", **options: Any
    ) -> Task:
        """Create a cron entry: each firing of ``expr`` (six fields with seconds, five
        fields, ``@hourly``..., ``@every 30s``) in time zone ``tz`` runs ``name``."""
        from runtime.scheduling.cron_entries import next_run

        task = self.task(name, payload, **options)
        task.kind = Kind.CRON
        task.cron_expr = expr
        task.cron_tz = tz or "UTC"
        task.next_run_ms = next_run(expr, task.cron_tz)
        return self.submit(task)[0]

    # -- flows: chains, groups and chords -------------------------------------------------

    def chain(self, *steps: FlowStep, id: str | None = None, **options: Any) -> Flow:
        """Run ``steps`` one after another, each with the previous step's result as its
        payload. A step is a task name, ``(name, payload)`` or a built :class:`Task`; a
        later step given a payload of its own gets ``{"payload": <its own>, "previous":
        <previous result>}``. ``options`` (as in :meth:`task`) apply to every step."""
        members = [self._flow_member(step, options) for step in steps]
        return self._flows().create("chain", members, flow_id=id)

    def group(self, members: Iterable[FlowStep], *, id: str | None = None, **options: Any) -> Flow:
        """Run ``members`` side by side as one flow whose status counts them."""
        tasks = [self._flow_member(m, options) for m in members]
        return self._flows().create("group", tasks, flow_id=id)

    def chord(
        self,
        members: Iterable[FlowStep],
        callback: str | Task,
        *,
        id: str | None = None,
        **options: Any,
    ) -> Flow:
        """A group whose ``callback`` runs once, when every member has completed, with
        the JSON array of their results in member order as its payload."""
        tasks = [self._flow_member(m, options) for m in members]
        last = callback if isinstance(callback, Task) else self.task(callback, **options)
        return self._flows().create("chord", tasks, last, flow_id=id)

    def flow(self, flow_id: str) -> FlowStatus:
        """A flow's state, counts by outcome and member stages."""
        return self._flows().status(flow_id)

    def cancel_flow(self, flow_id: str) -> tuple[str, int, int]:
        """Cancel a flow's unfinished tasks: ``(status, waiting cancelled, running
        marked)``; status ``cancelled``, or ``final`` when the flow had ended."""
        return self._flows().cancel(flow_id)

    def _stopped(self, task_id: str, wait: float) -> bool:
        """Whether the worker of a cancelled running task acked it within ``wait`` s (its
        lease is gone then) after stopping its run."""
        deadline = now_ms() + int(wait * 1000)
        # The lease set of the task's queue on a Redis Cluster (its id carries the tag).
        leases = keys.timeout(keys.id_tag(task_id))
        while now_ms() < deadline:
            if self.redis.zscore(leases, task_id) is None:
                kind = self.redis.hget(keys.task(task_id), "error_kind")
                return bool(kind == b"cancelled")
            time.sleep(0.01)
        return False

    def _flows(self) -> Flows:
        return Flows(self.broker)

    def _flow_member(self, step: FlowStep, options: dict[str, Any]) -> Member:
        if isinstance(step, Task):
            return Member(step, own_payload=bool(step.payload))
        if isinstance(step, str):
            return Member(self.task(step, **options), own_payload=False)
        name, payload = step
        return Member(self.task(name, payload, **options), own_payload=True)

    @staticmethod
    def _due(at: datetime | int | str | None, delay: float | str | None) -> int:
        if (at is None) == (delay is None):
            raise InvalidTask("give exactly one of a time (--at) and a delay (--in)")
        if delay is not None:
            try:
                return now_ms() + int(parse_duration(delay) * 1000)
            except ValueError as exc:
                raise InvalidTask(f"invalid delay: {exc}") from None
        if isinstance(at, datetime):
            if at.tzinfo is None:
                raise InvalidTask("the scheduled time needs a time zone")
            return int(at.timestamp() * 1000)
        if isinstance(at, int):
            return at
        try:
            return parse_time(str(at))
        except ValueError as exc:
            raise InvalidTask(f"invalid time: {exc}") from None

    # -- reading -------------------------------------------------------------------------

    def list_page(
        self,
        queue: str | None = None,
        stage: str | None = None,
        task: str | None = None,
        limit: int = 50,
        scan: int = LIST_SCAN,
    ) -> TaskPage:
        """:meth:`Queries.list_page`, refusing an unknown stage and counts over their
        ceilings (a bad filter would otherwise just match nothing)."""
        if stage is not None and stage not in STAGE_NAMES:
            raise InvalidTask(f"invalid stage {stage!r}: use one of {', '.join(STAGE_NAMES)}")
        check_at_most("list limit", limit, ceilings.LIST_LIMIT)
        check_at_most("list scan", scan, ceilings.LIST_SCAN)
        return super().list_page(queue, stage, task, limit, scan)

    def browse(
        self,
        queue: str | None = None,
        task: str | None = None,
        stage: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        cursor: str | None = None,
        limit: int = 50,
        scan: int = catalog.BROWSE_SCAN,
    ) -> TaskBrowse:
        """Tasks enqueued between ``since_ms`` and ``until_ms``, newest first, through the
        task index (:mod:`runtime.queue.catalog`): the cost of a page does not grow with
        the number of tasks. ``cursor`` is the previous page's ``next_cursor``."""
        if stage is not None and stage not in STAGE_NAMES:
            raise InvalidTask(f"invalid stage {stage!r}: use one of {', '.join(STAGE_NAMES)}")
        check_at_most("browse limit", limit, ceilings.LIST_LIMIT)
        check_at_most("browse scan", scan, ceilings.LIST_SCAN)
        where = catalog.TaskFilter(queue, task, stage, since_ms, until_ms)
        page = catalog.browse(self.redis, self.queues(), where, cursor, limit, scan)
        return TaskBrowse(
            [TaskStatus.from_task(t, self.settings.reference_compat) for t in page.records],
            page.next_cursor,
            page.scanned,
            page.budget_spent,
        )

    # -- control -------------------------------------------------------------------------

    def cancel(self, task_id: str, *, wait: float = 0.0) -> str:
        """Cancel a task: ``cancelled`` (it was waiting), ``marked`` (running: its worker
        stops it, keeping its output so far, and discards any result) or ``final`` (it had
        already ended). With ``wait`` (s), a running task's cancel waits that long for its
        worker to record the stop: ``stopped`` once it has. A flow id cancels every
        unfinished task of the flow (``cancelled`` or ``final``)."""
        try:
            status = self.broker.cancel(task_id)[0]
            if status == "marked" and wait > 0 and self._stopped(task_id, wait):
                return "stopped"
            return status
        except TaskNotFound:
            if not self._flows().exists(task_id):
                raise
        return self.cancel_flow(task_id)[0]

    # -- rate and concurrency limits -------------------------------------------------------

    def set_limit(
        self,
        *,
        task: str | None = None,
        queue: str | None = None,
        concurrency: int | None = None,
        rate: str | None = None,
    ) -> limit_store.Limit:
        """Set (replace) the limit of task name ``task`` or queue ``queue``: at most
        ``concurrency`` running at once, at most ``rate`` starts per period (``"100/m"``,
        ``"5/s"``). Every worker applies it at its next claim."""
        limit = limit_store.make_limit(limit_store.scope(task=task, queue=queue), concurrency, rate)
        limit_store.set_limit(self.redis, limit)
        return limit

    def remove_limit(self, *, task: str | None = None, queue: str | None = None) -> bool:
        """Remove a limit (False when there was none); the tasks it held back run."""
        return limit_store.remove_limit(self.redis, limit_store.scope(task=task, queue=queue))

    def limits(self) -> list[limit_store.LimitUsage]:
        """Every limit with its slots in use, its window's claims and its waiting tasks."""
        return limit_store.usage(self.redis)

    def _queues(self, queue: str | None) -> list[str]:
        return [queue] if queue else self.broker.queues()

    def dlq_list(self, queue: str | None = None, limit: int = 100) -> list[Task | BadTask]:
        """Dead-lettered tasks, newest first (all queues unless ``queue``)."""
        check_at_most("dead-letter limit", limit, ceilings.DLQ_LIMIT)
        out: list[Task | BadTask] = []
        for name in self._queues(queue):
            out.extend(self.broker.dlq_list(name, limit))
        return out[:limit] if queue is None else out

    def dlq_redrive(
        self, ids: Sequence[str] | None = None, *, queue: str | None = None, latest: bool = False
    ) -> list[str]:
        """Move dead letters back to pending: ``ids``, or all of them when ``ids`` is
        None. Returns the ids moved. They run the version of their task they were
        enqueued with, or with ``latest`` its current registered version."""
        if ids is None:
            moved: list[str] = []
            for name in self._queues(queue):
                moved.extend(self.broker.dlq_redrive(name, latest=latest))
            return moved
        by_queue: dict[str, list[str]] = {}
        for task_id in ids:
            raw = self.redis.hget(keys.task(task_id), "queue")
            name = queue or (raw.decode() if isinstance(raw, bytes) and raw else "default")
            by_queue.setdefault(name, []).append(task_id)
        moved = []
        for name, group in by_queue.items():
            moved.extend(self.broker.dlq_redrive(name, group, latest=latest))
        return moved

    def versions_to_run(self, ids: Sequence[str]) -> list[tuple[str, str, str]]:
        """(task name, version the tasks ``ids`` will run, current registered version or
        "") for each distinct pair, in first-seen order."""
        pipe = self.redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(keys.task(task_id), "task_name", "task_version")
        pairs: dict[tuple[str, str], None] = {}
        for name, version in pipe.execute():
            if name:
                pairs[(name.decode(), (version or b"").decode())] = None
        names = sorted({name for name, _ in pairs})
        records = self.redis.hmget(keys.registry(), names) if names else []
        current: dict[str, str] = {}
        for name, raw in zip(names, records, strict=True):
            try:
                current[name] = str(json.loads(raw)["version"]) if raw else ""
            except (ValueError, KeyError, TypeError):
                current[name] = ""
        return [(name, version, current[name]) for name, version in pairs]

    def dlq_purge(self, older_than: float | str | None = None, *, queue: str | None = None) -> int:
        """Delete dead letters (those that failed more than ``older_than`` ago, or all)."""
        seconds = None if older_than is None else parse_duration(older_than)
        return sum(self.broker.dlq_purge(name, seconds) for name in self._queues(queue))

    def workers(self) -> list[WorkerInfo]:
        """Registered worker processes, alive first."""
        return list_workers(self.redis, self.settings.heartbeat_interval)

    def register(self, path: Any, name: str | None = None, *, snapshot: bool | None = None) -> Any:
        """Register a task source or module file (see :class:`runtime.modules.registry.Registry`);
        ``snapshot=False`` keeps a module's ``_initialize`` running in every task."""
        from runtime.modules.registry import Registry

        return Registry(self.settings, self.redis).register(path, name, snapshot=snapshot)


#: How long a unique key is held when ``unique_for`` is not given (s).
UNIQUE_FOR = 3600.0
#: Longest unique key (it is part of a Redis key name).
UNIQUE_KEY_MAX = 512


def _unique(
    name: str,
    queue: str,
    payload: bytes,
    key: str | None,
    hold: float | str | None,
    derive: bool,
) -> tuple[str, float | None]:
    """(unique key, seconds it is held) of a task, or ("", None) for a task that is not
    unique; a derived key is the task name, queue and a digest of the payload."""
    if key is not None and derive:
        raise InvalidTask("give either a unique key or unique=True (--unique), not both")
    if derive:
        key = f"{name}:{queue}:{hashlib.sha256(payload).hexdigest()[:32]}"
    if key is None:
        if hold is not None:
            raise InvalidTask("unique_for (--unique-for) needs a unique key or unique=True")
        return "", None
    if not key or len(key) > UNIQUE_KEY_MAX or not key.isprintable():
        raise InvalidTask(
            f"invalid unique key {key[:40]!r}: use 1 to {UNIQUE_KEY_MAX} printable characters"
        )
    seconds = UNIQUE_FOR if hold is None else _at_least_1ms("unique-for", hold)
    return key, seconds


def _at_least_1ms(what: str, text: float | str) -> float:
    """``text`` as seconds, or one line saying why the ``what`` duration is refused."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise InvalidTask(f"invalid {what} duration: {exc}") from None
    if seconds < 0.001:
        raise InvalidTask(f"invalid {what} duration: it must be at least 1ms")
    return seconds
