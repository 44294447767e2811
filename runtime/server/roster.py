"""The per-user roster of embedded servers, so ``wasmq server status`` can list them all.

Each server that starts writes ``<user root>/servers/<tag>.json`` naming its state dir
(the user root is ``$XDG_STATE_HOME/wasmq``); stopping it removes the entry, and readers
drop entries whose server they find gone. The roster is an index only: a server runs the
same whether or not its entry could be written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path

from runtime.logging_config import get_logger
from runtime.project import user_root

log = get_logger("server")


def roster_dir() -> Path:
    return user_root() / "servers"


def _entry(state_dir: Path) -> Path:
    tag = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]
    return roster_dir() / f"{tag}.json"


def record(state_dir: Path, pid: int) -> None:
    """Enter the server of ``state_dir`` (pid ``pid``), replacing any older entry."""
    entry = _entry(state_dir)
    data = {"state_dir": str(state_dir.resolve()), "pid": pid, "started_at": time.time()}
    try:
        entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = entry.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(data) + "\n")
        partial.replace(entry)
    except OSError as exc:
        log.debug("cannot record the embedded server", entry=str(entry), error=str(exc))


def forget(state_dir: Path) -> None:
    with contextlib.suppress(OSError):
        _entry(state_dir).unlink()


def recorded() -> list[Path]:
    """State dirs of the servers entered, oldest entry first; unreadable entries dropped."""
    found: list[tuple[float, Path]] = []
    try:
        entries = sorted(roster_dir().glob("*.json"))
    except OSError:
        return []
    for entry in entries:
        try:
            data = json.loads(entry.read_text())
            found.append((float(data["started_at"]), Path(data["state_dir"])))
        except FileNotFoundError:
            continue  # removed by a concurrent stop
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                entry.unlink()
    return [state_dir for _, state_dir in sorted(found)]
