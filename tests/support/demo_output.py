"""What the demo prints for the tasks it shows, read back from its output lines, and what
the handlers in tasks/ make it print: one checker for the demo run in-process and for
``make demo`` run as a user runs it."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from runtime.demo import CRON_ID, CRON_RUNS

STEP = re.compile(r"^(immediate|scheduled|cron run \d+): (\S+) \((\S+)\)$")
RESULT = "  result: "
LOG = "    "
#: Each step's label, task, the name in its payload and the language of its handler.
EXPECTED = [
    ("immediate", "task_1", "demo", "Go"),
    ("scheduled", "task_1_c", "later", "C"),
    *((f"cron run {n}", "task_1_wat", "cron", "WAT") for n in range(1, CRON_RUNS + 1)),
]
WORKER_STOPPED = "worker stopped (exit code 0)"


@dataclass
class PrintedStep:
    """One task as the demo printed it: its heading, result and log lines."""

    label: str
    task_name: str
    task_id: str
    result: str
    log_lines: list[str]


def printed_steps(lines: Sequence[str]) -> list[PrintedStep]:
    """Every task the demo printed, in order."""
    steps = []
    for number, line in enumerate(lines):
        heading = STEP.match(line)
        if not heading:
            continue
        result, logs = lines[number + 1], lines[number + 2]
        assert result.startswith(RESULT) and logs == "  logs:", lines[number : number + 3]
        log_lines = []
        for follow in lines[number + 3 :]:
            if not follow.startswith(LOG):
                break
            log_lines.append(follow[len(LOG) :])
        label, task_name, task_id = heading.groups()
        steps.append(PrintedStep(label, task_name, task_id, result[len(RESULT) :], log_lines))
    return steps


def assert_demo_printed(lines: Sequence[str]) -> list[PrintedStep]:
    """The demo showed the immediate, scheduled and cron tasks with the result and the one
    log line each handler produces, removed its cron entry and stopped its worker cleanly."""
    steps = printed_steps(lines)
    assert [(s.label, s.task_name) for s in steps] == [e[:2] for e in EXPECTED], lines
    for step, (_, _, name, language) in zip(steps, EXPECTED, strict=True):
        assert json.loads(step.result) == {"message": f"Hello, {name}!"}, step
        assert len(step.log_lines) == 1, step
        assert step.log_lines[0].endswith(f" stdout | Hello, {name}! (from task_1 in {language})")
    cron_ids = [s.task_id for s in steps[2:]]
    assert all(i.startswith(f"{CRON_ID}:") for i in cron_ids), cron_ids
    assert len(set(cron_ids)) == CRON_RUNS
    assert any(line.startswith(f"cron entry {CRON_ID} removed") for line in lines)
    assert WORKER_STOPPED in lines
    return steps
