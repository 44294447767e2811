"""``wasmq server status|start|stop``: manage the embedded Valkey server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from runtime.cli.context import announce_new_server, state
from runtime.server import embedded
from runtime.units import format_size, human_duration

server_app = typer.Typer(help="Manage the embedded Valkey server (used when REDIS_URL is unset).")


def _as_json(st: embedded.ServerStatus) -> dict[str, Any]:
    data = dict(st.__dict__)
    for key in ("socket", "data_dir", "state_dir"):
        if data[key] is not None:
            data[key] = str(Path(data[key]).absolute())
    return data


def _uptime(st: embedded.ServerStatus) -> str:
    return human_duration(st.uptime_ms / 1000 if st.uptime_ms is not None else None)


def _same(a: Path | None, b: Path) -> bool:
    return a is not None and a.resolve() == b.resolve()


def _echo_current(st: embedded.ServerStatus, state_dir: Path) -> None:
    if st.running:
        typer.echo(
            f"running  pid {st.pid}  valkey {st.version}  socket {st.socket}\n"
            f"         uptime {_uptime(st)}  "
            f"memory {format_size(st.used_memory_bytes)}  keys {st.keys}"
        )
    elif st.died:
        log_file = embedded.ServerPaths(state_dir).log_file
        typer.echo(
            f"not running: it died (its pid file outlived it); see {log_file} for why.\n"
            "A running worker pool, or the next command that needs it, restarts it."
        )
    else:
        typer.echo(f"not running  (state dir {state_dir})")


def _echo_servers(servers: list[embedded.ServerStatus], state_dir: Path) -> None:
    if not servers:
        return
    rows = [
        (
            "*" if _same(s.state_dir, state_dir) else " ",
            str(s.state_dir),
            str(s.pid),
            _uptime(s),
            str(s.keys),
        )
        for s in servers
    ]
    width = max(len("STATE DIR"), *(len(row[1]) for row in rows))
    typer.echo("\nembedded servers of this user (* this directory's):")
    typer.echo(f"  {'STATE DIR':<{width}}  {'PID':>7}  {'UPTIME':<11}  KEYS")
    for mark, where, pid, uptime, keys in rows:
        typer.echo(f"{mark} {where:<{width}}  {pid:>7}  {uptime:<11}  {keys}")


@server_app.command("status")
def status_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Say whether this directory's embedded server runs, where, and how big its data is;
    then list every embedded server of this user that runs."""
    settings = state(ctx).settings()
    st = embedded.status(settings.state_dir)
    servers = embedded.running_servers()
    if as_json:
        listed = [
            {**_as_json(s), "used_here": _same(s.state_dir, settings.state_dir)} for s in servers
        ]
        typer.echo(json.dumps({"current": _as_json(st), "servers": listed}))
    else:
        _echo_current(st, settings.state_dir)
        _echo_servers(servers, settings.state_dir)
    if settings.redis_url:
        typer.echo("note: REDIS_URL is set, so commands use that server, not this one", err=True)
    raise typer.Exit(0 if st.running or as_json else 3)


@server_app.command("start")
def start_cmd(ctx: typer.Context) -> None:
    """Start the embedded server now (commands also start it on demand)."""
    settings = state(ctx).settings()
    url = embedded.ensure_running(settings.state_dir, announce_new_server)
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
