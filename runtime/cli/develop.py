"""CLI commands of the handler edit loop: run (one task, locally) and new (a handler).

``wasmq run`` exits 0 when the task succeeded, 1 when it failed (any error kind) and 2
when it could not run (a bad file or name, a compile error, a bad flag), so a script can
tell a failing handler from a broken command. The sandbox, compilers and registry are
imported only when a command needs them: this module is loaded by every ``wasmq`` call.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import redis
import typer

from runtime.cli.choices import choice_option, complete_task_names
from runtime.cli.context import state
from runtime.cli.progress import Status
from runtime.develop.scaffold import LANGUAGES
from runtime.errors import InvalidTask, RegistryError, WasmqError

if TYPE_CHECKING:
    import wasmtime

    from runtime.develop.local_run import LocalRun
    from runtime.sandbox import Capabilities
    from runtime.settings import Settings

#: Exit code of ``run`` and ``new`` when the command itself could not do its work.
USAGE_ERROR = 2


def _usage_error(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


def _payload(value: str) -> bytes:
    """``--payload``: the text itself, ``@FILE`` for a file's bytes, ``-`` or ``@-`` for stdin."""
    from runtime.cli.queue import read_payload

    return sys.stdin.buffer.read() if value == "-" else read_payload(value)


@dataclass
class _Target:
    """The module a run executes, and what to say about where it came from."""

    module: wasmtime.Module
    digest: str
    task_name: str
    about: dict[str, Any]
    capabilities: Capabilities | None = None


def _from_file(settings: Settings, path: Path, fuel: bool, quiet: bool) -> _Target:
    from runtime.develop.local_build import LocalBuilds

    if not path.is_file():
        raise RegistryError(f"{path} is not a file; give a task source or .wasm file")

    status = Status(f"compiling {path}", enabled=not quiet)

    def announce(source: Path) -> None:
        status.__enter__()  # a compile starts: only now may the line show

    try:
        build = LocalBuilds(settings).build(path, fuel=fuel, on_compile=announce)
    finally:
        status.close()
    about = {"source": str(path), "digest": build.digest, "compiled": build.compiled}
    return _Target(build.module, build.digest, path.stem, about)


def _from_registry(ctx: typer.Context, name: str, fuel: bool) -> _Target:
    from runtime.modules.registry import Registry
    from runtime.queue.names import check_task_name

    neither = (
        f"{name} is neither an existing file nor a registered task; give a task source"
        " file, or the name of a task from `wasmq tasks`"
    )
    try:
        check_task_name(name)
    except InvalidTask:
        raise RegistryError(neither) from None
    st = state(ctx)
    registry = Registry(st.settings(), st.redis())
    record = registry.get(name)
    if record is None:
        from runtime.queue.broker import close_task_names

        close = close_task_names(st.redis(), name)
        if close:
            neither = neither.replace("; give", f"; did you mean {close[0]!r}? Give", 1)
        raise RegistryError(neither)
    module = registry.load_module(record.digest, fuel=fuel)
    about = {"task": name, "version": record.version, "digest": record.digest}
    return _Target(module, record.digest, name, about, record.capabilities)


def run(
    ctx: typer.Context,
    target: str = typer.Argument(
        ...,
        metavar="FILE|NAME",
        help="A task source or .wasm file, or a registered task.",
        autocompletion=complete_task_names,
    ),
    payload: str = typer.Option("", "--payload", "-p", help="Payload text, @FILE, or - (stdin)."),
    timeout: str | None = typer.Option(
        None, "--timeout", help="Time limit, e.g. 30s (WASMQ_TASK_TIMEOUT)."
    ),
    memory: str | None = typer.Option(
        None, "--memory", help="Memory limit, e.g. 64MiB (WASMQ_MEMORY_LIMIT)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Also write the result's raw bytes to FILE."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run one task locally, in the worker's sandbox with its limits: no queue, no worker.

    A FILE compiles as `wasmq register` would, cached on local disk; a NAME is a registered task.
    Exit code: 0 the task succeeded, 1 it failed, 2 it could not run."""
    from runtime.develop.local_run import resolve_limits, run_once

    try:
        settings = state(ctx).settings()
        limits = resolve_limits(settings, timeout, memory)
        body = _payload(payload)
        fuel = limits.fuel > 0
        path = Path(target)
        if path.exists():
            chosen = _from_file(settings, path, fuel, quiet=as_json)
        else:
            chosen = _from_registry(ctx, target, fuel)
    except WasmqError as exc:
        _usage_error(str(exc))
    except redis.RedisError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _usage_error(f"Redis: {first}")
    done = run_once(
        settings,
        chosen.module,
        chosen.digest,
        body,
        limits,
        task_name=chosen.task_name,
        capabilities=chosen.capabilities,
    )
    if output is not None:
        try:
            output.write_bytes(done.outcome.result)
        except OSError as exc:
            _usage_error(f"cannot write {output}: {exc.strerror or exc}")
    if as_json:
        import json

        from runtime.develop.run_report import run_json

        typer.echo(json.dumps(run_json(done, **chosen.about)))
    else:
        _show(done)
    raise typer.Exit(0 if done.outcome.ok else 1)


def _show(done: LocalRun) -> None:
    from runtime.develop.run_report import log_lines, result_text, summary_lines
    from runtime.output.files import truncation_marker

    outcome = done.outcome
    for line in log_lines(outcome.logs):
        typer.echo(line, err=True)
    if outcome.log_dropped:
        typer.echo(truncation_marker(outcome.log_dropped), err=True)
    text, stand_in = result_text(outcome.result)
    if text:
        # stdout holds the result alone, so `wasmq run ... > out` keeps it as it is.
        typer.echo(text, nl=not text.endswith("\n") and sys.stdout.isatty())
    elif stand_in:
        note, *rows = stand_in
        typer.echo(note, err=True)
        for row in rows:
            typer.echo(row)
    for line in summary_lines(done):
        typer.echo(line, err=True)


def new(
    name: str = typer.Argument(..., metavar="NAME", help="Task name: the directory and file stem."),
    lang: str = choice_option(..., "--lang", "-l", values=LANGUAGES, help="Handler language."),
    parent: Path = typer.Option(Path("."), "--dir", help="Where to create the NAME directory."),
    force: bool = typer.Option(
        False, "--force", help="Write into an existing directory (its other files stay)."
    ),
) -> None:
    """Start a handler: NAME/NAME.<ext> from a template, a sample payload and a README."""
    from runtime.develop.scaffold import scaffold

    try:
        made = scaffold(name, lang, parent, force=force)
    except WasmqError as exc:
        _usage_error(str(exc))
    for path in made.files:
        typer.echo(f"wrote {path}")
    typer.echo(f"run it: {made.run_command()}")


def install(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("run")(run)
    app.command("new")(new)
