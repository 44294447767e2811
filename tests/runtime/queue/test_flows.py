"""Chains, groups and chords against the real server, driven the way workers drive tasks.

Each member is claimed and finished through the broker as a worker would (the seeding
helpers), so the flow hooks run inside the real ack, nack and redrive scripts.
"""

from __future__ import annotations

import json

import pytest
import redis

from runtime.client import Client
from runtime.errors import UnknownTask
from runtime.queue import keys
from runtime.queue.broker import Report
from runtime.queue.flows import FlowNotFound
from runtime.queue.task import Task
from runtime.settings import Settings
from tests.support.seeding import register, run


@pytest.fixture
def client(redis_client: redis.Redis, settings: Settings) -> Client:
    register(redis_client, "job", "sum")
    return Client(settings=settings, client=redis_client)


def stage(r: redis.Redis, task_id: str) -> bytes | None:
    return r.hget(keys.task(task_id), "task_stage")  # type: ignore[return-value]


def payload(r: redis.Redis, task_id: str) -> bytes:
    raw = r.hget(keys.task(task_id), "payload")
    if raw is None:
        raw = r.get(keys.payload(task_id))
    assert raw is not None
    return raw  # type: ignore[return-value]


def test_chain_passes_each_result_to_the_next_step(
    client: Client, redis_client: redis.Redis
) -> None:
    flow = client.chain(("job", {"n": 1}), "job", ("sum", "own"), "job")
    first, second, third, fourth = flow.member_ids
    assert stage(redis_client, first) == b"pending"
    assert not redis_client.exists(keys.task(second))
    assert client.flow(flow.id).stages == {"pending": 1, "waiting": 3}
    run(client.broker, result=b'{"r": 0}')
    assert payload(redis_client, second) == b'{"r": 0}'
    run(client.broker, result=b"plain text")
    # A step with a payload of its own gets it beside the previous result.
    assert json.loads(payload(redis_client, third)) == {"payload": "own", "previous": "plain text"}
    big = b"x" * (keys.FLOW_INLINE_MAX + 1)
    run(client.broker, result=big)
    # A large result is copied into the payload key, never through the record.
    assert redis_client.hget(keys.task(fourth), "payload_ref") == b"1"
    (task,) = client.broker.claim(["default"], "w", 1)
    assert isinstance(task, Task) and task.payload == big
    client.broker.finish([Report(task, ok=True, result=b"end")])
    status = client.flow(flow.id)
    assert (status.state, status.completed, status.stages) == ("completed", 4, {"completed": 4})
    assert redis_client.pttl(keys.flow(flow.id)) > 0


def test_failed_step_stops_the_chain_and_redrive_continues_it(
    client: Client, redis_client: redis.Redis
) -> None:
    flow = client.chain("job", "job", max_retries=0)
    first, second = flow.member_ids
    run(client.broker, ok=False, error="boom", error_kind="trap")
    status = client.flow(flow.id)
    assert (status.state, status.failed, status.stages) == (
        "failed",
        1,
        {"failed": 1, "waiting": 1},
    )
    assert client.dlq_redrive([first]) == [first]
    assert (client.flow(flow.id).state, client.flow(flow.id).failed) == ("running", 0)
    run(client.broker, result=b"again")
    assert payload(redis_client, second) == b"again"
    run(client.broker, result=b"last")
    assert client.flow(flow.id).state == "completed"


def test_group_status_counts_members_by_outcome(client: Client) -> None:
    flow = client.group(["job", ("job", "b"), ("job", "c")], max_retries=0)
    assert client.flow(flow.id).stages == {"pending": 3}
    run(client.broker, result=b"1")
    run(client.broker, ok=False, error="no", error_kind="trap")
    status = client.flow(flow.id)
    assert (status.state, status.completed, status.failed, status.total) == ("running", 1, 1, 3)
    assert status.stages == {"completed": 1, "failed": 1, "pending": 1}
    run(client.broker, result=b"3")
    assert client.flow(flow.id).state == "failed"
    client.dlq_redrive([flow.member_ids[1]])
    assert client.flow(flow.id).state == "running"
    run(client.broker, result=b"2")
    assert client.flow(flow.id).to_json()["state"] == "completed"


