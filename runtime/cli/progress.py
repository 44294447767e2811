"""A status line on stderr for CLI steps that may take more than a second.

A step shorter than :data:`DELAY` shows nothing. Past it, on a terminal, a transient line
(spinner, text, elapsed seconds) is redrawn a few times a second and erased when the step
ends, leaving the screen as it was; elsewhere (a pipe, a file, a CI log) one plain line
``text...`` is written once, and nothing more. It always goes to stderr, so it never
mixes with what a command prints on stdout, and shows with ``--json`` too (``wasmq run
--json`` turns it off: its stderr stays empty).
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from types import TracebackType
from typing import TextIO

#: Seconds a step runs before anything is shown.
DELAY = 1.0
#: Seconds between redraws on a terminal.
INTERVAL = 0.2
_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_ASCII_FRAMES = "|/-\\"


def elapsed_text(seconds: float) -> str:
    """Whole seconds as the status line counts them: ``3 s``, ``2 min 05 s``."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    return f"{whole // 60} min {whole % 60:02d} s"


class Status:
    """``with Status("compiling greet.go (go)") as status:`` around a step that may be slow.

    ``status.update(text)`` changes the text (a terminal shows it at the next redraw; the
    plain line, once written, is not repeated)."""

    def __init__(
        self,
        text: str,
        *,
        stream: TextIO | None = None,
        terminal: bool | None = None,
        delay: float = DELAY,
        interval: float = INTERVAL,
        enabled: bool = True,
    ) -> None:
        self.text = text
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.delay = delay
        self.interval = interval
        #: Whether anything was written (on a terminal: a line now on screen).
        self.shown = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        encoding = (getattr(self.stream, "encoding", None) or "").lower().replace("-", "")
        self._frames = _FRAMES if encoding == "utf8" else _ASCII_FRAMES

    def update(self, text: str) -> None:
        self.text = text

    def __enter__(self) -> Status:
        self._started = time.monotonic()
        if not self.enabled:
            return self
        self._thread = threading.Thread(target=self._run, name="wasmq-status", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop redrawing and erase the line (a no-op when nothing is on screen, or
        when closed already)."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.terminal and self.shown:
            self.shown = False
            self._write("\r\033[K")

    def _run(self) -> None:
        if self._done.wait(self.delay):
            return
        if not self.terminal:
            self.shown = True
            self._write(f"{self.text}...\n")
            return
        frame = 0
        while True:
            self.shown = True
            elapsed = elapsed_text(time.monotonic() - self._started)
            spinner = self._frames[frame % len(self._frames)]
            line = f"{spinner} {self.text} {elapsed}"
            # A line wider than the terminal wraps, and erasing would miss its first row.
            width = self._columns() - 1
            if len(line) > width > 10:
                line = line[: width - 3] + "..."
            self._write(f"\r\033[K{line}")
            frame += 1
            if self._done.wait(self.interval):
                return

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            return shutil.get_terminal_size().columns

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed under us: the status line is not worth an error


class Steps:
    """Status of steps that may run in parallel (the compiles of one ``register``).

    ``start(key, text)`` and ``finish(key)`` may be called from any thread. On a terminal
    one status line shows the latest step still running (and how many others run); else
    each step is a :class:`Status` of its own, so every slow one gets its plain line."""

    def __init__(self, *, stream: TextIO | None = None, terminal: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self._lock = threading.Lock()
        self._running: dict[str, Status | str] = {}
        self._line: Status | None = None

    def start(self, key: str, text: str) -> None:
        with self._lock:
            if not self.terminal:
                step = Status(text, stream=self.stream, terminal=False)
                self._running[key] = step.__enter__()
                return
            self._running[key] = text
            if self._line is None:
                self._line = Status(text, stream=self.stream, terminal=True).__enter__()
            self._show()

    def finish(self, key: str) -> None:
        with self._lock:
            step = self._running.pop(key, None)
            if isinstance(step, Status):
                step.close()
            elif self._line is not None and self._running:
                self._show()

    def _show(self) -> None:
        assert self._line is not None
        latest = str(list(self._running.values())[-1])
        others = len(self._running) - 1
        self._line.update(latest + (f" (+{others} more)" if others else ""))

    def close(self) -> None:
        with self._lock:
            for step in self._running.values():
                if isinstance(step, Status):
                    step.close()
            self._running.clear()
            if self._line is not None:
                self._line.close()
                self._line = None

    def __enter__(self) -> Steps:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
