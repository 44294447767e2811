"""Settings for a test: its own server URL and its own module, state and log dirs."""

from __future__ import annotations

from pathlib import Path

from runtime.settings import Settings


def private_settings(url: str, root: Path) -> Settings:
    """Settings pointing at ``url`` with every directory under ``root``, and nothing read
    from the environment or a ``.env`` file."""
    return Settings.load(
        {
            "redis_url": url,
            "module_dir": root / "modules",
            "state_dir": root / "state",
            "wasm_log_dir": root / "wasm-logs",
        },
        environ={},
        env_file=None,
    )
