"""Every Redis key wasmq reads or writes, named in one place.

The default queue keeps the reference layout (``task_queue:pending`` ...) so that
producers written against it keep working; a named queue ``Q`` uses the same shape
with the queue name inserted (``task_queue:Q:pending``). Lua scripts receive every
key they touch through ``KEYS`` except the per-task keys of ids they find in lists,
which they derive from the constants below: the script loader (``scripts.py``) writes
them into a prelude every script runs after (each script header says which it derives).
"""

from __future__ import annotations

DEFAULT_QUEUE = "default"
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

#: Sorted set of ids due later (one-off, retry backoff, cron entries), score = due ms.
SCHEDULED = "task_set:scheduled"
#: Sorted set of claimed ids, score = lease deadline ms.
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
    """``task_queue:<part>`` for the default queue, ``task_queue:<name>:<part>`` otherwise."""
    if part not in STAGES:
        raise ValueError(f"unknown queue part {part!r}")
    if name == DEFAULT_QUEUE:
        return f"{QUEUE_PREFIX}{part}"
    return f"{QUEUE_PREFIX}{name}:{part}"


def pending(name: str = DEFAULT_QUEUE) -> str:
    return queue(name, "pending")


def processing(name: str = DEFAULT_QUEUE) -> str:
    return queue(name, "processing")


def finished(name: str = DEFAULT_QUEUE) -> str:
    return queue(name, "finished")


def dlq(name: str = DEFAULT_QUEUE) -> str:
    return queue(name, "dlq")


def wake(name: str) -> str:
    return WAKE_PREFIX + name


def idle(name: str) -> str:
    return IDLE_PREFIX + name


def worker_wake(worker_id: str) -> str:
    return WORKER_WAKE_PREFIX + worker_id


def throughput(name: str) -> str:
    return THROUGHPUT_PREFIX + name


def module(digest: str) -> str:
    return MODULE_PREFIX + digest


def task_versions(name: str) -> str:
    return TASK_VERSIONS_PREFIX + name


def worker(worker_id: str) -> str:
    return WORKER_PREFIX + worker_id


#: Set of paused cron entry ids (they are out of ``task_set:scheduled`` while paused).
CRON_PAUSED = "wasmq:cron:paused"

#: Hash compile key (SHA-256 of source, language, toolchain version, flags) -> module
#: digest: an unchanged source is never compiled twice, on any machine.
COMPILE_INDEX = "wasmq:compiles"
#: Hash ``<snapshot format>:<source digest>:<task name>`` -> digest of the pre-initialized
#: module made from that source for that task: a snapshot is taken once, on any machine.
SNAPSHOT_INDEX = "wasmq:snapshots"
