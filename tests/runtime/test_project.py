"""The project root, found as git finds its repository, and the settings it places: the
default dirs in the root, the nearest ``.env`` with its paths beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.project import find_project, user_root
from runtime.settings import Settings


def outside_any_project(path: Path) -> None:
    """Skip unless nothing above ``path`` marks a project (a .wasmq dir or a .git)."""
    for parent in path.resolve().parents:
        if (parent / ".wasmq").is_dir() or (parent / ".git").exists():
            pytest.skip(f"needs a temporary directory outside any project; {parent} is one")


def tree(base: Path, *dirs: str) -> None:
    for name in dirs:
        (base / name).mkdir(parents=True, exist_ok=True)


def test_the_nearest_git_above_is_the_root(tmp_path: Path) -> None:
    tree(tmp_path, "proj/.git", "proj/a/b")
    found = find_project(tmp_path / "proj" / "a" / "b")
    assert (found.root, found.found_by) == ((tmp_path / "proj").resolve(), "git")
    assert find_project(tmp_path / "proj").root == (tmp_path / "proj").resolve()


def test_a_git_file_of_a_worktree_marks_a_root(tmp_path: Path) -> None:
    tree(tmp_path, "proj/sub")
    (tmp_path / "proj" / ".git").write_text("gitdir: elsewhere\n")
    assert find_project(tmp_path / "proj" / "sub").root == (tmp_path / "proj").resolve()


def test_the_nearest_marker_wins(tmp_path: Path) -> None:
    # A .wasmq left in a directory above (a home directory, say) does not capture a
    # repository below it; a .wasmq beside a .git names the same root.
    tree(tmp_path, "home/.wasmq", "home/proj/.git", "home/proj/src", "home/other/.wasmq")
    found = find_project(tmp_path / "home" / "proj" / "src")
    assert (found.root, found.found_by) == ((tmp_path / "home" / "proj").resolve(), "git")
    tree(tmp_path, "home/proj/.wasmq")
    found = find_project(tmp_path / "home" / "proj" / "src")
    assert (found.root, found.found_by) == ((tmp_path / "home" / "proj").resolve(), "wasmq")
    found = find_project(tmp_path / "home" / "other")
    assert (found.root, found.found_by) == ((tmp_path / "home" / "other").resolve(), "wasmq")
    assert find_project(tmp_path / "home").root == (tmp_path / "home").resolve()


def test_a_wasmq_file_is_no_marker(tmp_path: Path) -> None:
    tree(tmp_path, "proj/.git", "proj/sub")
    (tmp_path / "proj" / "sub" / ".wasmq").write_text("not a state dir")
    assert find_project(tmp_path / "proj" / "sub").root == (tmp_path / "proj").resolve()


def test_outside_any_project_the_per_user_root(tmp_path: Path) -> None:
    outside_any_project(tmp_path)
    tree(tmp_path, "lone")
    environ = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    found = find_project(tmp_path / "lone", environ)
    assert (found.root, found.found_by) == (tmp_path / "xdg" / "wasmq", "user")


def test_user_root_ignores_an_unset_or_relative_xdg_state_home() -> None:
    fallback = Path.home() / ".local" / "state" / "wasmq"
    assert user_root({}) == fallback
    assert user_root({"XDG_STATE_HOME": "relative/state"}) == fallback
    assert user_root({"XDG_STATE_HOME": "/srv/state"}) == Path("/srv/state/wasmq")


def test_the_nearest_env_file_up_to_the_root(tmp_path: Path) -> None:
    tree(tmp_path, "proj/.git", "proj/a/b")
    (tmp_path / ".env").write_text("ABOVE_THE_ROOT=1\n")
    assert find_project(tmp_path / "proj" / "a" / "b").env_file is None
    (tmp_path / "proj" / ".env").write_text("X=1\n")
    (tmp_path / "proj" / "a" / ".env").write_text("X=2\n")
    nearest = find_project(tmp_path / "proj" / "a" / "b").env_file
    assert nearest == (tmp_path / "proj" / "a" / ".env").resolve()


def test_defaults_resolve_against_the_root_from_any_subdirectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree(tmp_path, "proj/.git", "proj/a/b")
    monkeypatch.chdir(tmp_path / "proj" / "a" / "b")
    root = (tmp_path / "proj").resolve()
    s = Settings.load(environ={})
    assert s.state_dir == root / ".wasmq"
    assert s.module_dir == root / "wasm_task_functions"
    assert s.wasm_log_dir == root / "runtime-logs" / "wasm"
    # Set explicitly, a relative path stays relative to the working directory.
    flag = Settings.load({"state_dir": Path("here")}, environ={"WASMQ_MODULE_DIR": "mods"})
    assert (flag.state_dir, flag.module_dir) == (Path("here"), Path("mods"))
    assert flag.wasm_log_dir == root / "runtime-logs" / "wasm"


def test_env_file_in_a_parent_applies_with_paths_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree(tmp_path, "proj/.git", "proj/sub")
    root = (tmp_path / "proj").resolve()
    (root / ".env").write_text(
        "WASMQ_STATE_DIR=server\nWASMQ_MODULE_DIR=/abs/modules\n"
        "WASMQ_TOOLCHAIN_CACHE=~/cache\nWASMQ_QUEUE=reports\nTASK_QUEUE_WASM_LOG_DIR=logs\n"
    )
    monkeypatch.chdir(root / "sub")
    s = Settings.load(environ={"TASK_QUEUE_WASM_LOG_DIR": "mine"})
    assert s.queue == "reports"
    assert s.state_dir == root / "server"
    assert s.module_dir == Path("/abs/modules")
    assert s.toolchain_cache == Path("~/cache")
    # The environment wins over the file, and its relative path is the working dir's.
    assert s.wasm_log_dir == Path("mine")


def test_an_explicit_env_file_still_wins_over_discovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree(tmp_path, "proj/.git", "elsewhere")
    (tmp_path / "proj" / ".env").write_text("WASMQ_QUEUE=found\n")
    (tmp_path / "elsewhere" / ".env").write_text("WASMQ_QUEUE=given\nWASMQ_STATE_DIR=srv\n")
    monkeypatch.chdir(tmp_path / "proj")
    assert Settings.load(environ={}).queue == "found"
    given = Settings.load(environ={}, env_file=tmp_path / "elsewhere" / ".env")
    assert given.queue == "given"
    assert given.state_dir == (tmp_path / "elsewhere" / "srv").absolute()
    assert Settings.load(environ={}, env_file=None).queue == "default"


def test_a_deleted_working_directory_belongs_to_no_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert Settings.load(environ={}).state_dir == tmp_path / "xdg" / "wasmq" / ".wasmq"
