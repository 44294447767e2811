"""Putting the process's logging back after a test configured it (the CLI configures
logging for every command it runs, onto a test runner's stderr that then closes)."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator

import structlog


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """structlog's configuration, the root logger's handlers and level, warnings capture
    and the exception hooks, as they were on entry."""
    saved = structlog.get_config() if structlog.is_configured() else None
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = sys.excepthook, threading.excepthook
    try:
        yield
    finally:
        if saved is None:
            structlog.reset_defaults()
        else:
            structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)
        sys.excepthook, threading.excepthook = hooks
