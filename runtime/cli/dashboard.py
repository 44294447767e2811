"""``wasmq dashboard``: the web UI (runtime.dashboard) under uvicorn."""

from __future__ import annotations

import os

import typer

from runtime.cli.context import state
from runtime.dashboard.config import DEFAULT_HOST, DEFAULT_PORT

TOKEN_ENV = "WASMQ_DASHBOARD_TOKEN"


def install(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)


def dashboard(
    ctx: typer.Context,
    host: str = typer.Option(
        DEFAULT_HOST,
        "--host",
        help="Address to bind; beyond localhost needs --token or --basic-auth.",
    ),
    port: int = typer.Option(DEFAULT_PORT, "--port", "-p", min=0, max=65535, help="Port to bind."),
    read_only: bool = typer.Option(
        False, "--read-only", help="Hide and refuse every action (redrive, purge, pause...)."
    ),
    token: str | None = typer.Option(
        None, "--token", help=f"Bearer token required of every request ({TOKEN_ENV})."
    ),
    basic_auth: str | None = typer.Option(
        None, "--basic-auth", help="USER:PASSWORD required of every request (HTTP basic auth)."
    ),
) -> None:
    """Serve the web dashboard: queues, tasks with live logs, dead letters, cron, workers."""
    import uvicorn

    from runtime.client import Client
    from runtime.dashboard.app import create_app
    from runtime.dashboard.config import DashboardConfig, parse_basic_auth

    config = DashboardConfig(
        host=host,
        port=port,
        read_only=read_only,
        token=token or os.environ.get(TOKEN_ENV) or None,
        basic_auth=parse_basic_auth(basic_auth) if basic_auth else None,
    )
    config.check()
    st = state(ctx)
    client = Client(settings=st.settings(), client=st.redis())
    app = create_app(client, config)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(
        f"wasmq dashboard on http://{shown}:{port}/"
        + (" (read-only)" if read_only else "")
        + " (Ctrl-C stops it)",
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