def test_chord_callback_runs_once_with_results_in_member_order(
    client: Client, redis_client: redis.Redis
) -> None:
    flow = client.chord([("job", str(i)) for i in range(5)], "sum", max_retries=0)
    assert flow.callback_id is not None
    tasks = client.broker.claim(["default"], "w", 5)
    by_id = {t.id: t for t in tasks if isinstance(t, Task)}
    results = [b'{"a": [1, 2]}', b"not json", b"0x10", b"", b"-2.5e3"]
    # Members end out of order; one of them fails first and is redriven.
    order = [3, 0, 4, 1]
    for i in order:
        client.broker.finish([Report(by_id[flow.member_ids[i]], ok=True, result=results[i])])
    client.broker.finish(
        [Report(by_id[flow.member_ids[2]], ok=False, error="x", error_kind="trap")]
    )
    assert client.flow(flow.id).state == "failed"
    assert not redis_client.exists(keys.task(flow.callback_id))
    client.dlq_redrive([flow.member_ids[2]])
    (again,) = client.broker.claim(["default"], "w", 1)
    assert isinstance(again, Task)
    # A late duplicate ack of the last member and the real one: one callback only.
    assert client.broker.finish([Report(again, ok=True, result=results[2])] * 2) == [
        "completed",
        "duplicate",
    ]
    assert redis_client.lrange(keys.pending(), 0, -1) == [flow.callback_id.encode()]
    body = payload(redis_client, flow.callback_id)
    assert json.loads(body) == [{"a": [1, 2]}, "not json", "0x10", "", -2500.0]
    assert body.startswith(b'[{"a": [1, 2]},')  # JSON results are embedded as they are
    assert client.flow(flow.id).callback_stage == "pending"
    run(client.broker, result=b"total")
    status = client.flow(flow.id)
    assert (status.state, status.completed, status.callback_stage) == ("completed", 5, "completed")


def test_cancel_of_a_flow_cancels_waiting_and_marks_running_members(
    client: Client, redis_client: redis.Redis
) -> None:
    flow = client.group(["job", "job", "job"])
    (running,) = client.broker.claim(["default"], "w", 1)
    pubsub = redis_client.pubsub()
    pubsub.subscribe(keys.CANCEL_CHANNEL)
    assert pubsub.get_message(timeout=1) is not None  # the subscribe confirmation
    assert client.cancel_flow(flow.id) == ("cancelled", 2, 1)
    message = pubsub.get_message(timeout=2)
    assert message is not None and message["data"] == running.id.encode()
    pubsub.close()
    assert [stage(redis_client, i) for i in flow.member_ids] == [b"cancelled"] * 3
    assert redis_client.llen(keys.pending()) == 0
    assert client.flow(flow.id).state == "cancelled"
    assert client.cancel(flow.id) == "final"


def test_cancelled_chain_never_starts_its_later_steps(
    client: Client, redis_client: redis.Redis
) -> None:
    flow = client.chain("job", "job")
    (running,) = client.broker.claim(["default"], "w", 1)
    assert client.cancel(flow.id) == "cancelled"
    assert client.broker.finish([Report(running, ok=True, result=b"r")]) == ["cancelled"]
    assert not redis_client.exists(keys.task(flow.member_ids[1]))
    assert client.flow(flow.id).stages == {"cancelled": 1, "waiting": 1}


def test_unknown_task_or_id_makes_nothing(client: Client, redis_client: redis.Redis) -> None:
    with pytest.raises(UnknownTask, match="jbo"):
        client.chain("job", "jbo")
    assert redis_client.llen(keys.pending()) == 0
    assert not redis_client.keys("wasmq:flow*")
    with pytest.raises(FlowNotFound, match=r"^no flow nope$"):
        client.flow("nope")
    same = client.group(["job"], id="g1")
    assert client.group(["job", "job"], id="g1") == same
    assert redis_client.llen(keys.pending()) == 1


def test_flow_member_keeps_its_flow_fields(client: Client) -> None:
    flow = client.chord(["job"], "sum")
    task = client.broker.claim(["default"], "w", 1)[0]
    assert isinstance(task, Task)
    assert task.id == flow.member_ids[0]
    assert client.redis.hmget(keys.task(task.id), "flow", "flow_index") == [
        flow.id.encode(),
        b"0",
    ]


def test_status_follow_of_a_flow_prints_each_change_until_it_ends(
    client: Client, redis_client: redis.Redis, redis_url: str
) -> None:
    from typer.testing import CliRunner

    from runtime.cli import app

    flow = client.group(["job", "job"])
    follow = ["--redis-url", redis_url, "status", flow.id, "--follow"]
    running = CliRunner().invoke(app, [*follow, "--wait-timeout", "300ms"])
    assert running.exit_code == 0, running.output
    assert "running   0/2 completed, 0 failed  (2 pending)" in running.output
    run(client.broker, result=b"1")
    run(client.broker, result=b"2")
    ended = CliRunner().invoke(app, [*follow, "--json"])
    assert ended.exit_code == 0, ended.output
    (line,) = ended.output.splitlines()
    assert json.loads(line)["state"] == "completed"
    missing = CliRunner().invoke(app, ["--redis-url", redis_url, "status", "nope", "--follow"])
    assert missing.exit_code != 0 and str(missing.exception) == "no task nope"
