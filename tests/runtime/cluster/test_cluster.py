"""wasmq on a real Redis Cluster: three Valkey masters with a replica each.

Every kind of script call runs against queues whose slots are on different masters (a
call that touched two slots would fail with CROSSSLOT), a worker pool runs tasks of two
such queues, and a master killed mid-run is replaced by its replica while the pool
finishes every task.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from runtime.bench import server_usage
from runtime.client import Client
from runtime.errors import InvalidTask
from runtime.modules.registry import Registry
from runtime.queue import keys
from runtime.queue import throttles as limit_store
from runtime.queue.broker import Report
from runtime.queue.task import ErrorKind, Stage
from runtime.scheduling.scheduler import Scheduler
from tests.support.cli import cli_env
from tests.support.cluster import LocalCluster
from tests.support.pools import FAST, SPIN_WAT, Pools, wait_for
from tests.support.private import private_settings

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    nodes = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield nodes.start()
    finally:
        nodes.stop()
        keys.use_layout("reference")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cluster-client")


@pytest.fixture(scope="module")
def client(cluster: LocalCluster, root: Path) -> Iterator[Client]:
    c = Client(settings=private_settings(cluster.url, root))
    source = root / "spin.wat"
    source.write_text(SPIN_WAT)
    Registry(c.settings, c.redis).register(source)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def queues(cluster: LocalCluster) -> tuple[str, str]:
    """Two queue names whose hash tags are served by different masters."""
    by_master: dict[int, str] = {}
    for i in range(100):
        name = f"q{i}"
        by_master.setdefault(cluster.master_of(keys.tag(name)), name)
        if len(by_master) >= 2:
            break
    first, second = list(by_master.values())[:2]
    return first, second


#: keys.py names whose key differs by layout: code outside keys.py and the script loader
#: asks keys.py's functions (which take the queue) for them, or it would address the
#: reference layout's key on a cluster.
LAYOUT_NAMES = [
    "SCHEDULED",
    "TIMEOUT",
    "LIMITS",
    "LIMIT_DUE",
    "LIMIT_RUNNING_PREFIX",
    "LIMIT_RATE_PREFIX",
    "LIMIT_WAITING_PREFIX",
    "CRON_LAST_RUN",
    "CRON_PAUSED",
    "SCHEDULER_WAKE",
    "UNIQUE_PREFIX",
    "INDEX_QUEUE_PREFIX",
    "INDEX_NAME_PREFIX",
    "WORKER_WAKE_PREFIX",
    "WAKE_PREFIX",
    "IDLE_PREFIX",
    "THROUGHPUT_PREFIX",
    "QUEUE_PREFIX",
    "TASK_REGISTRY",
    "REGISTRY_GENERATION",
    "MODULE_PREFIX",
    "TASK_VERSIONS_PREFIX",
    "COMPILE_INDEX",
    "SNAPSHOT_INDEX",
]


def test_no_runtime_code_names_a_key_whose_name_depends_on_the_layout() -> None:
    runtime = Path(__file__).parents[3] / "runtime"
    allowed = {runtime / "queue" / "keys.py", runtime / "queue" / "scripts.py"}
    found = []
    for path in sorted(runtime.rglob("*.py")):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "keys"
                and node.attr in LAYOUT_NAMES
            ):
                found.append(f"{path.relative_to(runtime.parent)}:{node.lineno} keys.{node.attr}")
    assert not found, "use the keys.py function that takes the queue: " + ", ".join(found)


def _stage(client: Client, task_id: str) -> str:
    raw = client.redis.hget(keys.task(task_id), "task_stage")
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def test_the_cluster_url_selects_the_tagged_layout(client: Client, queues: tuple[str, str]) -> None:
    assert keys.layout() == "tagged"
    task = client.enqueue("spin", "x", queue=queues[0])
    assert task.id.startswith("{" + queues[0] + "}")
    assert client.redis.exists(keys.task(task.id))
    assert keys.pending(queues[0]) == f"task_queue:{{{queues[0]}}}:pending"


def test_user_ids_get_their_queue_tag_and_a_foreign_tag_is_refused(
    client: Client, queues: tuple[str, str]
) -> None:
    a, b = queues
    task = client.enqueue("spin", "x", queue=a, id="mine")
    assert task.id == "{" + a + "}mine"
    with pytest.raises(InvalidTask, match="belongs to queue"):
        client.enqueue("spin", "x", queue=b, id="{" + a + "}other")
    # Its queue's keys are where the tag says: without it, the id is refused in one line.
    with pytest.raises(InvalidTask, match="give the whole id"):
        client.cancel("mine")


def test_every_script_kind_runs_on_queues_of_two_masters(
    client: Client, queues: tuple[str, str]
) -> None:
    broker = client.broker
    for queue in queues:
        # enqueue, claim, ack
        done = client.enqueue("spin", "a", queue=queue)
        claimed = broker.claim([queue], "w1", 10)
        assert [t.id for t in claimed if not isinstance(t, Exception)][:1]
        reports = [Report(task=t, ok=True, result=b"ok") for t in claimed]  # type: ignore[arg-type]
        assert set(broker.finish(reports)) == {"completed"}
        assert _stage(client, done.id) == "completed"
        # nack: a retry, then dead letter, then redrive and purge
        failing = client.enqueue("spin", "b", queue=queue, max_retries=0)
        (task,) = broker.claim([queue], "w1", 1)
        report = Report(task=task, ok=False, error="boom", error_kind=ErrorKind.TRAP)  # type: ignore[arg-type]
        report.retryable = True
        assert broker.finish([report]) == ["failed"]
        assert [t.id for t in client.dlq_list(queue)] == [failing.id]
        assert client.dlq_redrive(queue=queue, latest=True) == [failing.id]
        assert _stage(client, failing.id) == "pending"
        # release, recover and cancel
        (again,) = broker.claim([queue], "w2", 1)
        assert broker.release([again], "w2") == 1  # type: ignore[list-item]
        (again,) = broker.claim([queue], "w3", 1)
        assert broker.recover_worker("w3", [queue], [again.id], "died") == (1, 0, 0)
        assert client.cancel(failing.id) == "cancelled"
        # schedule, promote, reap
        later = client.schedule("spin", "c", queue=queue, delay=0.05)
        time.sleep(0.1)
        Scheduler(client.redis, client.settings).run_once()
        assert _stage(client, later.id) == "pending"
        assert broker.reap() == []
        # unique tasks are unique per queue
        first = client.enqueue("spin", "u", queue=queue, unique_key="k")
        second = client.enqueue("spin", "u2", queue=queue, unique_key="k")
        assert second.id == first.id
    # a claim over both queues, in order, one call each
    both = broker.claim(list(queues), "w4", 100)
    assert {t.queue for t in both} == set(queues)


def test_scheduled_sets_and_leases_are_scored_in_seconds_per_queue(
    client: Client, queues: tuple[str, str]
) -> None:
    broker = client.broker
    for queue in queues:
        later = client.schedule("spin", "s", queue=queue, delay=3600)
        score = client.redis.zscore(keys.scheduled(queue), later.id)
        assert score is not None and abs(score - (time.time() + 3600)) < 60
        client.cancel(later.id)
        task = client.enqueue("spin", "l", queue=queue)
        (claimed,) = broker.claim([queue], "w-seconds", 1)
        assert claimed.id == task.id  # type: ignore[union-attr]
        lease = client.redis.zscore(keys.timeout(queue), task.id)
        assert lease is not None and time.time() < lease < time.time() + 3600
        # An expired lease (in seconds) of this queue is found by a reap of every queue.
        client.redis.zadd(keys.timeout(queue), {task.id: time.time() - 1}, xx=True)
        assert (task.id, "requeued") in broker.reap()
        assert client.redis.zscore(keys.timeout(queue), task.id) is None


def test_compat_mode_and_a_dead_first_node_in_the_url(
    cluster: LocalCluster, queues: tuple[str, str], root: Path
) -> None:
    from tests.support.cluster import free_ports

    (dead,) = free_ports(1)
    url = cluster.url.replace("redis+cluster://", f"redis+cluster://127.0.0.1:{dead},")
    settings = dataclasses.replace(private_settings(url, root), reference_compat=True)
    compat = Client(settings=settings)
    try:
        later = compat.schedule("spin", "s", queue=queues[0], delay=3600)
        fields = compat.redis.hmget(keys.task(later.id), ["task_stage", "wasmq_stage"])
        assert fields == [b"pending", b"scheduled"]
        assert compat.status(later.id).stage == Stage.SCHEDULED
        compat.cancel(later.id)
    finally:
        compat.close()


def test_cron_entries_fire_pause_resume_and_remove(client: Client, queues: tuple[str, str]) -> None:
    from runtime.scheduling import cron_entries

    for queue in queues:
        entry = client.cron("spin", "@every 1s", "tick", queue=queue)
        assert entry.id.startswith("{" + queue + "}")
        scheduler = Scheduler(client.redis, client.settings)
        deadline = time.monotonic() + 5
        while scheduler.last.cron_runs == 0 and time.monotonic() < deadline:
            scheduler.run_once()
            time.sleep(0.1)
        assert scheduler.last.cron_runs >= 1
        assert [e.id for e in cron_entries.list_entries(client.redis) if e.id == entry.id]
        assert cron_entries.pause(client.redis, entry.id)
        assert cron_entries.resume(client.redis, entry.id)
        cron_entries.remove(client.redis, entry.id)
        assert not client.redis.exists(keys.task(entry.id))


def test_a_registration_reaches_batches_and_flows_of_a_client_with_a_fresh_copy(
    cluster: LocalCluster, client: Client, queues: tuple[str, str], root: Path
) -> None:
    a, b = queues
    other = Client(settings=private_settings(cluster.url, root))
    try:
        # The other client has just checked both queues' registry copies: it trusts them
        # for a second, during which the new task is missing from them.
        other.enqueue("spin", "x", queue=a)
        other.enqueue("spin", "x", queue=b)
        source = root / "fresh.wat"
        source.write_text(SPIN_WAT)
        Registry(client.settings, client.redis).register(source, name="fresh")
        batch = other.enqueue_many([("fresh", b"1"), ("fresh", b"2")], queue=a)
        assert all(client.redis.exists(keys.task(t.id)) for t in batch)
        flow = other.chain(("fresh", "1"), ("fresh", "2"), queue=b)
        assert other.flow(flow.id).state == "running"
    finally:
        other.close()


def test_a_chain_runs_in_one_queue_and_two_queues_are_refused(
    client: Client, queues: tuple[str, str]
) -> None:
    a, b = queues
    flow = client.chain(("spin", "1"), ("spin", "2"), queue=a)
    assert flow.id.startswith("{" + a + "}")
    status = client.flow(flow.id)
    assert status.state == "running"
    with pytest.raises(InvalidTask, match="one queue"):
        client.chain(client.task("spin", queue=a), client.task("spin", queue=b))
    assert client.cancel_flow(flow.id)[0] == "cancelled"


def test_a_queue_limit_and_the_read_side(client: Client, queues: tuple[str, str]) -> None:
    a, _ = queues
    client.set_limit(queue=a, concurrency=1)
    for _ in range(3):
        client.enqueue("spin", "l", queue=a)
    claimed = client.broker.claim([a], "w5", 10)
    assert len(claimed) == 1
    client.broker.finish([Report(task=claimed[0], ok=True)])  # type: ignore[arg-type]
    client.remove_limit(queue=a)
    with pytest.raises(limit_store.InvalidLimit, match="Redis Cluster"):
        client.set_limit(task="spin", concurrency=1)
    stats = client.stats()
    assert stats
    # wasmq bench's server figures: every master's counters, summed.
    usage = server_usage(client.redis)
    assert usage.cpu_us and usage.commands["evalsha"][0] > 0
    assert client.status(claimed[0].id).stage == Stage.COMPLETED
    assert {s.queue for s in stats} >= {a}
    assert client.list_tasks(queue=a, limit=5)


def test_dashboard_pages_and_metrics_read_every_queue(
    client: Client, queues: tuple[str, str]
) -> None:
    from starlette.testclient import TestClient

    from runtime.dashboard.app import create_app

    web = TestClient(create_app(client))
    waiting = {q: client.enqueue("spin", "page", queue=q).id for q in queues}
    due = {q: client.schedule("spin", "later", queue=q, delay=3600).id for q in queues}
    entry = client.cron("spin", "@every 1h", "hourly", queue=queues[1])
    for path in ("/", "/schedules", "/tasks", "/tasks?task=spin", "/metrics"):
        page = web.get(path)
        assert page.status_code == 200, (path, page.text[-2000:])
        text = page.text
        if path == "/schedules":
            assert entry.id in html.unescape(text)
            assert all(i in html.unescape(text) for i in due.values()), path
        if path.startswith("/tasks"):
            # By queue index, and by each queue's index of the name, merged newest first.
            shown = html.unescape(text)
            assert all(i in shown for i in waiting.values()), path
        if path in ("/", "/metrics"):
            assert all(q in text for q in queues), path
    for q in queues:
        metric = f'wasmq_queue_tasks{{queue="{q}",stage="scheduled"}}'
        assert metric in web.get("/metrics").text
    # The other pages read per-task and shared keys only; one task's page from each queue.
    others = ["/dlq", "/workers", "/registry", *(f"/tasks/{i}" for i in waiting.values())]
    for path in others:
        page = web.get(path)
        assert page.status_code == 200, path
        if path.startswith("/tasks/"):
            assert path.removeprefix("/tasks/") in html.unescape(page.text), path
    # One queue and one name: that queue's own index of the name answers it.
    page = client.browse(queue=queues[0], task="spin", limit=200)
    assert waiting[queues[0]] in {t.id for t in page.tasks}
    assert {t.queue for t in page.tasks} == {queues[0]}
    client.cancel(due[queues[0]])
    client.cancel(due[queues[1]])
    from runtime.scheduling import cron_entries

    cron_entries.remove(client.redis, entry.id)


def test_a_pool_runs_two_queues_and_survives_a_master_killed(
    cluster: LocalCluster, client: Client, queues: tuple[str, str], tmp_path: Path, root: Path
) -> None:
    a, b = queues
    env = cli_env(cluster.url, tmp_path, **FAST)
    env["WASMQ_MODULE_DIR"] = str(root / "modules")
    pools = Pools(env, tmp_path)
    try:
        pools.start("--queue", a, "--queue", b, "--concurrency", "2")
        ids = [client.enqueue("spin", "spin:20", queue=q).id for q in (a, b) for _ in range(20)]

        def finished() -> bool:
            return all(_stage(client, i) == "completed" for i in ids)

        wait_for(finished, 60, "the first tasks", pools.logs)
        # Long runs on the queue whose master dies, so that the kill lands mid-run.
        more = [client.enqueue("spin", "spin:400", queue=a).id for _ in range(6)]
        more += [client.enqueue("spin", "spin:50", queue=q).id for q in (a, b) for _ in range(20)]
        running: list[str] = []

        def one_runs() -> bool:
            held = [i.decode() for i in client.redis.lrange(keys.processing(a), 0, -1)]
            # Of these runs: earlier tests leave claims of workers that never were.
            running[:] = [i for i in held if i in more and _stage(client, i) == "in_progress"]
            return bool(running)

        wait_for(one_runs, 30, f"a task of {a} in progress", pools.logs)
        victim = cluster.master_of(keys.tag(a))
        cluster.kill(victim)
        cluster.wait_promoted(keys.tag(a), victim)

        def all_done() -> bool:
            try:
                return all(_stage(client, i) == "completed" for i in more)
            except redis.RedisError:
                return False

        wait_for(all_done, 90, "every task after the failover", pools.logs)
        # The runs that were in flight on the killed master ended too, not only the
        # queued ones: whether their claim reached the replica or not, they completed.
        assert running and all(_stage(client, i) == "completed" for i in running)
    finally:
        pools.stop_all()
