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
from runtime.cli import dashboard as dashboard_cmds
from runtime.cli import develop as develop_cmds
from runtime.cli import inspect as inspect_cmds
from runtime.cli import limits as limit_cmds
from runtime.cli import queue as queue_cmds
from runtime.cli import registry as registry_cmds
from runtime.cli import schedule as schedule_cmds
from runtime.cli import server as server_cmds
from runtime.cli import workflows as flow_cmds
from runtime.cli.choices import choice_option
from runtime.cli.context import AppState
from runtime.cli.usage import usage_line
from runtime.errors import WasmqError
from runtime.settings import LOG_FORMATS, LOG_LEVELS

app = typer.Typer(
    name="wasmq",
    help="Run untrusted task handlers as sandboxed WebAssembly, fed by a Redis queue.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
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
    log_level: str | None = choice_option(
        None, "--log-level", values=LOG_LEVELS, help="Log level (TASK_QUEUE_LOG_LEVEL)."
    ),
    log_format: str | None = choice_option(
        None, "--log-format", values=LOG_FORMATS, help="Log format (TASK_QUEUE_LOG_FORMAT)."
    ),
    verbose: int = typer.Option(
        0,
        "--verbose",
        "-v",
        count=True,
        help="Log more: -v info, -vv debug (one-shot commands log warnings only).",
    ),
) -> None:
    ctx.obj = AppState(
        {
            "redis_url": redis_url,
            "state_dir": state_dir,
            "module_dir": module_dir,
            "log_level": log_level,
            "log_format": log_format,
        },
        verbose=verbose,
        command=ctx.invoked_subcommand,
    )


for _module in (
    server_cmds,
    registry_cmds,
    queue_cmds,
    flow_cmds,
    schedule_cmds,
    inspect_cmds,
    limit_cmds,
    bench_cmds,
    develop_cmds,
    dashboard_cmds,
):
    _module.install(app)


def main() -> None:
    """Console-script entry point: run the app, one line per user error, never a traceback.

    Exit codes: 0 success, 1 an error (``error: ...`` on stderr), 2 a usage error (a bad
    flag, value or command; the line names the ``--help`` to read), 130 interrupted;
    commands document any other code they use."""
    try:
        code = app(standalone_mode=False, prog_name="wasmq")
    except typer.TyperException as exc:
        # Usage errors (exit 2) and click's other errors; help shown for no arguments
        # has been printed already.
        if type(exc).__name__ == "NoArgsIsHelpError":
            if not typer.core.HAS_RICH:
                typer.echo(exc.format_message(), err=True)
        else:
            typer.echo(usage_line(exc), err=True)
        sys.exit(getattr(exc, "exit_code", 1))
    except typer.Abort:
        typer.echo("error: aborted", err=True)
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
    # Without standalone mode the app returns the code of a typer.Exit (0 for --help).
    sys.exit(code if isinstance(code, int) else 0)
