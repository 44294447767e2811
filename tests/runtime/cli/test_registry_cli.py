"""``wasmq register`` / ``wasmq tasks`` / ``wasmq tasks rm`` as a user runs them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner, Result

from runtime.cli import app
from runtime.queue import keys
from tests.support.cli import in_process_env
from tests.support.logs import restored_logging
from tests.support.paths import TASKS

pytestmark = pytest.mark.processes


def wat_dir(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("echo.wat", "task_1_wat.wat"):
        (src / name).write_bytes((TASKS / name).read_bytes())
    (src / "README.txt").write_text("not a task")
    return src


def test_register_one_file_then_cache_hit(cli: Any, tmp_path: Path) -> None:
    source = wat_dir(tmp_path) / "echo.wat"
    first = cli("register", str(source))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("registered echo v1 ")
    assert "new version" in first.stdout
    second = cli("register", str(source), "--json")
    assert second.returncode == 0, second.stderr
    # One file or many, register --json prints an array.
    (row,) = json.loads(second.stdout)
    assert (row["name"], row["version"], row["cache_hit"], row["changed"]) == (
        "echo",
        1,
        True,
        False,
    )
    assert row["language"] == "wat" and len(row["digest"]) == 64


def test_register_directory_in_parallel_quietly(
    cli: Any, tmp_path: Path, redis_client: redis.Redis
) -> None:
    proc = cli("register", str(wat_dir(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    # Compiles under a second show no status line (runtime.cli.progress), logs are quiet.
    assert proc.stderr == ""
    assert sorted(redis_client.hkeys(keys.TASK_REGISTRY)) == [b"echo", b"task_1_wat"]
    assert (tmp_path / "modules" / "echo.wasm").is_file()


def test_name_option_and_capabilities(cli: Any, tmp_path: Path) -> None:
    source = wat_dir(tmp_path) / "echo.wat"
    data = tmp_path / "data"
    data.mkdir()
    proc = cli(
        "register",
        str(source),
        "--name",
        "mirror",
        "--allow-dir",
        f"{data}:/data:ro",
        "--env",
        "MODE=fast",
        "--env",
        "EMPTY=",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["name"] == "mirror"
    assert row["capabilities"] == {
        "dirs": [[str(data.resolve()), "/data", True]],
        "env": {"MODE": "fast", "EMPTY": ""},
    }


def test_tasks_lists_and_rm_removes(cli: Any, tmp_path: Path) -> None:
    assert "no tasks registered" in cli("tasks").stdout
    cli("register", str(wat_dir(tmp_path)), check=True)
    listing = cli("tasks")
    lines = listing.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "VERSION",
        "LANGUAGE",
        "TOOLCHAIN",
        "DIGEST",
        "SIZE",
        "SNAPSHOT",
        "REGISTERED",
    ]
    assert [line.split()[:4] for line in lines[1:]] == [
        ["echo", "1", "wat", "wat"],
        ["task_1_wat", "1", "wat", "wat"],
    ]
    rows = json.loads(cli("tasks", "--json").stdout)
    assert [r["name"] for r in rows] == ["echo", "task_1_wat"]
    assert all(r["size_bytes"] > 0 and r["registered_ms"] > 0 for r in rows)
    removed = cli("tasks", "rm", "echo")
    assert removed.returncode == 0 and removed.stdout.strip() == "removed echo"
    again = cli("tasks", "rm", "echo")
    assert again.returncode == 1
    assert again.stderr.strip().endswith(
        "error: no task named 'echo' is registered (see wasmq tasks)"
    )
    assert [r["name"] for r in json.loads(cli("tasks", "--json").stdout)] == ["task_1_wat"]
    pruned = cli("tasks", "prune", check=True)
    assert pruned.stdout.strip() == "pruned 1 module (1 index entry)"
    assert cli("tasks", "prune", check=True).stdout.strip() == (
        "pruned 0 modules (0 index entries)"
    )


def error_line(proc: Any) -> str:
    assert proc.returncode == 1, proc.stdout
    assert "Traceback" not in proc.stderr
    return str(proc.stderr.strip().splitlines()[-1])


def test_refusals_are_one_line(cli: Any, tmp_path: Path) -> None:
    src = wat_dir(tmp_path)
    echo = str(src / "echo.wat")
    assert error_line(cli("register", echo, "--name", "no way")).startswith(
        "error: invalid task name 'no way'"
    )
    assert error_line(cli("register", str(src / "README.txt"))).endswith(
        "README.txt: unsupported file type (use one of .c, .cc, .cpp, .go, .ts, .wasm, .wat, .zig)"
    )
    assert error_line(cli("register", str(tmp_path / "nope.go"))).endswith("nope.go does not exist")
    assert "use HOST:GUEST or HOST:GUEST:ro" in error_line(
        cli("register", echo, "--allow-dir", "just-one")
    )
    assert "guest path must start with /" in error_line(
        cli("register", echo, "--allow-dir", f"{tmp_path}:data")
    )
    assert "is not a directory" in error_line(
        cli("register", echo, "--allow-dir", f"{tmp_path}/missing:/data")
    )
    assert "invalid --env '1X=2'" in error_line(cli("register", echo, "--env", "1X=2"))
    assert "--name names one task but 2 files" in error_line(
        cli("register", str(src), "--name", "x")
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no task sources" in error_line(cli("register", str(empty)))


def test_bad_module_is_refused_with_its_reason(cli: Any, tmp_path: Path) -> None:
    source = tmp_path / "noalloc.wat"
    source.write_text('(module (memory (export "memory") 1))')
    line = error_line(cli("register", str(source)))
    assert line.startswith("error: the module does not export `alloc`")


def test_directory_with_one_bad_file_registers_the_rest(cli: Any, tmp_path: Path) -> None:
    src = wat_dir(tmp_path)
    (src / "broken.wat").write_text("(module (func")
    proc = cli("register", str(src))
    assert proc.returncode == 1
    assert "registered echo v1" in proc.stdout and "registered task_1_wat v1" in proc.stdout
    assert f"{src / 'broken.wat'}:1:" in proc.stderr
    assert proc.stderr.strip().endswith("error: 1 of 3 files failed to register")


@pytest.mark.toolchain
def test_go_registers_with_the_default_relative_module_dir(cli: Any, tmp_path: Path) -> None:
    env = dict(cli.env)
    # The default, wasm_task_functions, is relative to the project root: run from a
    # subdirectory of a project, the module cache still lands in the root.
    env.pop("WASMQ_MODULE_DIR")
    from tests.support.cli import run_cli

    (tmp_path / ".git").mkdir()
    (tmp_path / "sub").mkdir()
    source = TASKS / "task_1.go"
    proc = run_cli("register", str(source), env=env, cwd=tmp_path / "sub")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "wasm_task_functions" / "task_1.wasm").is_file()
    assert not (tmp_path / "sub" / "wasm_task_functions").exists()


# -- snapshots, in this process ------------------------------------------------------------

#: A reactor whose _initialize fills memory: from a constant (SOURCE 0) or from
#: random_get (SOURCE 1), so its snapshot keeps nothing or keeps random numbers.
INIT_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_initialize")
    (if (i32.const SOURCE)
      (then (drop (call $random (i32.const 64) (i32.const 8))))
      (else (i64.store (i32.const 64) (i64.const 42)))))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 8))))
"""


