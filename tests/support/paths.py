"""Where the tests find the repository's files and their own modules."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "tasks"
#: Purpose-written WAT modules: every limit and failure kind.
WAT = ROOT / "tests" / "runtime" / "sandbox" / "wat"
#: Hostile modules that try to break containment.
HOSTILE = WAT / "hostile"
#: Modules used by the output tests.
OUTPUT_WASM = ROOT / "tests" / "runtime" / "output" / "wasm"
