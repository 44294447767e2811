"""Where a project's embedded server, module cache and task logs live, found as git finds
its repository.

From the working directory upward, the first directory that holds a ``.wasmq`` directory
or a ``.git`` (a directory, or the file of a worktree or submodule) is the project root;
when none does, the per-user root ``$XDG_STATE_HOME/wasmq`` (``~/.local/state/wasmq``). So
every subdirectory of a project shares one server, and a command run outside any project
shares the user's. The nearest marker wins, as with git: a stray ``.wasmq`` in a home
directory does not capture every repository below it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: The embedded server's directory in a project root; its presence marks the root.
STATE_DIR_NAME = ".wasmq"
ENV_FILE_NAME = ".env"


@dataclass(frozen=True)
class Project:
    """Where relative defaults resolve and which ``.env`` applies."""

    #: Absolute directory the default state, module and log dirs live in.
    root: Path
    #: ``wasmq`` (a ``.wasmq`` dir marked it), ``git`` (a ``.git``) or ``user`` (neither:
    #: the per-user root).
    found_by: str
    #: The nearest ``.env`` from the working directory up to the root, if any.
    env_file: Path | None


def user_root(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/wasmq``, or ``~/.local/state/wasmq`` when it is unset."""
    base = (os.environ if environ is None else environ).get("XDG_STATE_HOME", "")
    # The XDG spec says to ignore a relative XDG_STATE_HOME.
    if not base or not Path(base).is_absolute():
        return Path.home() / ".local" / "state" / "wasmq"
    return Path(base) / "wasmq"


def find_project(start: Path | None = None, environ: Mapping[str, str] | None = None) -> Project:
    """The project the directory ``start`` (default: the working directory) belongs to."""
    try:
        here = (start if start is not None else Path.cwd()).resolve()
    except FileNotFoundError:
        # The working directory was deleted: it belongs to no project.
        return Project(user_root(environ), "user", None)
    chain = (here, *here.parents)
    root, found_by = None, "user"
    for directory in chain:
        if (directory / STATE_DIR_NAME).is_dir():
            root, found_by = directory, "wasmq"
            break
        if (directory / ".git").exists():
            root, found_by = directory, "git"
            break
    if root is None:
        # No project: only the working directory's own .env applies, as in any directory.
        return Project(user_root(environ), "user", _env_file_in((here,)))
    return Project(root, found_by, _env_file_in(chain[: chain.index(root) + 1]))


def _env_file_in(directories: tuple[Path, ...]) -> Path | None:
    return next((d / ENV_FILE_NAME for d in directories if (d / ENV_FILE_NAME).is_file()), None)
