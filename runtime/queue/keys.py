"""Every Redis key wasmq reads or writes, named in one place.

The default queue keeps the reference layout (``task_queue:pending`` ...) so that
producers written against it keep working; a named queue ``Q`` uses the same shape
with the queue name inserted (``task_queue:Q:pending``). Lua scripts receive every
key they touch through ``KEYS`` except the per-task keys of ids they find in lists,
which they derive from the constants below: the script loader (``scripts.py``) writes
them into a prelude every script runs after (each script header says which it derives).

Two layouts: ``reference`` (the default, one server) and ``tagged`` (Redis Cluster, see
:func:`use_layout`). In the tagged layout every key a queue's scripts touch carries the
queue's hash tag ``{<queue>}`` so that each script call stays in one slot; the constants
below keep the reference names, and the functions give the key of the layout in use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_QUEUE = "default"

# -- Layouts -------------------------------------------------------------------------------

#: ``reference``: the key names of the reference implementation, for one server.
#: ``tagged``: the same data with every queue's keys under its hash tag, for a cluster.
LAYOUTS = ("reference", "tagged")
#: Hash tag of the keys that are not a queue's: the registry, module bytes, versions,
#: compile and snapshot indexes (their scripts touch them together).
REGISTRY_TAG = "{wasmq}"
_layout = "reference"


def use_layout(name: str) -> None:
    """Switch the process to layout ``name``. A process talks to one deployment, so
    the switch is process-wide: the connection sets it when it makes a cluster client."""
    global _layout
    if name not in LAYOUTS:
        raise ValueError(f"unknown key layout {name!r}: use {' or '.join(LAYOUTS)}")
    _layout = name


def layout() -> str:
    return _layout


def tagged() -> bool:
    return _layout == "tagged"


@contextmanager
def layout_as(name: str) -> Iterator[None]:
    """Run a block under layout ``name`` and restore the previous one (tests, docs)."""
    before = _layout
    use_layout(name)
    try:
        yield
    finally:
        use_layout(before)


def tag(queue: str) -> str:
    """The hash tag of queue ``queue``: every key of the queue hashes to its slot."""
    return "{" + queue + "}"


def _scoped(prefix: str, queue: str) -> str:
    """``<prefix><queue>``, with the queue as a hash tag in the tagged layout."""
    return prefix + (tag(queue) if tagged() else queue)


def _queue_tag(queue: str | None, key: str) -> str:
    """The hash tag of ``queue`` for a shared key's per-queue copy. Without a queue the
    caller named the reference layout's shared key, which the tagged layout does not
    have: a silent default would read or write another queue's copy."""
    if queue is None:
        raise ValueError(f"{key!r} is per queue in the tagged layout: pass the queue")
    return tag(queue)


def _in_queue(prefix: str, queue: str | None) -> str:
    """A key the reference layout shares between queues (``<prefix><rest>``): in the
    tagged layout each queue has its own, ``<prefix>{<queue>}:<rest>``."""
    if not tagged():
        return prefix
    return prefix + _queue_tag(queue, prefix) + ":"


def _per_queue(key: str, queue: str | None) -> str:
    """A key the reference layout shares between queues; per queue when tagged."""
    return f"{key}:{_queue_tag(queue, key)}" if tagged() else key


def _registry_side(key: str) -> str:
    """A registry-side key: in the registry's slot (``{wasmq}``) when tagged."""
    if tagged() and key.startswith("wasmq:"):
        return REGISTRY_TAG + key[len("wasmq") :]
    return key


def id_tag(task_id: str) -> str | None:
    """The queue whose hash tag starts ``task_id`` (``{q}...``), or None."""
    if task_id.startswith("{"):
        end = task_id.find("}")
        if end > 1:
            return task_id[1:end]
    return None


#: Start of every queue list key (see :func:`queue`).
QUEUE_PREFIX = "task_queue:"

#: Hash with a task's fields (reference layout plus wasmq's extensions).
TASK_PREFIX = "task_metadata:"
#: Payload bytes of a task whose payload is too large to pass through Lua (the record
#: then has ``payload_ref`` = 1 instead of ``payload``); lives and expires with the record.
PAYLOAD_PREFIX = "task_payload:"
#: Raw result bytes of a finished task (expires with the result retention).
RESULT_PREFIX = "task_result:"
#: Captured stdout/stderr of a task, one list entry per chunk (expires with the result).
LOGS_PREFIX = "task_logs:"
#: Live log stream of a running task (XADD per chunk; trimmed and expiring).
LOG_STREAM_PREFIX = "task_log_stream:"
#: Pub/sub channel announcing that a task reached a terminal stage.
DONE_CHANNEL_PREFIX = "task_done:"

