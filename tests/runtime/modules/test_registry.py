"""The registry against the real server and real toolchains: content addressing,
versions, caches (memory, disk, native, Redis), sharing through Redis only, damage."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

import compiler
from runtime.errors import CompileError, InvalidTask, RegistryError
from runtime.modules.cache import STATS, forget_memory, sha256
from runtime.modules.registry import Registry
from runtime.queue import keys
from runtime.sandbox.engine import engine_tag
from runtime.sandbox.limits import Capabilities
from runtime.settings import Settings
from tests.support.paths import TASKS


@pytest.fixture
def registry(settings: Settings, redis_client: redis.Redis, toolchain_cache: Path) -> Registry:
    forget_memory()
    return Registry(settings, redis_client, toolchain_cache=toolchain_cache)


def copy_task(name: str, tmp_path: Path, as_name: str | None = None) -> Path:
    target = tmp_path / "src" / (as_name or name)
    target.parent.mkdir(exist_ok=True)
    target.write_bytes((TASKS / name).read_bytes())
    return target


def test_register_records_everything(
    registry: Registry, settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    reg = registry.register(copy_task("echo.wat", tmp_path))
    record = reg.record
    assert (reg.cache_hit, reg.changed) == (False, True)
    assert (record.name, record.version, record.language, record.toolchain) == (
        "echo",
        1,
        "wat",
        "wat",
    )
    data = (settings.module_dir / "echo.wasm").read_bytes()
    assert record.digest == sha256(data) and record.size == len(data)
    assert record.registered_at > 0 and len(record.source_hash) == 64
    assert redis_client.get(keys.module(record.digest)) == data
    assert registry.versions("echo") == {1: record.digest}
    assert (settings.module_dir / "sha256" / f"{record.digest}.wasm").read_bytes() == data
    assert (settings.module_dir / "native" / engine_tag(False) / f"{record.digest}.cwasm").is_file()
    stored = json.loads(redis_client.hget(keys.TASK_REGISTRY, "echo") or b"")
    assert stored["digest"] == record.digest and stored["version"] == 1
    assert registry.get("echo") == record
    assert [r.name for r in registry.list()] == ["echo"]


@pytest.mark.toolchain
def test_second_registration_of_go_compiles_nothing(registry: Registry, tmp_path: Path) -> None:
    source = copy_task("task_1.go", tmp_path)
    first = registry.register(source)
    assert first.record.toolchain == "go" and first.record.toolchain_version.startswith("go1.")
    before = compiler.invocation_count()
    second = registry.register(source)
    assert compiler.invocation_count() == before, "the toolchain ran on a cache hit"
    assert (second.cache_hit, second.changed) == (True, False)
    assert second.record.version == 1
    assert second.record.registered_at == first.record.registered_at


@pytest.mark.toolchain
def test_same_source_under_another_name_is_a_cache_hit(registry: Registry, tmp_path: Path) -> None:
    registry.register(copy_task("task_1_c.c", tmp_path))
    before = compiler.invocation_count()
    other = registry.register(copy_task("task_1_c.c", tmp_path), name="greeter")
    assert compiler.invocation_count() == before
    assert other.cache_hit and other.changed and other.record.version == 1


def test_changed_source_bumps_the_version_and_keeps_old_modules(
    registry: Registry, tmp_path: Path
) -> None:
    source = copy_task("echo.wat", tmp_path, "job.wat")
    v1 = registry.register(source).record
    source.write_text(
        source.read_text().replace('(memory (export "memory") 1)', '(memory (export "memory") 2)')
    )
    reg = registry.register(source)
    assert (reg.changed, reg.cache_hit, reg.record.version) == (True, False, 2)
    assert registry.versions("job") == {1: v1.digest, 2: reg.record.digest}
    # A task enqueued against v1 still runs exactly v1.
    old = registry.load_module(v1.digest)
    assert [m.type.limits.min for m in (e for e in old.exports if e.name == "memory")] == [1]
    # Back to the first source: a new version (3) of the old digest, no compile.
    source.write_bytes((TASKS / "echo.wat").read_bytes())
    before = compiler.invocation_count()
    back = registry.register(source)
    assert compiler.invocation_count() == before
    assert (back.record.version, back.record.digest, back.cache_hit) == (3, v1.digest, True)


@pytest.mark.toolchain
def test_failed_compile_keeps_the_earlier_version(registry: Registry, tmp_path: Path) -> None:
    source = copy_task("task_1_c.c", tmp_path, "greet.c")
    good = registry.register(source).record
    source.write_text("int oops( {\n")
    with pytest.raises(CompileError, match=rf"{source}:1:\d+: error"):
        registry.register(source)
    assert registry.get("greet") == good


def test_capabilities_are_stored(registry: Registry, tmp_path: Path) -> None:
    caps = {"dirs": [[str(tmp_path), "/data", True]], "env": {"MODE": "test"}}
    record = registry.register(copy_task("echo.wat", tmp_path), capabilities=caps).record
    again = registry.get("echo")
    assert again is not None
    for value in (record.capabilities, again.capabilities):
        assert value == Capabilities(dirs=[(str(tmp_path), "/data", True)], env={"MODE": "test"})
    # Capabilities are not module content: same version.
    assert registry.register(copy_task("echo.wat", tmp_path)).record.capabilities is None
    assert registry.get("echo").version == 1  # type: ignore[union-attr]


def test_remove_drops_the_name_and_keeps_modules_for_prune(
    registry: Registry, redis_client: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    echo = registry.register(copy_task("echo.wat", tmp_path)).record
    registry.register(copy_task("echo.wat", tmp_path), name="echo2")  # shares the module
    greet = registry.register(copy_task("task_1_wat.wat", tmp_path)).record
    assert registry.remove("task_1_wat") is True
    assert registry.get("task_1_wat") is None
    assert not redis_client.exists(keys.task_versions("task_1_wat"))
    assert not (settings.module_dir / "task_1_wat.wasm").exists()
    # The bytes stay until a prune: another task could share them.
    assert redis_client.get(keys.module(greet.digest)) is not None
    assert registry.remove("echo") is True
    assert registry.remove("echo") is False
    assert [r.name for r in registry.list()] == ["echo2"]

    assert registry.prune() == (1, 1)  # task_1_wat's module and its compile entry
    assert redis_client.get(keys.module(greet.digest)) is None
    assert redis_client.get(keys.module(echo.digest)) is not None  # echo2 still uses it
    assert set(redis_client.hvals(keys.COMPILE_INDEX)) == {echo.digest.encode()}
    assert registry.prune() == (0, 0)
    # Registering the pruned source again compiles and stores it again.
    again = registry.register(copy_task("task_1_wat.wat", tmp_path)).record
    assert (again.digest, again.version) == (greet.digest, 1)
    assert redis_client.get(keys.module(greet.digest)) is not None

    # Once gone everywhere, the module cannot be served from Redis.
    registry.remove("echo2")
    assert registry.prune() == (1, 1)
    forget_memory()
    elsewhere = dataclasses.replace(settings, module_dir=tmp_path / "elsewhere")
    with pytest.raises(RegistryError, match="register the task again"):
        Registry(elsewhere, redis_client).load_module(echo.digest)


def test_prune_keeps_every_version_a_registered_task_has_had(
    registry: Registry, redis_client: redis.Redis, tmp_path: Path
) -> None:
    source = copy_task("echo.wat", tmp_path, "job.wat")
    v1 = registry.register(source).record
    bigger = source.read_text().replace('(export "memory") 1)', '(export "memory") 2)')
    source.write_text(bigger)
    v2 = registry.register(source).record
    assert v1.digest != v2.digest
    # Tasks enqueued against v1 may still be queued: its module is in use.
    assert registry.prune() == (0, 0)
    assert redis_client.get(keys.module(v1.digest)) is not None


def test_remove_costs_the_task_own_records_only(
    registry: Registry, redis_client: redis.Redis, tmp_path: Path
) -> None:
    from tests.support.server_cost import server_work

    registry.register(copy_task("echo.wat", tmp_path))
    # Many other tasks, one module each, and queued work of the task being removed.
    pipe = redis_client.pipeline(transaction=False)
    for i in range(2_000):
        digest = f"{i:064x}"
        record = json.dumps({"digest": digest, "version": 1})
        pipe.hset(keys.TASK_REGISTRY, f"other{i}", record)
        pipe.hset(keys.task_versions(f"other{i}"), "1", digest)
        pipe.hset(keys.COMPILE_INDEX, f"compile{i}", digest)
        pipe.set(keys.module(digest), b"\0asm")
    pipe.hset(keys.task("queued"), mapping={"id": "queued", "task_name": "echo"})
    pipe.lpush(keys.pending(), "queued")
    pipe.execute()
    before = {k: redis_client.dump(k) for k in redis_client.scan_iter(count=1000)}

    removed, calls, _ = server_work(redis_client, lambda: registry.remove("echo"))
    assert removed is True
    # One script: one HDEL and one DEL, whatever else is registered.
    assert calls.pop("hdel") == 1 and calls.pop("del") == 1
    assert set(calls) <= {"evalsha", "eval", "script|load"}, calls

    after = {k: redis_client.dump(k) for k in redis_client.scan_iter(count=1000)}
    assert set(before) - set(after) == {keys.task_versions("echo").encode()}
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {keys.TASK_REGISTRY.encode()}
    assert redis_client.hlen(keys.TASK_REGISTRY) == 2_000
    assert not redis_client.hexists(keys.TASK_REGISTRY, "echo")
    # Queued work stays queued: a worker fails it as no longer registered.
    assert redis_client.lrange(keys.pending(), 0, -1) == [b"queued"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad name", "invalid task name 'bad name'"),
        ("x" * 129, "invalid task name"),
        ("a/b", "invalid task name 'a/b'"),
        ("..", "invalid task name '..'"),
    ],
)
def test_refuses_bad_names(registry: Registry, tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(InvalidTask, match=message):
        registry.register(copy_task("echo.wat", tmp_path), name=name)


def test_refuses_unsupported_and_missing_files(registry: Registry, tmp_path: Path) -> None:
    rust = tmp_path / "task.rs"
    rust.write_text("fn main() {}")
    with pytest.raises(CompileError, match="unsupported file type"):
        registry.register(rust)
    with pytest.raises(RegistryError, match="is not a file"):
        registry.register(tmp_path / "missing.wat")


ALLOC = '(func (export "alloc") (param i32) (result i32) i32.const 0)'
EXECUTE = '(func (export "execute") (param i32 i32) (result i64) i64.const 0)'
MEMORY = '(memory (export "memory") 1)'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"{ALLOC} {EXECUTE}", "does not export `memory`"),
        (f"{MEMORY} {EXECUTE}", r"does not export `alloc` \(\(i32\) -> i32\)"),
        (f"{MEMORY} {ALLOC}", r"does not export `execute` \(\(i32, i32\) -> i64\)"),
        (
            f'{MEMORY} {ALLOC} (func (export "execute") (param i32 i32) (result i32) i32.const 0)',
            r"`execute` export has type \(i32, i32\) -> i32; expected \(i32, i32\) -> i64",
        ),
        (
            f'{MEMORY} (func (export "alloc") (param i64) (result i32) i32.const 0) {EXECUTE}',
            r"`alloc` export has type \(i64\) -> i32; expected \(i32\) -> i32",
        ),
        (
            f'{MEMORY} {ALLOC} {EXECUTE} (func (export "_initialize") (param i32))',
            r"`_initialize` export has type \(i32\); expected \(\)",
        ),
        (
            f'{ALLOC} {EXECUTE} (global (export "memory") i32 (i32.const 0))',
            "`memory` export is not a memory",
        ),
        (f'(memory (export "memory") i64 1) {ALLOC} {EXECUTE}', "64-bit memory"),
        (
            f'{MEMORY} {ALLOC} {EXECUTE} (func (export "_start"))',
            "unexpected export `_start`: the module is a WASI command",
        ),
        (
            f'(import "env" "log" (func (param i32))) {MEMORY} {ALLOC} {EXECUTE}',
            "unexpected import `env.log`: task modules may import only wasi_snapshot_preview1",
        ),
        (
            f'(import "wasi_snapshot_preview1" "sock_open" (func)) {MEMORY} {ALLOC} {EXECUTE}',
            "unexpected import `wasi_snapshot_preview1.sock_open`: not a WASI preview 1 function",
        ),
        (
            f'(import "wasi_snapshot_preview1" "memory" (memory 1)) {ALLOC} {EXECUTE}',
            "unexpected import `wasi_snapshot_preview1.memory`: only functions may be imported",
        ),
        (
            f'{MEMORY} {ALLOC} (func (export "execute") (param i32 i32) (result i64) i32.const 0)',
            "the module is not valid WebAssembly: .*type mismatch",
        ),
    ],
)
def test_refuses_modules_breaking_the_contract(
    registry: Registry, tmp_path: Path, body: str, message: str
) -> None:
    source = tmp_path / "bad.wat"
    source.write_text(f"(module {body})")
    with pytest.raises(RegistryError, match=message):
        registry.register(source)
    assert registry.get("bad") is None


def test_refuses_bytes_that_are_not_wasm(registry: Registry, tmp_path: Path) -> None:
    source = tmp_path / "junk.wasm"
    source.write_bytes(b"\0asm\x01\0\0\0garbage")
    with pytest.raises(RegistryError, match="the module is not valid WebAssembly"):
        registry.register(source)


def test_prebuilt_wasm_registers(registry: Registry, tmp_path: Path) -> None:
    first = registry.register(copy_task("echo.wat", tmp_path)).record
    path = tmp_path / "prebuilt.wasm"
    path.write_bytes(registry.module_bytes(first.digest))
    record = registry.register(path).record
    assert (record.language, record.toolchain, record.digest) == ("wasm", "wasm", first.digest)


LOAD_SCRIPT = """
import json, sys
from pathlib import Path
import redis
import compiler
from runtime.modules.cache import STATS
from runtime.modules.registry import Registry
from runtime.settings import Settings
url, module_dir, digest = sys.argv[1:4]
settings = Settings.load({"redis_url": url, "module_dir": module_dir}, environ={}, env_file=None)
module = Registry(settings, redis.Redis.from_url(url)).load_module(digest)
print(json.dumps({**STATS.as_dict(), "invocations": compiler.invocation_count(),
                  "exports": sorted(e.name for e in module.exports)}))
