"""Every ``--json`` of the CLI follows the convention of the README's "JSON output".

The commands are found by walking the app's click tree, so a new command with ``--json``
fails :func:`test_every_json_command_has_a_case` until it gets a row in :data:`CASES`;
each row runs against a seeded server and its output is held to the convention: one
document of the right kind (JSON Lines for streams), snake_case keys, times and
durations as numbers named ``*_ms``, sizes as integers named ``*_bytes``, no formatted
timestamps.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import typer
from typer.testing import CliRunner, Result

from runtime.cli import app
from runtime.client import Client
from runtime.output.chunks import STDERR, STDOUT, LogChunk
from runtime.queue.broker import Broker
from runtime.settings import Settings
from runtime.worker.heartbeats import Heartbeat, WorkerStats
from tests.support.cli import in_process_env
from tests.support.logs import restored_logging
from tests.support.paths import TASKS
from tests.support.seeding import enqueue, register, run

OBJECT, ARRAY, LINES = "object", "array", "JSON Lines"


@dataclass(frozen=True)
class Case:
    """Arguments after the command's path (``{echo}`` is a WAT task source) and the
    kind of document its ``--json`` prints."""

    args: tuple[str, ...]
    shape: str
    #: Runs as a subprocess, in a test marked for it, rather than in this process.
    processes: bool = False


#: The shortest ``bench`` that still shows every part of its report but the optional ones.
SMALL_BENCH = (
    "--tasks",
    "20",
    "--workers",
    "1",
    "--idle-samples",
    "3",
    "--one-by-one",
    "5",
    "--idle-workers",
    "",
    "--trickle-seconds",
    "0",
)

#: Every command path with ``--json``, and how to run it on the seeded server.
CASES: dict[tuple[str, ...], list[Case]] = {
    ("enqueue",): [Case(("job", "--payload", "{}"), OBJECT)],
    ("status",): [
        Case(("ok-1",), OBJECT),
        Case(("ok-1", "--follow"), LINES),
        Case(("flow-1",), OBJECT),
    ],
    ("result",): [Case(("ok-1",), OBJECT)],
    ("logs",): [Case(("ok-1",), ARRAY), Case(("ok-1", "--follow"), LINES)],
    ("list",): [Case((), ARRAY)],
    ("stats",): [Case((), OBJECT)],
    ("workers",): [Case((), ARRAY)],
    ("dlq", "list"): [Case((), ARRAY)],
    ("register",): [Case(("{echo}",), ARRAY)],
    ("tasks",): [Case((), ARRAY)],
    ("cron", "list"): [Case((), ARRAY)],
    ("limit", "list"): [Case((), ARRAY)],
    ("server", "status"): [Case((), OBJECT)],
    ("run",): [Case(("{echo}", "--payload", '{"name": "Ada"}'), OBJECT)],
    ("bench",): [Case(SMALL_BENCH, OBJECT, processes=True)],
}

SNAKE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
#: A formatted timestamp where the convention wants epoch milliseconds.
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
#: Objects whose keys are data rather than names: a task's extra hash fields, a
#: module's environment variables.
DATA_KEYS = frozenset({"extra", "env"})


def json_commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command (or group with a body of its own) taking ``--json``."""
    if any("--json" in getattr(param, "opts", ()) for param in command.params):
        yield path
    # Groups hold their subcommands by name (typer's own click has no public Group type).
    for name, sub in getattr(command, "commands", {}).items():
        yield from json_commands(sub, (*path, name))


def all_cases(processes: bool) -> list[Any]:
    return [
        pytest.param(path, case, id=" ".join((*path, *case.args))[:60])
        for path, cases in CASES.items()
        for case in cases
        if case.processes == processes
    ]


def test_every_json_command_has_a_case() -> None:
    found = set(json_commands(typer.main.get_command(app)))
    assert ("status",) in found and ("dlq", "list") in found and ("tasks",) in found
    assert found - set(CASES) == set(), "add a row to CASES for each new --json command"
    assert set(CASES) - found == set(), "CASES names a command that has no --json"


def check_convention(text: str, shape: str) -> list[Any]:
    """The documents of ``text`` (one, or one per line for a stream), each checked."""
    assert text.endswith("\n") and text.strip(), repr(text)
    if shape == LINES:
        documents = [json.loads(line) for line in text.splitlines()]
        assert documents and all(isinstance(d, dict) for d in documents), text
    else:
        document = json.loads(text)  # exactly one document: extra data fails to parse
        if shape == OBJECT:
            assert isinstance(document, dict), text
        else:
            assert isinstance(document, list) and document, text
            assert all(isinstance(row, dict) for row in document), text
        documents = [document]
    for document in documents:
        check_value(document, "$")
    return documents