#: Sorted set of ids due later (one-off, retry backoff, cron entries), score = due time
#: in Unix seconds with a ms fraction, as the reference scores it (``task.ms_to_score``).
SCHEDULED = "task_set:scheduled"
#: Sorted set of claimed ids, score = lease deadline in Unix seconds, rounded up to the
#: whole second (``task.lease_score``: Valkey stores integer scores faster).
TIMEOUT = "task_set:timeout"
#: Hash of cron entry id -> last run id (the overlap policy reads it).
CRON_LAST_RUN = "wasmq:cron:last_run"
#: List used to wake sleeping schedulers early when an earlier due time arrives.
SCHEDULER_WAKE = "wasmq:scheduler:wake"

#: Hash task name -> JSON registration record (digest, version, language, ...).
TASK_REGISTRY = "wasmq:registry"
#: Module bytes by SHA-256 hex digest.
MODULE_PREFIX = "wasmq:module:"
#: Hash of version history per task: ``<version>`` -> digest.
TASK_VERSIONS_PREFIX = "wasmq:versions:"

#: Sorted set of worker ids, score = last heartbeat ms.
WORKERS = "wasmq:workers"
#: Hash with a worker's record (host, pid, queues, current task, counters).
WORKER_PREFIX = "wasmq:worker:"
#: Set of queue names that have ever received a task.
QUEUES = "wasmq:queues"
#: List of wake tokens per queue: whoever pushes N ids onto a pending list pushes N
#: tokens here (and trims the list to the pending length), and an idle worker BLPOPs
#: one token, so each available task wakes exactly one idle worker.
WAKE_PREFIX = "wasmq:wake:"
#: Sorted set per queue of its idle workers, score = ms when each started waiting. An
#: enqueue wakes the one that went idle last (its caches are warm; waking the longest
#: idle, as a shared list does, costs every task a cold process) through its own
#: token list; ids that waited longer than a wait can last are skipped as dead.
IDLE_PREFIX = "wasmq:idle:"
#: List of wake tokens addressed to one worker (expires; see IDLE_PREFIX).
WORKER_WAKE_PREFIX = "wasmq:wakeup:"
#: Hash per queue, Unix second -> tasks completed in that second (``stats`` sums the
#: last minute and deletes older fields; the key expires when the queue goes quiet).
THROUGHPUT_PREFIX = "wasmq:throughput:"
#: Seconds of completion counts kept in a throughput hash.
THROUGHPUT_WINDOW = 120

STAGES = ("pending", "processing", "finished", "dlq")


def task(task_id: str) -> str:
    return TASK_PREFIX + task_id


def payload(task_id: str) -> str:
    return PAYLOAD_PREFIX + task_id


def result(task_id: str) -> str:
    return RESULT_PREFIX + task_id


def logs(task_id: str) -> str:
    return LOGS_PREFIX + task_id


def log_stream(task_id: str) -> str:
    return LOG_STREAM_PREFIX + task_id


def done_channel(task_id: str) -> str:
    return DONE_CHANNEL_PREFIX + task_id


def queue(name: str, part: str) -> str:
    """``task_queue:<part>`` for the default queue, ``task_queue:<name>:<part>`` otherwise;
    ``task_queue:{<name>}:<part>`` for every queue in the tagged layout."""
    if part not in STAGES:
        raise ValueError(f"unknown queue part {part!r}")
    if name == DEFAULT_QUEUE and not tagged():
        return f"{QUEUE_PREFIX}{part}"
    return f"{_scoped(QUEUE_PREFIX, name)}:{part}"


def pending(name: str = DEFAULT_QUEUE) -> str:
    return queue(name, "pending")


def processing(name: str = DEFAULT_QUEUE) -> str:
    return queue(name, "processing")


def finished(name: str = DEFAULT_QUEUE) -> str:
    return queue(name, "finished")


def dlq(name: str = DEFAULT_QUEUE) -> str:
    return queue(name, "dlq")


def wake(name: str) -> str:
    return _scoped(WAKE_PREFIX, name)


def idle(name: str) -> str:
    return _scoped(IDLE_PREFIX, name)