@pytest.fixture
def wasmq(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any) -> Callable[..., Result]:
    """``wasmq(...)``: the app in this process against the private server."""
    env = in_process_env(monkeypatch, tmp_path)

    def invoke(*args: str) -> Result:
        with restored_logging():
            result = CliRunner().invoke(
                app, ["--redis-url", str(settings.redis_url), *args], env=env
            )
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result

    return invoke


def init_sources(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "init-src"
    src.mkdir()
    paths = {"constant": src / "constant.wat", "drawn": src / "drawn.wat"}
    for flag, path in enumerate(paths.values()):
        path.write_text(INIT_WAT.replace("SOURCE", str(flag)))
    paths["echo"] = src / "echo.wat"
    paths["echo"].write_bytes((TASKS / "echo.wat").read_bytes())
    return paths


def test_register_says_how_each_module_was_snapshotted(
    wasmq: Callable[..., Result], tmp_path: Path
) -> None:
    src = init_sources(tmp_path)
    constant = wasmq("register", str(src["constant"])).stdout.splitlines()
    assert constant[0].startswith("registered constant v1 ")
    assert constant[1].startswith("  snapshot: _initialize ran once here (")
    assert constant[1].endswith(" ms), not in each task")
    drawn = wasmq("register", str(src["drawn"])).stdout
    assert "; the state it left drew on random numbers, now the same in every task" in drawn
    plain = wasmq("register", str(src["constant"]), "--name", "plain", "--no-snapshot").stdout
    assert plain.splitlines()[1] == (
        "  not snapshotted: snapshots are off (--no-snapshot or WASMQ_SNAPSHOT=0)"
    )
    echo = wasmq("register", str(src["echo"])).stdout
    assert len(echo.splitlines()) == 1 and "snapshot" not in echo
    # --snapshot and --no-snapshot switch one task between two versions.
    back = wasmq("register", str(src["constant"]), "--name", "plain", "--snapshot").stdout
    assert back.startswith("registered plain v2 ") and "  snapshot: " in back


def test_tasks_shows_the_snapshot_column_and_json(
    wasmq: Callable[..., Result], tmp_path: Path
) -> None:
    src = init_sources(tmp_path)
    wasmq("register", str(src["echo"].parent))  # in parallel: snapshots taken at once
    wasmq("register", str(src["constant"]), "--name", "plain", "--no-snapshot")
    lines = wasmq("tasks").stdout.splitlines()
    start = lines[0].index("SNAPSHOT")
    column = {line.split()[0]: line[start:].split()[0] for line in lines[1:]}
    assert column == {"constant": "yes", "drawn": "yes*", "echo": "-", "plain": "no"}
    rows = {r["name"]: r for r in json.loads(wasmq("tasks", "--json").stdout)}
    constant = rows["constant"]
    assert constant["digest"] != constant["source_digest"]
    assert constant["source_digest"] == rows["plain"]["digest"]
    assert constant["snapshot"]["taken"] is True and constant["snapshot"]["kept"] == []
    assert constant["snapshot"]["memory_bytes"] == 65536
    assert isinstance(constant["snapshot"]["init_ms"], float | int)
    assert rows["drawn"]["snapshot"]["kept"] == ["random"]
    assert rows["plain"]["snapshot"] == {
        "taken": False,
        "reason": "snapshots are off (--no-snapshot or WASMQ_SNAPSHOT=0)",
    }
    assert rows["plain"]["digest"] == rows["plain"]["source_digest"]
    assert rows["echo"]["snapshot"] is None
    assert rows["echo"]["digest"] == rows["echo"]["source_digest"]
    (registered,) = json.loads(wasmq("register", str(src["drawn"]), "--json").stdout)
    assert registered["snapshot"] == rows["drawn"]["snapshot"]
    assert registered["source_digest"] == rows["drawn"]["source_digest"]
