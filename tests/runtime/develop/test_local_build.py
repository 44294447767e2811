"""Local builds: the registry's compile and checks, cached on disk without Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

import compiler
from runtime.develop import local_build
from runtime.develop.local_build import LocalBuilds
from runtime.errors import CompileError, RegistryError
from runtime.modules.cache import STATS, forget_memory, sha256
from runtime.sandbox import Sandbox, TaskLimits
from runtime.settings import Settings
from tests.support.paths import TASKS, WAT


@pytest.fixture
def local(tmp_path: Path) -> Settings:
    """Settings with a private module dir and no Redis anywhere."""
    return Settings.load(
        {"module_dir": tmp_path / "modules", "redis_url": "redis://127.0.0.1:1/0"},
        environ={},
        env_file=None,
    )


def source(tmp_path: Path, name: str = "echo.wat", origin: Path = TASKS) -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes((origin / name).read_bytes())
    return path


def run(settings: Settings, build: local_build.LocalBuild, payload: bytes) -> bytes:
    box = Sandbox(settings)
    try:
        limits = TaskLimits.resolve(None, settings)
        outcome = box.run(build.module, build.digest, payload, limits, task_name="t")
    finally:
        box.close()
    assert outcome.ok, outcome.message
    return outcome.result


def test_unchanged_source_is_not_compiled_again(local: Settings, tmp_path: Path) -> None:
    path = source(tmp_path)
    announced: list[Path] = []
    first = LocalBuilds(local).build(path, on_compile=announced.append)
    assert first.compiled and announced == [path]
    assert first.digest == sha256(
        (local.module_dir / "local/sha256" / f"{first.digest}.wasm").read_bytes()
    )
    assert run(local, first, b"hi") == b"hi"

    forget_memory()  # a new process: only the disk layers are left
    before, native_before = compiler.invocation_count(), STATS.native_loads
    second = LocalBuilds(local).build(path, on_compile=announced.append)
    assert compiler.invocation_count() == before, "the toolchain ran on a cache hit"
    assert STATS.native_loads == native_before + 1, "native code was not loaded from disk"
    assert not second.compiled and announced == [path]
    assert second.digest == first.digest
    assert run(local, second, b"again") == b"again"


def test_edited_source_compiles_again(local: Settings, tmp_path: Path) -> None:
    path = source(tmp_path)
    builds = LocalBuilds(local)
    first = builds.build(path)
    path.write_text(path.read_text() + "\n;; an edit\n")
    before = compiler.invocation_count()
    edited = builds.build(path)
    assert compiler.invocation_count() == before + 1
    assert edited.compiled
    # A comment does not change the module: same digest, found under a new compile key.
    assert edited.digest == first.digest
    assert len(list((local.module_dir / "local/builds").iterdir())) == 2


def test_lost_module_files_are_rebuilt(local: Settings, tmp_path: Path) -> None:
    path = source(tmp_path)
    builds = LocalBuilds(local)
    first = builds.build(path)
    forget_memory()
    for file in (local.module_dir / "local").rglob("*wasm"):
        file.unlink()
    again = builds.build(path)
    assert again.compiled and again.digest == first.digest
    assert run(local, again, b"x") == b"x"


def test_fuel_flavour_is_built_for_a_fuel_limit(local: Settings, tmp_path: Path) -> None:
    path = source(tmp_path, "loop_execute.wat", WAT)
    builds = LocalBuilds(local)
    fuelled = Settings.load(
        {"module_dir": local.module_dir, "fuel": "100000"}, environ={}, env_file=None
    )
    build = builds.build(path, fuel=True)
    box = Sandbox(fuelled)
    try:
        limits = TaskLimits.resolve(None, fuelled)
        outcome = box.run(build.module, build.digest, b"", limits, task_name="t")
    finally:
        box.close()
    assert outcome.kind == "timeout" and not outcome.retryable, outcome.message
    assert "fuel" in outcome.message


def test_contract_breakers_and_compile_errors_are_refused_uncached(
    local: Settings, tmp_path: Path
) -> None:
    builds = LocalBuilds(local)
    with pytest.raises(RegistryError, match="does not export `alloc`"):
        builds.build(source(tmp_path, "no_alloc.wat", WAT))
    broken = tmp_path / "src" / "broken.wat"
    broken.write_text("(module (func (i32.bogus)))\n")
    with pytest.raises(CompileError, match=r"compiling .*broken\.wat failed"):
        builds.build(broken)
    assert not (local.module_dir / "local" / "builds").exists()
    with pytest.raises(CompileError, match="unsupported file type"):
        builds.build(tmp_path / "src" / "notes.txt")


def test_only_the_most_recent_builds_are_kept(
    local: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_build, "KEEP_BUILDS", 2)
    path = source(tmp_path)
    builds = LocalBuilds(local)
    text = path.read_text()
    digests = []
    for n in range(4):
        # A different export name per edit: a different module each time.
        path.write_text(text.replace('(export "memory")', f'(export "memory") (export "m{n}")'))
        digests.append(builds.build(path).digest)
    assert len(set(digests)) == 4
    root = local.module_dir / "local"
    kept = {p.read_text() for p in (root / "builds").iterdir()}
    assert kept == set(digests[2:])
    assert {p.stem for p in (root / "sha256").iterdir()} == set(digests[2:])
    assert {p.stem for p in (root / "native").rglob("*.cwasm")} == set(digests[2:])