def worker_wake(worker_id: str, queue: str | None = None) -> str:
    """A worker's own wake tokens; in the tagged layout one list per queue it serves."""
    return _in_queue(WORKER_WAKE_PREFIX, queue) + worker_id


def throughput(name: str) -> str:
    return _scoped(THROUGHPUT_PREFIX, name)


def module(digest: str) -> str:
    return module_prefix() + digest


def module_prefix() -> str:
    return _registry_side(MODULE_PREFIX)


def task_versions(name: str) -> str:
    return versions_prefix() + name


def versions_prefix() -> str:
    return _registry_side(TASK_VERSIONS_PREFIX)


def registry() -> str:
    """The registry hash: ``wasmq:registry``, ``{wasmq}:registry`` when tagged."""
    return _registry_side(TASK_REGISTRY)


def registry_mirror(queue: str) -> str:
    """The registry the scripts of ``queue`` read. Tagged: a copy in the queue's slot,
    ``wasmq:registry:{<queue>}``, that clients refresh when the registry's generation
    (:func:`registry_generation`) moves; the registry itself otherwise."""
    return _per_queue(TASK_REGISTRY, queue) if tagged() else registry()


#: Counter bumped by every register and unregister (tagged layout): a client whose
#: mirror was copied at another generation copies it again.
REGISTRY_GENERATION = "wasmq:registry:generation"


def registry_generation() -> str:
    return _registry_side(REGISTRY_GENERATION)


def compile_index() -> str:
    return _registry_side(COMPILE_INDEX)


def snapshot_index() -> str:
    return _registry_side(SNAPSHOT_INDEX)


def queue_names(queue: str) -> str:
    """The queue-names set scripts add ``queue`` to. Tagged: a one-member set in the
    queue's slot (a script cannot reach the shared one); the client adds the name to
    :data:`QUEUES` itself."""
    return _per_queue(QUEUES, queue)


def scheduled(queue: str | None = None) -> str:
    """Ids due later: ``task_set:scheduled``, or ``task_set:{<queue>}:scheduled``."""
    return f"task_set:{_queue_tag(queue, SCHEDULED)}:scheduled" if tagged() else SCHEDULED


def timeout(queue: str | None = None) -> str:
    """Leases: ``task_set:timeout``, or ``task_set:{<queue>}:timeout``."""
    return f"task_set:{_queue_tag(queue, TIMEOUT)}:timeout" if tagged() else TIMEOUT


def scheduler_wake(queue: str | None = None) -> str:
    return _per_queue(SCHEDULER_WAKE, queue)


def cron_last_run(queue: str | None = None) -> str:
    return _per_queue(CRON_LAST_RUN, queue)


def worker(worker_id: str) -> str:
    return WORKER_PREFIX + worker_id


#: Set of paused cron entry ids (they are out of ``task_set:scheduled`` while paused).
CRON_PAUSED = "wasmq:cron:paused"


def cron_paused(queue: str | None = None) -> str:
    return _per_queue(CRON_PAUSED, queue)


#: Hash compile key (SHA-256 of source, language, toolchain version, flags) -> module
#: digest: an unchanged source is never compiled twice, on any machine.
COMPILE_INDEX = "wasmq:compiles"
#: Hash ``<snapshot format>:<source digest>:<task name>`` -> digest of the pre-initialized
#: module made from that source for that task: a snapshot is taken once, on any machine.
SNAPSHOT_INDEX = "wasmq:snapshots"

# -- Workflows: chains, groups and chords --------------------------------------------------

#: Hash with a flow's state: kind (chain, group, chord), total, counts by outcome
#: (completed, failed, cancelled), state, created_ms, finished_ms, callback id (chords).
FLOW_PREFIX = "wasmq:flow:"
#: List of a flow's member task ids in member order (a chord's callback not included).
FLOW_MEMBERS_PREFIX = "wasmq:flow_members:"
#: Hash the flow owns: ``s<i>`` the fields of member i not created yet (chain steps, the
#: chord callback ``sc``), ``p<i>`` a step's own payload, ``r<i>`` a chord member's
#: result, kept here so the finished-records cap and result expiry cannot lose it.
FLOW_DATA_PREFIX = "wasmq:flow_data:"
#: Results larger than this become the next step's payload by a copy of the result key
#: into ``task_payload:<id>`` rather than through the record (as the broker's PAYLOAD_APART).
FLOW_INLINE_MAX = 16 * 1024


def flow(flow_id: str) -> str:
    return FLOW_PREFIX + flow_id


