"""The ``wasmq`` command line: a thin layer over :mod:`runtime.client`.

Each command group lives in its own module with an ``install(app)`` function; this
module wires them together and turns user errors into one line on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional  # noqa: F401 - typer reads Optional[...] at runtime

import redis
import typer

from runtime.cli import bench as bench_cmds
from runtime.cli import develop as develop_cmds
from runtime.cli import inspect as inspect_cmds
from runtime.cli import queue as queue_cmds
from runtime.cli import registry as registry_cmds
from runtime.cli import schedule as schedule_cmds
from runtime.cli import server as server_cmds
from runtime.cli.context import AppState
from runtime.errors import TaskNotFound, WasmqError

app = typer.Typer(
    name="wasmq",
    help="Run untrusted task handlers as sandboxed WebAssembly, fed by a Redis queue.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _show_version(value: bool) -> None:
    if value:
        from wasmq import __version__

        typer.echo(f"wasmq {__version__}")
        raise typer.Exit()


@app.callback()
def _common(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version."
    ),
    redis_url: str | None = typer.Option(
        None, "--redis-url", help="Redis URL (REDIS_URL); unset uses the embedded server."
    ),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", help="Embedded server's directory (WASMQ_STATE_DIR)."
    ),
    module_dir: Path | None = typer.Option(
        None, "--module-dir", help="On-disk module cache (WASMQ_MODULE_DIR)."
    ),
    log_level: str | None = typer.Option(
        None, "--log-level", help="debug, info, warning or error (TASK_QUEUE_LOG_LEVEL)."
    ),
    log_format: str | None = typer.Option(
        None, "--log-format", help="pretty or json (TASK_QUEUE_LOG_FORMAT)."
    ),
) -> None:
    ctx.obj = AppState(
        {
            "redis_url": redis_url,
            "state_dir": state_dir,
            "module_dir": module_dir,
            "log_level": log_level,
            "log_format": log_format,
        }
    )


for _module in (
    server_cmds,
    registry_cmds,
    queue_cmds,
    schedule_cmds,
    inspect_cmds,
    bench_cmds,
    develop_cmds,
):
    _module.install(app)


def main() -> None:
    """Console-script entry point: run the app, one line per user error, never a traceback."""
    try:
        app()
    except TaskNotFound as exc:
        # The one message scripts match on: exactly "no task <id>".
        typer.echo(str(exc), err=True)
        sys.exit(1)
    except WasmqError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except redis.RedisError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        typer.echo(f"error: Redis: {first}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
