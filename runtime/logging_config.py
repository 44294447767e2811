"""Structured logging: one configuration for every component.

Every logger is bound to its component (``registry``, ``compiler``, ``broker``,
``worker``, ``scheduler``, ``reaper``, ``server``); events about a task also carry
``task_id`` and ``task_name``.

:func:`configure` sets the level and format for the whole process: structlog's events,
records of the standard ``logging`` module (libraries such as redis-py), Python warnings
and, in the JSON format, uncaught exceptions all come out as lines of that one format.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

#: Marks the handler :func:`configure` puts on the root logger, so a second call
#: replaces it instead of adding another.
_HANDLER_NAME = "wasmq"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record, not as it was at setup (a
    test runner swaps it for each command it runs)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def _renderer(fmt: str, stream: TextIO) -> Processor:
    if fmt == "json":
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=stream.isatty())


def _shared() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


class _CurrentStderr:
    """A structlog logger writing to ``sys.stderr`` as it is at each event, so a logger
    built once (loggers are cached) follows a swapped stderr (a test runner's)."""

    _lock = threading.Lock()

    def msg(self, message: str) -> None:
        with self._lock:
            stream = sys.stderr
            stream.write(message + "\n")
            stream.flush()

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg


def _current_stderr(*args: Any) -> _CurrentStderr:
    return _CurrentStderr()


#: Bumped by every configuration, so cached loggers know to rebuild themselves.
_generation = 0


def _configure_structlog(level: str, fmt: str, stream: TextIO | None) -> Processor:
    global _generation
    renderer = _renderer(fmt, stream or sys.stderr)
    structlog.configure(
        processors=[*_shared(), structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=_current_stderr if stream is None else structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    _generation += 1
    return renderer


def configure(level: str = "info", fmt: str = "pretty", stream: TextIO | None = None) -> None:
    """Set the log level and format for the whole process (logs go to stderr)."""
    renderer = _configure_structlog(level, fmt, stream)
    _route_stdlib(LEVELS.get(level, logging.INFO), renderer, stream)
    _route_uncaught(fmt == "json")


def _route_stdlib(level: int, renderer: Processor, stream: TextIO | None) -> None:
    """Render ``logging`` records (and warnings, through ``py.warnings``) like our events."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared(), structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)


def _route_uncaught(as_json: bool) -> None:
    """In JSON, an uncaught exception is one ``error`` event with its traceback in a field
    (the default hooks print a multi-line traceback no log reader can parse)."""
    if not as_json:
        sys.excepthook = sys.__excepthook__
        threading.excepthook = threading.__excepthook__
        return

    def main_hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        get_logger("wasmq").error("uncaught exception", exc_info=(kind, exc, tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
        thread = args.thread.name if args.thread is not None else None
        get_logger("wasmq").error("uncaught exception in thread", thread=thread, exc_info=exc_info)

    sys.excepthook = main_hook
    threading.excepthook = thread_hook


class _Logger:
    """A component's logger: built from the configuration on first use and rebuilt only
    after :func:`configure` runs again, so loggers modules create at import follow a later
    configuration, while an event (or a filtered-out one, on the worker's hot path) costs
    one generation check, not a logger assembly."""

    __slots__ = ("_bound", "_built", "_context")

    def __init__(self, context: dict[str, Any]) -> None:
        self._context = context
        self._bound: Any = None
        self._built = -1

    def _current(self) -> Any:
        if self._built != _generation:
            self._bound = structlog.get_logger().bind(**self._context)
            self._built = _generation
        return self._bound

    def __getattr__(self, name: str) -> Any:
        return getattr(self._current(), name)


def get_logger(component: str, **context: Any) -> Any:
    """A logger bound to ``component`` (and any extra context), following the current
    configuration (its level and its format)."""
    if not structlog.is_configured():
        # Library use without the CLI: still log to stderr, never to stdout; the host
        # application's own ``logging`` setup is left alone.
        _configure_structlog("info", "pretty", None)
    return _Logger({"component": component, **context})
