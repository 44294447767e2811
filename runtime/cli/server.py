"""``wasmq server status|stop``: manage the embedded Valkey server."""

from __future__ import annotations

import json

import typer

from runtime.cli.context import state
from runtime.server import embedded

server_app = typer.Typer(help="Manage the embedded Valkey server (used when REDIS_URL is unset).")


@server_app.command("status")
def status_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Say whether the embedded server runs, where, and how big its data is."""
    settings = state(ctx).settings()
    st = embedded.status(settings.state_dir)
    if as_json:
        data = {k: (str(v) if k in ("socket", "data_dir") else v) for k, v in st.__dict__.items()}
        typer.echo(json.dumps(data))
    elif st.running:
        typer.echo(
            f"running  pid {st.pid}  valkey {st.version}  socket {st.socket}\n"
            f"         uptime {st.uptime_seconds}s  memory {st.used_memory_human}  keys {st.keys}"
        )
    elif st.died:
        log_file = embedded.ServerPaths(settings.state_dir).log_file
        typer.echo(
            f"not running: it died (its pid file outlived it); see {log_file} for why.\n"
            "A running worker pool, or the next command that needs it, restarts it."
        )
    else:
        typer.echo(f"not running  (state dir {settings.state_dir})")
    if settings.redis_url:
        typer.echo("note: REDIS_URL is set, so commands use that server, not this one", err=True)
    raise typer.Exit(0 if st.running or as_json else 3)


@server_app.command("start")
def start_cmd(ctx: typer.Context) -> None:
    """Start the embedded server now (commands also start it on demand)."""
    settings = state(ctx).settings()
    url = embedded.ensure_running(settings.state_dir)
    typer.echo(url)


@server_app.command("stop")
def stop_cmd(ctx: typer.Context) -> None:
    """Stop the embedded server; its data (AOF) stays in the state dir.

    Running worker pools leave it stopped (they restart it only when it dies)."""
    settings = state(ctx).settings()
    if embedded.stop(settings.state_dir):
        typer.echo("stopped")
    else:
        typer.echo("not running")


def install(app: typer.Typer) -> None:
    app.add_typer(server_app, name="server")
