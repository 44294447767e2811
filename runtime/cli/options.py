"""Options that several commands take, defined once so they read and behave alike."""

from __future__ import annotations

from typing import Any

import typer

from runtime.cli.choices import complete_queue_names
from runtime.queue import ceilings


def queue_option() -> Any:
    """``--queue``/``-q`` of a command that enqueues."""
    return typer.Option(
        None, "--queue", "-q", help="Queue (WASMQ_QUEUE).", autocompletion=complete_queue_names
    )


def max_retries_option() -> Any:
    return typer.Option(
        None,
        "--max-retries",
        min=0,
        max=ceilings.MAX_RETRIES,
        help="Retries after the first attempt.",
    )


def timeout_option() -> Any:
    return typer.Option(None, "--timeout", help="Time limit, e.g. 30s.")
