"""Fixtures of the runtime tests: one sandbox per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime.sandbox import Sandbox
from runtime.settings import Settings


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """A sandbox with default settings (no Redis needed), closed after the module."""
    box = Sandbox(Settings.load({}, environ={}, env_file=None))
    try:
        yield box
    finally:
        box.close()