"""


def load_in_new_process(redis_url: str, module_dir: Path, digest: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, redis_url, str(module_dir), digest],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.toolchain
@pytest.mark.processes
def test_new_process_loads_native_code_without_compiling(
    registry: Registry, settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    # As built: registration's check compiled it and left the native code for workers.
    source = copy_task("task_1.go", tmp_path)
    digest = registry.register(source, snapshot=False).record.digest
    stats = load_in_new_process(redis_url, settings.module_dir, digest)
    assert stats["native_loads"] == 1
    assert stats["wasm_compiles"] == 0 and stats["invocations"] == 0
    assert stats["redis_fetches"] == 0
    assert {"alloc", "execute", "memory"} <= set(stats["exports"])  # type: ignore[arg-type]
    # A snapshot is only validated at registration: the first process compiles it, once
    # for the machine, and the next one loads that.
    snap = registry.register(source).record
    assert snap.digest != digest
    first = load_in_new_process(redis_url, settings.module_dir, snap.digest)
    assert first["wasm_compiles"] == 1 and first["redis_fetches"] == 0
    again = load_in_new_process(redis_url, settings.module_dir, snap.digest)
    assert again["native_loads"] == 1 and again["wasm_compiles"] == 0


@pytest.mark.toolchain
@pytest.mark.processes
def test_second_module_dir_shares_only_redis(
    registry: Registry, settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    record = registry.register(copy_task("task_1_zig.zig", tmp_path)).record
    empty = tmp_path / "other-machine"
    stats = load_in_new_process(redis_url, empty, record.digest)
    assert stats["redis_fetches"] == 1 and stats["wasm_compiles"] == 1
    assert stats["invocations"] == 0  # never the toolchain: the module comes from Redis
    assert (empty / "sha256" / f"{record.digest}.wasm").read_bytes() == registry.module_bytes(
        record.digest
    )
    # That machine now has its own native code too.
    again = load_in_new_process(redis_url, empty, record.digest)
    assert again["native_loads"] == 1 and again["redis_fetches"] == 0


def test_corrupted_wasm_file_is_discarded_and_fetched_again(
    registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    record = registry.register(copy_task("echo.wat", tmp_path)).record
    path = settings.module_dir / "sha256" / f"{record.digest}.wasm"
    good = path.read_bytes()
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    before = dataclasses.replace(STATS)
    assert registry.module_bytes(record.digest) == good
    assert STATS.corrupt_files == before.corrupt_files + 1
    assert STATS.redis_fetches == before.redis_fetches + 1
    assert path.read_bytes() == good


def test_corrupted_native_artifact_is_discarded_and_rebuilt(
    registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    record = registry.register(copy_task("task_1_wat.wat", tmp_path)).record
    native = settings.module_dir / "native" / engine_tag(False) / f"{record.digest}.cwasm"
    blob = bytearray(native.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    native.write_bytes(bytes(blob))
    forget_memory()
    before = dataclasses.replace(STATS)
    module = registry.load_module(record.digest)
    assert "execute" in {e.name for e in module.exports}
    assert STATS.corrupt_files == before.corrupt_files + 1
    assert STATS.wasm_compiles == before.wasm_compiles + 1
    assert STATS.native_loads == before.native_loads
    # Rebuilt: the next cold load uses it.
    forget_memory()
    registry.load_module(record.digest)
    assert STATS.native_loads == before.native_loads + 1


def test_corrupted_module_in_redis_is_refused(
    registry: Registry, redis_client: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    record = registry.register(copy_task("echo.wat", tmp_path)).record
    redis_client.set(keys.module(record.digest), b"\0asm tampered")
    other = Registry(dataclasses.replace(settings, module_dir=tmp_path / "fresh"), redis_client)
    with pytest.raises(RegistryError, match="does not match its digest"):
        other.module_bytes(record.digest)


def test_memory_layer_and_fuel_flavour(registry: Registry, tmp_path: Path) -> None:
    digest = registry.register(copy_task("echo.wat", tmp_path)).record.digest
    first = registry.load_module(digest)
    before = dataclasses.replace(STATS)
    assert registry.load_module(digest) is first
    assert STATS.memory_hits == before.memory_hits + 1
    fuel = registry.load_module(digest, fuel=True)
    assert fuel is not first
    assert STATS.wasm_compiles == before.wasm_compiles + 1


def test_invalid_digest_is_refused(registry: Registry) -> None:
    with pytest.raises(RegistryError, match=r"invalid module digest '\.\./\.\./etc/passwd'"):
        registry.load_module("../../etc/passwd")


@pytest.mark.toolchain
def test_register_many_in_parallel_with_progress(registry: Registry, tmp_path: Path) -> None:
    files = sorted(p for p in TASKS.iterdir() if p.suffix in compiler.SUPPORTED_EXTENSIONS)
    bad = tmp_path / "broken.wat"
    bad.write_text("(module")
    seen: list[tuple[int, int, str]] = []
    results = registry.register_many(
        [*files, bad], progress=lambda done, total, path, _o: seen.append((done, total, path.name))
    )
    assert [done for done, _, _ in seen] == list(range(1, len(files) + 2))
    assert {name for _, _, name in seen} == {p.name for p in files} | {"broken.wat"}
    assert isinstance(results[-1], CompileError)
    names = sorted(r.record.name for r in results[:-1] if not isinstance(r, Exception))
    assert names == sorted(p.stem for p in files)
    assert {"task_1", "task_1_c", "task_1_zig", "task_1_wat", "echo", "echo_c"} <= set(names)
