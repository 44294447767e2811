"""Every error is one line starting ``error: ``: usage errors exit 2, the others 1.

Through ``main()`` (the console script), which turns the parser's boxed usage errors and
wasmq's own errors into one line each.
"""

from __future__ import annotations

import json

import pytest
import redis

from runtime.client import Client
from runtime.errors import TaskNotFound, UnknownTask
from runtime.queue import keys
from runtime.scheduling import cron_entries
from runtime.settings import Settings
from tests.runtime.cli.conftest import Main

DIGEST = "ab" * 32


def register_names(client: redis.Redis, *names: str) -> None:
    for name in names:
        client.hset(keys.TASK_REGISTRY, name, json.dumps({"digest": DIGEST, "version": 1}))


def test_a_missing_task_is_an_error_line(wasmq_main: Main, settings: Settings) -> None:
    for command in ("status", "result", "cancel"):
        ran = wasmq_main(command, "no-such-id", redis_url=settings.redis_url)
        assert (ran.code, ran.stderr, ran.stdout) == (1, "error: no task no-such-id\n", "")


def test_a_missing_cron_entry_is_named_as_one(wasmq_main: Main, settings: Settings) -> None:
    for command in ("rm", "pause", "resume"):
        ran = wasmq_main("cron", command, "nope", redis_url=settings.redis_url)
        assert (ran.code, ran.stderr) == (1, "error: no cron entry nope\n")


def test_cron_entry_not_found_is_still_a_task_not_found(redis_client: redis.Redis) -> None:
    # Callers written against TaskNotFound keep working.
    with pytest.raises(TaskNotFound, match=r"^no cron entry nope$"):
        cron_entries.remove(redis_client, "nope")


def test_a_bad_integer_is_one_usage_line(wasmq_main: Main, settings: Settings) -> None:
    ran = wasmq_main("enqueue", "echo", "--max-retries", "abc", redis_url=settings.redis_url)
    assert ran.code == 2
    assert ran.stderr == (
        "error: invalid value for '--max-retries': 'abc' is not a valid integer;"
        " see 'wasmq enqueue --help'\n"
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("enqueue",), "error: missing argument 'name'; see 'wasmq enqueue --help'"),
        (("list", "--bogus"), "error: no such option: --bogus; see 'wasmq list --help'"),
        (("cron", "list", "--runs", "x"), "error: invalid value for '--runs': 'x' is not"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    wasmq_main: Main, args: tuple[str, ...], line: str
) -> None:
    ran = wasmq_main(*args)
    assert ran.code == 2 and ran.stdout == ""
    assert ran.stderr.startswith(line) and ran.stderr.count("\n") == 1, ran.stderr


def test_a_command_typo_suggests_on_one_line(wasmq_main: Main) -> None:
    ran = wasmq_main("enquee")
    assert ran.code == 2
    assert ran.stderr == (
        "error: no such command 'enquee': did you mean 'enqueue'? (see 'wasmq --help')\n"
    )


def test_a_task_name_typo_suggests_the_registered_name(
    wasmq_main: Main, settings: Settings, redis_client: redis.Redis
) -> None:
    register_names(redis_client, "task_1", "other")
    ran = wasmq_main("enqueue", "tsk_1", redis_url=settings.redis_url)
    assert ran.code == 1
    assert ran.stderr == (
        "error: unknown task 'tsk_1': did you mean 'task_1'?"
        " (register it with wasmq register PATH)\n"
    )
    far = wasmq_main("enqueue", "zzzz", redis_url=settings.redis_url)
    assert far.stderr == "error: unknown task 'zzzz': register it with wasmq register PATH\n"
    assert redis_client.llen(keys.pending()) == 0


def test_the_python_client_suggests_too(settings: Settings, redis_client: redis.Redis) -> None:
    register_names(redis_client, "resize_image")
    client = Client(settings=settings, client=redis_client)
    with pytest.raises(UnknownTask, match="did you mean 'resize_image'") as refused:
        client.enqueue("resize_imge", b"")
    assert refused.value.suggestions == ["resize_image"]
    assert client.enqueue("resize_image", b"").task_name == "resize_image"


def test_help_version_and_no_args_behave_as_before(wasmq_main: Main) -> None:
    from wasmq import __version__

    version = wasmq_main("--version")
    assert (version.code, version.stdout) == (0, f"wasmq {__version__}\n")
    helped = wasmq_main("enqueue", "--help")
    assert helped.code == 0 and "--max-retries" in helped.stdout and helped.stderr == ""
    bare = wasmq_main()
    assert bare.code == 2 and "Usage: wasmq" in bare.stdout and "enqueue" in bare.stdout
    group = wasmq_main("cron")
    assert group.code == 2 and "Usage: wasmq cron" in group.stdout


def test_a_commands_own_exit_code_passes_through(wasmq_main: Main, settings: Settings) -> None:
    # `wasmq run` exits 2 (typer.Exit) when it cannot run its target.
    ran = wasmq_main("run", "nothing_here", redis_url=settings.redis_url)
    assert ran.code == 2 and ran.stderr.startswith("error: nothing_here is neither")
