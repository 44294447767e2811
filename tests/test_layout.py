"""The public facade and the package layout: what users import, and where code lives."""

from __future__ import annotations

import importlib
from collections import defaultdict
from importlib import metadata

import tomllib

import wasmq
from tests.support.paths import ROOT

PACKAGES = (
    "cli",
    "develop",
    "modules",
    "output",
    "queue",
    "sandbox",
    "snapshot",
    "scheduling",
    "server",
    "worker",
)


def test_facade_exports_the_api_users_import() -> None:
    from wasmq import Client, Settings, WasmqError

    assert Client.__module__ == "runtime.client"
    assert issubclass(WasmqError, Exception)
    assert Settings.load({}, environ={}, env_file=None).queue == "default"
    for name in wasmq.__all__:
        assert hasattr(wasmq, name), f"wasmq.__all__ names {name!r}, which it does not define"


def test_version_has_one_source() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert wasmq.__version__ == metadata.version("wasmq") == declared
    assert not hasattr(importlib.import_module("runtime"), "__version__")


def test_cli_reports_the_version() -> None:
    from typer.testing import CliRunner

    from runtime.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wasmq {wasmq.__version__}"


def test_runtime_is_grouped_by_concern() -> None:
    runtime = ROOT / "runtime"
    flat = sorted(p.stem for p in runtime.glob("*.py") if p.stem != "__init__")
    # Only what every package shares (errors, settings, units, logging set-up) and the
    # entry points built from all of them (client, bench, demo) sit at the top.
    assert flat == [
        "bench",
        "client",
        "clock",
        "demo",
        "errors",
        "logging_config",
        "project",
        "settings",
        "units",
    ]
    for package in PACKAGES:
        assert (runtime / package / "__init__.py").is_file(), f"runtime/{package} is not a package"
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {f"runtime.{p}" for p in PACKAGES} <= set(setuptools["packages"])


def test_no_two_modules_share_a_name_across_concerns() -> None:
    """A name means one thing; ``cli/<group>.py`` is the command group of the same concern."""
    seen: dict[str, list[str]] = defaultdict(list)
    for path in (ROOT / "runtime").rglob("*.py"):
        if path.stem == "__init__" or path.parent.name == "cli":
            continue
        seen[path.stem].append(str(path.relative_to(ROOT)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes, f"modules named alike for different things: {clashes}"
