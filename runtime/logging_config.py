"""Structured logging: one configuration for every component.

Every logger is bound to its component (``registry``, ``compiler``, ``broker``,
``worker``, ``scheduler``, ``reaper``, ``server``); events about a task also carry
``task_id`` and ``task_name``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(level: str = "info", fmt: str = "pretty", stream: TextIO | None = None) -> None:
    """Set the log level and renderer for the whole process (logs go to stderr)."""
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=(stream or sys.stderr).isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(component: str, **context: Any) -> Any:
    """A logger bound to ``component`` (and any extra context)."""
    if not structlog.is_configured():
        # Library use without the CLI: still log to stderr, never to stdout.
        configure()
    return structlog.get_logger().bind(component=component, **context)