def flow_members(flow_id: str) -> str:
    return FLOW_MEMBERS_PREFIX + flow_id


def flow_data(flow_id: str) -> str:
    return FLOW_DATA_PREFIX + flow_id


# -- Priorities ----------------------------------------------------------------------------

#: A task's priority within its queue, highest first. Claims take from a higher level
#: while it holds tasks (strict: lower levels wait).
PRIORITIES = ("high", "normal", "low")
#: The level of a task whose record has no ``priority`` field. Its tasks stay on the
#: reference pending list, so producers that know nothing of priorities keep working.
DEFAULT_PRIORITY = "normal"


def pending_at(name: str, priority: str) -> str:
    """The pending list of ``priority`` in queue ``name``: the queue's pending list for
    the default level, ``task_queue[:<name>]:pending:<priority>`` for the others."""
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}")
    base = pending(name)
    return base if priority == DEFAULT_PRIORITY else f"{base}:{priority}"


def pending_lists(name: str) -> tuple[str, ...]:
    """Every pending list of queue ``name``, highest priority first."""
    return tuple(pending_at(name, level) for level in PRIORITIES)


# -- Rate and concurrency limits -----------------------------------------------------------

#: Hash scope -> JSON limit (``{"concurrency": N, "rate": N, "period_ms": P}``, either
#: part optional). A scope is ``task:<task name>`` or ``queue:<queue name>``.
LIMITS = "wasmq:limits"
#: Sorted set per scope with a concurrency limit: the ids holding a slot, score = their
#: lease deadline when last looked at (a slot lives as long as the task's lease).
LIMIT_RUNNING_PREFIX = "wasmq:limit:running:"
#: Sorted set per scope with a rate limit: one member ``<id>:<attempt>`` per claim in the
#: sliding window, score = claim ms (expires when the scope goes quiet).
LIMIT_RATE_PREFIX = "wasmq:limit:rate:"
#: List per scope of the ids a claim set aside because the scope was at its limit,
#: oldest at the right (released from there).
LIMIT_WAITING_PREFIX = "wasmq:limit:waiting:"
#: Sorted set of scopes with tasks set aside, score = ms when a claim looks at the scope
#: again and releases what its limit then allows.
LIMIT_DUE = "wasmq:limit:due"


def limits(queue: str | None = None) -> str:
    """The limits hash; per queue in the tagged layout (only queue scopes there)."""
    return _per_queue(LIMITS, queue)


def limit_due(queue: str | None = None) -> str:
    return _per_queue(LIMIT_DUE, queue)


def limit_running(scope: str, queue: str | None = None) -> str:
    return _in_queue(LIMIT_RUNNING_PREFIX, queue) + scope


def limit_rate(scope: str, queue: str | None = None) -> str:
    return _in_queue(LIMIT_RATE_PREFIX, queue) + scope


def limit_waiting(scope: str, queue: str | None = None) -> str:
    return _in_queue(LIMIT_WAITING_PREFIX, queue) + scope


# -- Unique tasks and cancel ---------------------------------------------------------------

#: Pub/sub channel on which the id of a running task that was cancelled is published,
#: so the worker running it can stop it.
CANCEL_CHANNEL = "wasmq:cancel"

#: String ``wasmq:unique:<unique key>`` -> id of the task holding that key, with the
#: task's ``unique_for`` as its expiry. An enqueue with the key returns that task while
#: it has not ended; once it has ended (or its record is gone) the next one takes over.
UNIQUE_PREFIX = "wasmq:unique:"


def unique(key: str, queue: str | None = None) -> str:
    """A unique key's lock; per queue in the tagged layout (uniqueness is per queue)."""
    return _in_queue(UNIQUE_PREFIX, queue) + key


# -- Task index (the dashboard's task list) ------------------------------------------------

#: Sorted set per queue of the ids of tasks created in it, score = enqueue ms: the task
#: list pages through it by time, filtered or not, without reading any list whole. The
#: reaper trims it to twice the queue's retention and to ``WASMQ_INDEX_MAX`` entries.
INDEX_QUEUE_PREFIX = "wasmq:index:queue:"
#: The same per task name.
INDEX_NAME_PREFIX = "wasmq:index:task:"


def index_queue(name: str) -> str:
    return _scoped(INDEX_QUEUE_PREFIX, name)


def index_name(task_name: str, queue: str | None = None) -> str:
    """Ids by task name; in the tagged layout one index per queue and name."""
    return _in_queue(INDEX_NAME_PREFIX, queue) + task_name
