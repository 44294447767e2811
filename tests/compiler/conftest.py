"""Fixtures for toolchain tests: one toolchain build cache for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def toolchain_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Go's GOCACHE and Zig's prebuilt libc, shared by every test of the session."""
    path = tmp_path_factory.getbasetemp() / "toolchain-cache"
    path.mkdir(exist_ok=True)
    return path
