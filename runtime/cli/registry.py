"""CLI commands: registry."""

from __future__ import annotations

import typer


def install(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
