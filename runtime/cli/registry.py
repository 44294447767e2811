"""CLI commands: register, tasks, tasks rm, tasks prune."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import typer

from runtime.cli.choices import complete_task_names
from runtime.cli.context import state
from runtime.cli.progress import Steps
from runtime.errors import RegistryError, WasmqError
from runtime.queue.task import format_time
from runtime.units import format_size

tasks_app = typer.Typer(
    help="Registered tasks: list them, `tasks rm NAME` to unregister one, `tasks prune`"
    " to delete modules no task uses.",
    invoke_without_command=True,
)

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_allow_dir(value: str) -> list[Any]:
    """``HOST:GUEST[:ro]`` -> ``[absolute host, guest, readonly]``."""
    parts = value.split(":")
    readonly = False
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        readonly = parts[2] == "ro"
        parts = parts[:2]
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise RegistryError(f"invalid --allow-dir {value!r}: use HOST:GUEST or HOST:GUEST:ro")
    host, guest = Path(parts[0]).expanduser(), parts[1]
    if not host.is_dir():
        raise RegistryError(f"invalid --allow-dir {value!r}: {host} is not a directory")
    if not guest.startswith("/"):
        raise RegistryError(f"invalid --allow-dir {value!r}: the guest path must start with /")
    return [str(host.resolve()), guest, readonly]


def parse_env(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not _ENV_KEY.fullmatch(key):
        raise RegistryError(f"invalid --env {value!r}: use KEY=VALUE with KEY like [A-Za-z_]\\w*")
    return key, val


def source_files(paths: list[Path]) -> list[Path]:
    """Files as given; directories expand to every supported file in them (not recursive)."""
    from compiler import SUPPORTED_EXTENSIONS

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
            )
            if not found:
                supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
                raise RegistryError(f"{path} holds no task sources ({supported})")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise RegistryError(f"{path} does not exist")
    return files


def _describe(reg: Any) -> str:
    r = reg.record
    how = "cache hit" if reg.cache_hit else f"compiled with {r.toolchain_version or r.toolchain}"
    state_ = "new version" if reg.changed else "unchanged"
    line = f"{r.name} v{r.version} {r.digest[:12]} {format_size(r.size)} ({how}, {state_})"
    if r.snapshot is not None:
        line += f"\n  {r.snapshot.describe()}"
    return line


def _record_json(record: Any) -> dict[str, Any]:
    """A registry record in the ``--json`` convention: ``registered_ms``, ``size_bytes``."""
    out: dict[str, Any] = record.to_json()
    out["registered_ms"] = out.pop("registered_at") or None
    out["size_bytes"] = out.pop("size")
    return out


def _as_json(reg: Any) -> dict[str, Any]:
    return {
        **_record_json(reg.record),
        "path": str(reg.path),
        "cache_hit": reg.cache_hit,
        "changed": reg.changed,
        "error": None,
    }


def register(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(
        ..., metavar="PATH...", help="Task sources or .wasm files, or directories of them."
    ),
    name: str | None = typer.Option(
        None, "--name", help="Task name (one file only; default: the file stem)."
    ),
    allow_dir: list[str] = typer.Option(
        [], "--allow-dir", help="Preopen HOST dir as GUEST in the sandbox: HOST:GUEST[:ro]."
    ),
    env: list[str] = typer.Option([], "--env", help="Environment variable for the task: K=V."),
    snapshot: bool | None = typer.Option(
        None,
        "--snapshot/--no-snapshot",
        help="Pre-initialize: run _initialize once here and store the state it leaves"
        " [default: on; WASMQ_SNAPSHOT].",
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Compile, check and register task sources (a directory registers every file in it).

    A module that exports _initialize is snapshotted after it runs, so tasks start from
    the initialized state instead of running it every time (see the README's Snapshots)."""
    from runtime.modules.registry import Registry

    capabilities = {
        "dirs": [parse_allow_dir(d) for d in allow_dir],
        "env": dict(map(parse_env, env)),
    }
    files = source_files(paths)
    if name is not None and len(files) != 1:
        raise RegistryError(f"--name names one task but {len(files)} files were given")
    st = state(ctx)
    registry = Registry(st.settings(), st.redis())
    with Steps() as steps:

        def compiling(path: Path, toolchain: str) -> None:
            count = f"[{files.index(path) + 1}/{len(files)}] " if len(files) > 1 else ""
            steps.start(str(path), f"{count}compiling {path.name} ({toolchain})")

        def finished(done: int, total: int, path: Path, outcome: Any) -> None:
            steps.finish(str(path))

        if len(files) == 1:
            outcomes: list[Any] = [
                registry.register(
                    files[0], name, capabilities, on_compile=compiling, snapshot=snapshot
                )
            ]
        else:
            outcomes = registry.register_many(
                files, capabilities, progress=finished, on_compile=compiling, snapshot=snapshot
            )
    failed = [o for o in outcomes if isinstance(o, WasmqError)]
    if as_json:
        rows = [
            {"path": str(f), "error": str(o)} if isinstance(o, WasmqError) else _as_json(o)
            for f, o in zip(files, outcomes, strict=True)
        ]
        typer.echo(json.dumps(rows))
    else:
        for o in outcomes:
            if not isinstance(o, WasmqError):
                typer.echo(f"registered {_describe(o)}")
    if failed:
        for o in outcomes:
            if isinstance(o, WasmqError):
                typer.echo(f"error: {o}", err=True)
        typer.echo(f"error: {len(failed)} of {len(files)} files failed to register", err=True)
        raise typer.Exit(1)


