"""Registration of pre-initialized modules against the real server: the snapshot stored
next to its source, the snapshot index shared through Redis, turning snapshots off,
what is not snapshotted and why, prune, and a snapshot lost everywhere."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest
import redis
import wasmtime

from runtime.modules.cache import forget_memory, sha256
from runtime.modules.registry import Registry, TaskRecord
from runtime.queue import keys
from runtime.sandbox import Outcome, Sandbox, TaskLimits
from runtime.sandbox.engine import engine_tag, get_engine
from runtime.settings import Settings

LIMITS = TaskLimits(timeout=20.0, memory=64 << 20, result=1 << 20, logs=1 << 20)

#: ``_initialize`` counts its runs in a global and draws 16 random bytes into memory;
#: ``execute`` counts its own runs and returns (inits, runs, the random bytes, MARK).
#: The random draw makes every snapshot of it different: two equal digests mean one
#: snapshot was reused, not taken twice.
STATEFUL = r"""
(module
  (import "wasi_snapshot_preview1" "random_get"
    (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (global $inits (mut i32) (i32.const 0))
  (global $runs (mut i32) (i32.const 0))
  (func (export "_initialize")
    (global.set $inits (i32.add (global.get $inits) (i32.const 1)))
    (drop (call $random_get (i32.const 64) (i32.const 16))))
  (func (export "alloc") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (local.get $p))
  (func (export "execute") (param $ptr i32) (param $len i32) (result i64)
    (global.set $runs (i32.add (global.get $runs) (i32.const 1)))
    (i32.store (i32.const 200) (global.get $inits))
    (i32.store (i32.const 204) (global.get $runs))
    (memory.copy (i32.const 208) (i32.const 64) (i32.const 16))
    (i32.store (i32.const 224) (i32.const MARK))
    (i64.or (i64.shl (i64.const 200) (i64.const 32)) (i64.const 28))))
"""

#: An initializer that traps: registration keeps the module as built.
TRAPPING = r"""
(module
  (memory (export "memory") 1)
  (func (export "_initialize") unreachable)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64) (i64.const 0)))
