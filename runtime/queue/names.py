"""Validation of the names users choose: tasks, queues, task ids."""

from __future__ import annotations

import re

from runtime.errors import InvalidTask

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
# Ids end up in key names and file names: no separators, no whitespace. On a Redis
# Cluster an id starts with its queue's hash tag, {<queue>} (runtime.queue.slots).
_ID = re.compile(r"(\{[A-Za-z0-9_.\-]{1,128}\})?[A-Za-z0-9_.:\-]{1,200}")


def check_task_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidTask(
            f"invalid task name {name!r}: use 1-128 characters from A-Z a-z 0-9 _ . -"
        )
    return name


def check_queue_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(
            f"invalid queue name {name!r}: use 1-128 characters from A-Z a-z 0-9 _ . -"
        )
    if name in ("pending", "processing", "finished", "dlq"):
        raise ValueError(f"invalid queue name {name!r}: it is reserved")
    return name


def check_task_id(task_id: str) -> str:
    if not isinstance(task_id, str) or not _ID.fullmatch(task_id):
        raise InvalidTask(
            f"invalid task id {task_id!r}: use 1-200 characters from A-Z a-z 0-9 _ . : -"
        )
    return task_id