def check_value(value: Any, where: str) -> None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_value(item, f"{where}[{i}]")
    elif isinstance(value, str):
        assert not RFC3339.match(value), f"{where}: a formatted time, not epoch *_ms"
    elif isinstance(value, dict):
        for key, item in value.items():
            here = f"{where}.{key}"
            assert SNAKE.fullmatch(key), f"{here}: not a snake_case key"
            if key.endswith("_ms"):
                numbers = item if isinstance(item, list) else [item]
                assert all(is_number(n) or n is None for n in numbers), f"{here}: {item!r}"
            if key.endswith("_bytes"):
                assert item is None or (is_number(item) and int(item) == item), f"{here}"
            if key not in DATA_KEYS:
                check_value(item, here)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@pytest.fixture
def seeded(redis_client: redis.Redis, settings: Settings) -> Iterator[None]:
    """Something for every command to show: a completed task with output (``ok-1``), a
    dead letter, a pending task, a cron entry, a live worker, a registered task, a
    limit and a chord (``flow-1``)."""
    broker = Broker(redis_client, settings)
    register(redis_client, "job")
    enqueue(broker, "ok-1")
    logs = [LogChunk(STDOUT, 1000, b"out\n"), LogChunk(STDERR, 2000, b"err\n")]
    run(broker, result=b"the result", logs=logs, log_dropped=5)
    enqueue(broker, "bad-1", max_retries=0)
    run(broker, ok=False, error="exited with code 3", error_kind="exit")
    enqueue(broker, "wait-1")
    Client(settings=settings, client=redis_client).cron("job", "@every 1h", b"{}", id="cron-1")
    Client(settings=settings, client=redis_client).chord(["job"], "job", id="flow-1")
    Client(settings=settings, client=redis_client).set_limit(
        task="job", concurrency=2, rate="100/m"
    )
    beat = Heartbeat(redis_client, "host:1:ab", ["default"], WorkerStats(), interval=60)
    beat.beat()
    yield
    beat.stop()


@pytest.fixture
def wasmq(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> Iterator[Callable[..., Result]]:
    """``wasmq(...)`` in this process against the private server, in ``tmp_path``."""
    env = in_process_env(monkeypatch, tmp_path)

    def invoke(*args: str) -> Result:
        with restored_logging():
            return CliRunner().invoke(app, ["--redis-url", str(settings.redis_url), *args], env=env)

    yield invoke


def arguments(case: Case, tmp_path: Path) -> list[str]:
    echo = tmp_path / "echo.wat"
    if not echo.exists():
        shutil.copy(TASKS / "echo.wat", echo)
    return [arg.replace("{echo}", str(echo)) for arg in case.args]


@pytest.mark.parametrize(("path", "case"), all_cases(processes=False))
def test_json_output_follows_the_convention(
    path: tuple[str, ...],
    case: Case,
    seeded: None,
    wasmq: Callable[..., Result],
    tmp_path: Path,
) -> None:
    result = wasmq(*path, *arguments(case, tmp_path), "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    check_convention(result.stdout, case.shape)


@pytest.mark.parametrize(("path", "case"), all_cases(processes=True))
@pytest.mark.processes
@pytest.mark.slow
def test_json_output_of_process_commands(
    path: tuple[str, ...], case: Case, seeded: None, cli: Any, tmp_path: Path
) -> None:
    proc = cli(*path, *arguments(case, tmp_path), "--json", timeout=240)
    assert proc.returncode == 0, proc.stderr
    check_convention(proc.stdout, case.shape)


def test_the_checks_refuse_what_the_convention_rules_out() -> None:
    bad = [
        ('{"a": 1}\n{"b": 2}\n', OBJECT),  # two documents where one is due
        ('{"a": 1}\n', ARRAY),
        ("[]\n", ARRAY),  # an empty list shows nothing of its rows
        ('[{"ok": 1}, 2]\n', ARRAY),
        ('{"scheduledAt": 1}\n', OBJECT),
        ('{"started_ms": "2026-01-01T00:00:00Z"}\n', OBJECT),
        ('{"when": "2026-01-01T00:00:00.000Z"}\n', OBJECT),
        ('{"size_bytes": 1.5}\n', OBJECT),
        ('{"rows": [{"Bad-Key": 1}]}\n', OBJECT),
        ('[{"a": 1}]\n', LINES),
    ]
    for text, shape in bad:
        with pytest.raises((AssertionError, ValueError)):
            check_convention(text, shape)
    good = check_convention('{"next_runs_ms": [1, 2], "extra": {"X-Y": "1"}, "e": null}\n', OBJECT)
    assert good == [{"next_runs_ms": [1, 2], "extra": {"X-Y": "1"}, "e": None}]