"""


@pytest.fixture
def registry(settings: Settings, redis_client: redis.Redis) -> Registry:
    forget_memory()
    return Registry(settings, redis_client)


def stateful(tmp_path: Path, mark: int = 7, name: str = "stateful") -> Path:
    path = tmp_path / "src" / f"{name}.wat"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STATEFUL.replace("MARK", str(mark)))
    return path


def run(registry: Registry, sandbox: Sandbox, record: TaskRecord) -> Outcome:
    module = registry.load_module(record.digest)
    return sandbox.run(module, record.digest, b"{}", LIMITS, task_name=record.name)


def decoded(outcome: Outcome) -> tuple[int, int, bytes, int]:
    """(inits, runs, random bytes, mark) of a STATEFUL task."""
    assert outcome.ok, outcome.message
    inits, runs = struct.unpack("<ii", outcome.result[:8])
    return inits, runs, outcome.result[8:24], struct.unpack("<i", outcome.result[24:])[0]


def exports(data: bytes) -> set[str]:
    return {e.name for e in wasmtime.Module(get_engine(False), data).exports}


def snapshot_index(client: redis.Redis) -> dict[bytes, bytes]:
    return dict(client.hgetall(keys.SNAPSHOT_INDEX))


def stored_digests(client: redis.Redis) -> set[str]:
    prefix = keys.module("")
    return {k.decode()[len(prefix) :] for k in client.scan_iter(match=f"{prefix}*")}


def test_module_with_initializer_is_registered_as_its_snapshot(
    registry: Registry, settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    source = stateful(tmp_path)
    record = registry.register(source).record
    info = record.snapshot
    assert info is not None and info.taken, info
    assert info.kept == ("random",) and info.memory_bytes == 65536 and info.init_ms > 0
    assert record.digest != record.source_digest
    original = bytes(wasmtime.wat2wasm(source.read_text()))
    assert record.source_digest == sha256(original)
    # Redis holds both: the snapshot tasks run, and the module it was made from.
    snap = redis_client.get(keys.module(record.digest))
    assert snap is not None and sha256(snap) == record.digest and record.size == len(snap)
    assert "_initialize" not in exports(snap)
    assert exports(snap) == {"memory", "alloc", "execute"}
    assert redis_client.get(keys.module(record.source_digest)) == original
    assert "_initialize" in exports(original)
    assert (settings.module_dir / "stateful.wasm").read_bytes() == snap
    # Validated, not compiled: the first worker of each machine compiles it.
    native = settings.module_dir / "native" / engine_tag(False)
    assert not (native / f"{record.digest}.cwasm").exists()
    assert registry.get("stateful") == record
    assert registry.versions("stateful") == {1: record.digest}
    (field,) = snapshot_index(redis_client)
    assert field.decode().endswith(f":{record.source_digest}:stateful")


def test_registering_again_reuses_the_snapshot(
    registry: Registry, redis_client: redis.Redis, sandbox: Sandbox, tmp_path: Path
) -> None:
    source = stateful(tmp_path)
    first = registry.register(source).record
    index = snapshot_index(redis_client)
    # Every snapshot of STATEFUL differs (random bytes): another name gets its own.
    other = registry.register(source, name="other").record
    assert other.source_digest == first.source_digest and other.digest != first.digest
    again = registry.register(source)
    assert (again.cache_hit, again.changed) == (True, False)
    assert again.record.digest == first.digest and again.record.version == 1
    assert again.record.snapshot == first.snapshot
    after = snapshot_index(redis_client)
    assert {k: v for k, v in after.items() if k in index} == index
    assert len(after) == 2
    # The snapshot's state is the same in every task, and the initializer ran once.
    one, two = decoded(run(registry, sandbox, first)), decoded(run(registry, sandbox, first))
    assert one == two and one[:2] == (1, 1) and one[3] == 7
    assert decoded(run(registry, sandbox, other))[2] != one[2]


def test_no_snapshot_runs_the_initializer_per_task_and_switching_bumps_the_version(
    registry: Registry, redis_client: redis.Redis, sandbox: Sandbox, tmp_path: Path
) -> None:
    source = stateful(tmp_path)
    snap = registry.register(source).record
    plain = registry.register(source, snapshot=False)
    assert plain.changed and plain.record.version == 2
    record = plain.record
    assert record.digest == record.source_digest == snap.source_digest
    assert record.snapshot is not None and not record.snapshot.taken
    assert "--no-snapshot" in record.snapshot.reason
    assert registry.get("stateful") == record
    one, two = decoded(run(registry, sandbox, record)), decoded(run(registry, sandbox, record))
    assert one[:2] == two[:2] == (1, 1)
    assert one[2] != two[2], "each task ran _initialize and drew its own random bytes"
    back = registry.register(source)
    assert back.changed and back.record.version == 3 and back.record.digest == snap.digest
    assert registry.versions("stateful") == {1: snap.digest, 2: snap.source_digest, 3: snap.digest}


def test_the_setting_turns_snapshots_off(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    forget_memory()
    from_env = Settings.load(
        {"redis_url": settings.redis_url, "module_dir": settings.module_dir},
        environ={"WASMQ_SNAPSHOT": "0"},
        env_file=None,
    )
    assert from_env.snapshot is False
    off = Registry(from_env, redis_client)
    record = off.register(stateful(tmp_path)).record
    assert record.digest == record.source_digest
    assert record.snapshot is not None and not record.snapshot.taken
    assert "WASMQ_SNAPSHOT=0" in record.snapshot.reason
    assert snapshot_index(redis_client) == {}
    # The argument wins over the setting.
    forced = off.register(stateful(tmp_path), snapshot=True).record
    assert forced.snapshot is not None and forced.snapshot.taken and forced.version == 2


def test_a_module_without_initializer_has_no_snapshot(
    registry: Registry, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "echo.wat"
    path.write_bytes((Path(__file__).parents[3] / "tasks" / "echo.wat").read_bytes())
    record = registry.register(path).record
    assert record.snapshot is None and record.digest == record.source_digest
    assert record.to_json()["snapshot"] is None
    assert snapshot_index(redis_client) == {}


def test_a_task_with_capabilities_is_not_snapshotted(
    registry: Registry, redis_client: redis.Redis, tmp_path: Path
) -> None:
    record = registry.register(stateful(tmp_path), capabilities={"env": {"MODE": "x"}}).record
    assert record.digest == record.source_digest
    assert record.snapshot is not None and not record.snapshot.taken
    assert "capabilities" in record.snapshot.reason
    assert snapshot_index(redis_client) == {}


def test_a_trapping_initializer_registers_as_built_and_fails_at_run_time(
    registry: Registry, redis_client: redis.Redis, sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "trapping.wat"
    path.write_text(TRAPPING)
    record = registry.register(path).record
    assert record.digest == record.source_digest
    assert record.snapshot is not None and not record.snapshot.taken
    assert record.snapshot.reason.startswith("its initialization failed")
    assert snapshot_index(redis_client) == {}
    outcome = run(registry, sandbox, record)
    assert (outcome.kind, outcome.trap_code, outcome.phase) == (
        "trap",
        "unreachable",
        "_initialize",
    )


def test_a_snapshot_runs_on_a_machine_sharing_only_redis(
    registry: Registry, settings: Settings, sandbox: Sandbox, tmp_path: Path
) -> None:
    record = registry.register(stateful(tmp_path)).record
    here = decoded(run(registry, sandbox, record))
    forget_memory()
    elsewhere = Registry(
        dataclasses.replace(settings, module_dir=tmp_path / "other-machine"), registry.client
    )
    current = elsewhere.get("stateful")
    assert current == record
    assert decoded(run(elsewhere, sandbox, current)) == here
    assert (tmp_path / "other-machine" / "sha256" / f"{record.digest}.wasm").is_file()
    # Registering the same source there finds the snapshot in the index.
    forget_memory()
    again = elsewhere.register(stateful(tmp_path / "other-src")).record
    assert again.digest == record.digest and again.version == 1


def test_prune_deletes_unused_snapshots_and_keeps_every_used_module(
    registry: Registry, redis_client: redis.Redis, sandbox: Sandbox, tmp_path: Path
) -> None:
    a1 = registry.register(stateful(tmp_path, 1, "a")).record
    a2 = registry.register(stateful(tmp_path, 2, "a")).record
    assert a2.version == 2 and a2.source_digest != a1.source_digest
    b = registry.register(stateful(tmp_path, 3, "b")).record
    # c runs b's source as built: b's source module is c's module.
    c = registry.register(stateful(tmp_path, 3, "b"), name="c", snapshot=False).record
    assert c.digest == b.source_digest
    assert registry.prune() == (1, 1)  # a's first source: no task runs it
    assert redis_client.get(keys.module(a1.source_digest)) is None
    assert registry.remove("b")
    # b's snapshot goes with its index entry; its source stays (c runs it).
    assert registry.prune() == (1, 1)
    assert stored_digests(redis_client) == {a1.digest, a2.digest, a2.source_digest, c.digest}
    assert {v.decode() for v in redis_client.hvals(keys.COMPILE_INDEX)} == {
        a2.source_digest,
        c.digest,
    }
    assert len(snapshot_index(redis_client)) == 2  # a's two, whose snapshots a's versions run
    assert registry.prune() == (0, 0)
    # Both versions of a still run, from Redis alone.
    forget_memory()
    elsewhere = Registry(
        dataclasses.replace(registry.settings, module_dir=tmp_path / "other"), redis_client
    )
    assert decoded(run(elsewhere, sandbox, a1))[3] == 1
    assert decoded(run(elsewhere, sandbox, a2))[3] == 2
    for name in ("a", "c"):
        registry.remove(name)
    assert registry.prune() == (4, 4)
    assert stored_digests(redis_client) == set()
    assert snapshot_index(redis_client) == {} and redis_client.hlen(keys.COMPILE_INDEX) == 0


def test_a_snapshot_gone_everywhere_is_taken_again(
    registry: Registry,
    settings: Settings,
    redis_client: redis.Redis,
    sandbox: Sandbox,
    tmp_path: Path,
) -> None:
    source = stateful(tmp_path)
    first = registry.register(source).record
    redis_client.delete(keys.module(first.digest))
    for path in settings.module_dir.rglob(f"{first.digest}.*"):
        path.unlink()
    (settings.module_dir / "stateful.wasm").unlink()
    forget_memory()
    reg = registry.register(source)
    record = reg.record
    assert record.snapshot is not None and record.snapshot.taken
    assert record.digest not in (first.digest, record.source_digest)
    assert (reg.changed, record.version) == (True, 2)
    assert redis_client.get(keys.module(record.digest)) is not None
    (entry,) = snapshot_index(redis_client).values()
    assert record.digest in entry.decode()
    assert decoded(run(registry, sandbox, record))[:2] == (1, 1)


def test_a_snapshot_gone_from_redis_only_is_sent_again(
    registry: Registry, redis_client: redis.Redis, tmp_path: Path
) -> None:
    source = stateful(tmp_path)
    first = registry.register(source).record
    redis_client.delete(keys.module(first.digest))
    again = registry.register(source)
    assert again.record.digest == first.digest and not again.changed
    assert sha256(redis_client.get(keys.module(first.digest)) or b"") == first.digest
