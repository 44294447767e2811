"""Options that take one of a fixed set refuse anything else, and counts have ceilings.

The CLI refuses through ``main()`` with one usage line (exit 2); the Python client refuses
the same values itself.
"""

from __future__ import annotations

import pytest
import redis

from runtime.cli import bench, queue
from runtime.client import Client
from runtime.errors import InvalidTask
from runtime.queue import ceilings
from runtime.queue.task import Stage
from runtime.settings import LOG_LEVELS, Settings
from tests.runtime.cli.conftest import Main


def test_an_unknown_stage_is_refused_with_the_stages(wasmq_main: Main, settings: Settings) -> None:
    ran = wasmq_main("list", "--stage", "bogus", redis_url=settings.redis_url)
    stages = ", ".join(s.value for s in Stage)
    assert ran.code == 2 and ran.stdout == ""
    assert ran.stderr == (
        f"error: invalid value for '--stage': 'bogus' is not one of {stages};"
        " see 'wasmq list --help'\n"
    )
    # Case does not matter, as for the settings.
    ok = wasmq_main("list", "--stage", "FAILED", "--json", redis_url=settings.redis_url)
    assert (ok.code, ok.stdout.strip()) == (0, "[]")


@pytest.mark.parametrize(
    ("args", "values"),
    [
        (("--log-level", "loud", "workers"), ", ".join(LOG_LEVELS)),
        (("--log-format", "xml", "workers"), "pretty, json"),
        (("logs", "some-id", "--stream", "stdin"), "stdout, stderr"),
        (("new", "x", "--lang", "cobol"), "go, c, zig"),
    ],
)
def test_every_fixed_set_is_checked(wasmq_main: Main, args: tuple[str, ...], values: str) -> None:
    ran = wasmq_main(*args)
    assert ran.code == 2
    assert ran.stderr.startswith("error: invalid value for '--") and values in ran.stderr
    assert ran.stderr.count("\n") == 1


def test_the_client_refuses_an_unknown_stage(settings: Settings, redis_client: redis.Redis) -> None:
    client = Client(settings=settings, client=redis_client)
    with pytest.raises(InvalidTask, match="invalid stage 'bogus': use one of pending, "):
        client.list_page(stage="bogus")
    assert client.list_page(stage="failed").tasks == []


@pytest.mark.parametrize(
    ("args", "ceiling"),
    [
        (("enqueue", "echo", "--max-retries", "1000000000000"), ceilings.MAX_RETRIES),
        (("list", "-n", "10001"), ceilings.LIST_LIMIT),
        (("list", "--scan", "2000000"), ceilings.LIST_SCAN),
        (("dlq", "list", "--limit", "99999"), ceilings.DLQ_LIMIT),
        (("worker", "-c", "100000"), queue.MAX_CONCURRENCY),
        (("bench", "-n", "100000000"), bench.MAX_TASKS),
    ],
)
def test_counts_over_their_ceiling_are_refused(
    wasmq_main: Main, args: tuple[str, ...], ceiling: int
) -> None:
    ran = wasmq_main(*args)
    assert ran.code == 2 and ran.stdout == ""
    assert f"is over the ceiling of {ceiling};" in ran.stderr
    assert ran.stderr.startswith("error: invalid value for '") and ran.stderr.count("\n") == 1


def test_a_count_at_its_ceiling_is_accepted(
    wasmq_main: Main, settings: Settings, redis_client: redis.Redis
) -> None:
    ran = wasmq_main("list", "-n", str(ceilings.LIST_LIMIT), redis_url=settings.redis_url)
    assert ran.code == 0, ran.stderr


def test_the_client_refuses_counts_over_their_ceiling(
    settings: Settings, redis_client: redis.Redis
) -> None:
    client = Client(settings=settings, client=redis_client)
    over = ceilings.MAX_RETRIES + 1
    with pytest.raises(InvalidTask, match=f"max retries {over}: the most allowed is 100$"):
        client.task("echo", b"", max_retries=over)
    assert client.task("echo", b"", max_retries=ceilings.MAX_RETRIES).max_retries == 100
    with pytest.raises(InvalidTask, match="dead-letter limit"):
        client.dlq_list(limit=ceilings.DLQ_LIMIT + 1)
    with pytest.raises(InvalidTask, match="list limit"):
        client.list_page(limit=ceilings.LIST_LIMIT + 1)