@tasks_app.callback()
def tasks(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List registered tasks: name, version, language, toolchain, digest, size, snapshot,
    registered (--json adds the source digest a snapshot was made from, and why a module
    was not snapshotted)."""
    if ctx.invoked_subcommand is not None:
        return
    from runtime.modules.registry import Registry

    st = state(ctx)
    records = Registry(st.settings(), st.redis()).list()
    if as_json:
        typer.echo(json.dumps([_record_json(r) for r in records]))
        return
    if not records:
        typer.echo("no tasks registered (wasmq register PATH)")
        return
    header = (
        "NAME",
        "VERSION",
        "LANGUAGE",
        "TOOLCHAIN",
        "DIGEST",
        "SIZE",
        "SNAPSHOT",
        "REGISTERED",
    )
    table = [header] + [
        (
            r.name,
            str(r.version),
            r.language,
            r.toolchain,
            r.digest[:12],
            format_size(r.size),
            _snapshot_cell(r.snapshot),
            format_time(r.registered_at),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _snapshot_cell(info: Any) -> str:
    """``yes``, ``yes*`` (kept state drawn from random numbers or the clock), ``no`` (see
    --json for why) or ``-`` (no _initialize to snapshot)."""
    if info is None:
        return "-"
    if not info.taken:
        return "no"
    return "yes*" if info.kept else "yes"


@tasks_app.command("rm")
def tasks_rm(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Task name.", autocompletion=complete_task_names),
) -> None:
    """Unregister a task; queued tasks of it then fail with a clear error.

    Its module bytes stay (other tasks may share them): `wasmq tasks prune` deletes them."""
    from runtime.modules.registry import Registry

    st = state(ctx)
    if not Registry(st.settings(), st.redis()).remove(name):
        from runtime.queue.broker import close_task_names

        close = close_task_names(st.redis(), name)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise RegistryError(f"no task named {name!r} is registered ({hint}see wasmq tasks)")
    typer.echo(f"removed {name}")


@tasks_app.command("prune")
def tasks_prune(ctx: typer.Context) -> None:
    """Delete stored modules no registered task uses (reads the whole registry)."""
    from runtime.modules.registry import Registry

    st = state(ctx)
    modules, entries = Registry(st.settings(), st.redis()).prune()
    typer.echo(f"pruned {_plural(modules, 'module')} ({_plural(entries, 'index entry')})")


def _plural(n: int, what: str) -> str:
    if n == 1:
        return f"1 {what}"
    return f"{n} {what[:-1] + 'ies' if what.endswith('y') else what + 's'}"


def install(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("register")(register)
    app.add_typer(tasks_app, name="tasks")
