"""The README tells the truth: its task listings are the files in tasks/, its configuration
table is every setting, every ``wasmq`` command it names exists, and its CLI and Python
examples run against the private server (blocks marked ``<!-- illustrative -->`` excepted).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from runtime.cli import app
from runtime.queue import keys
from runtime.settings import Settings
from tests.support.cli import cli_env, run_cli
from tests.support.paths import ROOT
from tests.support.pools import terminate

README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"(?:<!-- ([^>]*?) -->\n)?```(\w*)\n(.*?)```", re.S)


def blocks(language: str | None = None) -> list[tuple[str, str, str]]:
    """``(marker, language, body)`` of each fenced block, the marker being an HTML comment
    right before it (``illustrative``, ``file: PATH``) or ``""``."""
    found = [(m.group(1) or "", m.group(2), m.group(3)) for m in FENCE.finditer(README)]
    return [b for b in found if language is None or b[1] == language]


def command_lines(body: str) -> list[str]:
    lines = (line.strip() for line in body.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def cli_blocks() -> list[str]:
    """The shell blocks to run: every non-illustrative block of ``wasmq`` commands."""
    return [body for marker, _, body in blocks("sh") if marker != "illustrative"]


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One module dir for every README example."""
    return tmp_path_factory.mktemp("readme-modules")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "tasks", tmp_path / "tasks")
    return tmp_path


def test_task_listings_are_the_files() -> None:
    listed = [(m[len("file: ") :], body) for m, _, body in blocks() if m.startswith("file: ")]
    assert {path for path, _ in listed} >= {
        "tasks/task_1.go",
        "tasks/task_1_c.c",
        "tasks/task_1_wat.wat",
        "compose.yaml",
    }
    for path, body in listed:
        assert body == (ROOT / path).read_text(), f"README copy of {path} differs from the file"


def test_configuration_table_lists_every_setting() -> None:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z_]+)` \| (?:`([^`]*)`|\(unset\)) \| (.+) \|$", section, re.M)
    table = {env: default for env, default, _ in rows}
    described = {env: default for env, default, _ in Settings.describe()}
    assert table == described


def commands_of(command: object) -> dict[str, object]:
    """A command group's subcommands by name (``{}`` for a plain command)."""
    found = getattr(command, "commands", None)
    return dict(found) if isinstance(found, dict) else {}


def test_every_named_command_exists() -> None:
    commands = commands_of(typer.main.get_command(app))
    named = re.findall(r"`wasmq ([^`]*)`", README)
    for _, _, body in blocks("sh"):
        named += [
            line[len("wasmq ") :] for line in command_lines(body) if line.startswith("wasmq ")
        ]
    assert len(named) > 30
    for text in named:
        words = text.split()
        if words[0].startswith("-") or words[0].isupper():
            continue  # global options and placeholders (`wasmq COMMAND --help`)
        assert words[0] in commands, f"README names `wasmq {text}`: no such command"
        subcommands = commands_of(commands[words[0]])
        if subcommands and len(words) > 1 and words[1].isalpha():
            assert words[1] in subcommands, f"README names `wasmq {text}`: no such subcommand"
    for name, command in commands.items():
        assert f"`wasmq {name}" in README, f"the CLI reference misses `wasmq {name}`"
        for sub in commands_of(command):
            found = re.search(rf"wasmq {name} {sub}\b", README)
            assert found, f"the README misses `wasmq {name} {sub}`"


def test_shell_blocks_are_cli_commands_or_illustrative() -> None:
    for marker, _, body in blocks("sh"):
        lines = command_lines(body)
        if marker == "illustrative" or all(line.startswith("make ") for line in lines):
            continue  # the quick start's make targets are tested by the demo and the suite
        for line in lines:
            assert line.startswith("wasmq "), f"run or mark illustrative: {line}"


@pytest.mark.toolchain
@pytest.mark.processes
@pytest.mark.slow
def test_shell_blocks_run(
    redis_url: str, redis_client: object, workdir: Path, module_dir: Path, toolchain_cache: Path
) -> None:
    env = cli_env(
        redis_url,
        workdir,
        WASMQ_MODULE_DIR=str(module_dir),
        WASMQ_TOOLCHAIN_CACHE=str(toolchain_cache),
    )
    outputs: dict[str, str] = {}
    for body in cli_blocks():
        for line in command_lines(body):
            args = shlex.split(line, comments=True)
            if args[0] != "wasmq":
                continue
            proc = run_cli(*args[1:], env=env, cwd=workdir, timeout=300)
            assert proc.returncode == 0, f"{line} failed: {proc.stderr}"
            outputs[line] = proc.stdout
    assert outputs["wasmq result readme-now"].strip() == '{"message":"Hello, Ada!"}'
    assert (
        outputs["wasmq logs readme-now"]
        .rstrip()
        .endswith("stdout | Hello, Ada! (from task_1 in WAT)")
    )
    assert "completed" in outputs["wasmq status readme-now"]
    assert "task_1_wat" in outputs["wasmq tasks"] and "greet" in outputs["wasmq tasks"]


@contextlib.contextmanager
def worker(env: dict[str, str], cwd: Path) -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from runtime.cli import main; main()", "worker", "-c", "1"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        terminate(proc, timeout=60)


@pytest.mark.processes
def test_python_examples_run(
    redis_url: str,
    redis_client: object,
    workdir: Path,
    module_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = cli_env(redis_url, workdir, WASMQ_MODULE_DIR=str(module_dir))
    for name in [k for k in list(os.environ) if k.startswith(("WASMQ_", "TASK_"))]:
        monkeypatch.delenv(name)
    for name in ("REDIS_URL", "WASMQ_MODULE_DIR", "WASMQ_STATE_DIR", "TASK_QUEUE_WASM_LOG_DIR"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.chdir(workdir)
    examples = [body for marker, _, body in blocks("python") if marker != "illustrative"]
    assert len(examples) >= 2
    printed = io.StringIO()
    with worker(env, workdir), contextlib.redirect_stdout(printed):
        for body in examples:
            exec(compile(body, "README.md", "exec"), {})
    out = printed.getvalue()
    assert 'b\'{"message":"Hello, Python!"}\'' in out
    assert "1 b'Hello, Python! (from task_1 in WAT)\\n'" in out
    assert "completed" in out
    assert 'b\'{"message":"Hello, soon!"}\'' in out


def test_quick_start_is_two_commands() -> None:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    found = FENCE.search(section)
    assert found is not None
    body = found.group(3)
    assert [line.split("#")[0].strip() for line in command_lines(body)] == [
        "make demo",
        "make test",
    ]
    makefile = (ROOT / "Makefile").read_text()
    assert "$(BIN)/python -m runtime.demo" in makefile


def test_key_layout_names_every_key() -> None:
    section = README.split("## Redis key layout", 1)[1].split("\n## ", 1)[0]
    names = [
        value
        for name, value in vars(keys).items()
        if name.isupper() and isinstance(value, str) and name != "DEFAULT_QUEUE"
    ]
    assert len(names) > 15
    for value in names:
        assert value in section, f"the key layout misses {value}"


def option_names(command: object) -> set[str]:
    """Every ``--long`` and ``-s`` option of a command and of its subcommands."""
    names: set[str] = set()
    for param in getattr(command, "params", []):
        names.update(getattr(param, "opts", []))
        names.update(getattr(param, "secondary_opts", []))
    for sub in commands_of(command).values():
        names |= option_names(sub)
    return names


def test_cli_reference_options_exist() -> None:
    commands = commands_of(typer.main.get_command(app))
    section = README.split("## CLI reference", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `wasmq (\w+)[^`]*` \| (.*) \|$", section, re.M)
    assert {name for name, _ in rows} == set(commands)
    for name, text in rows:
        for option in re.findall(r"`(--?[\w-]+)", text):
            assert option in option_names(commands[name]), f"wasmq {name} has no {option}"


def test_benchmark_figures_are_quoted_from_the_benchmarks_readme() -> None:
    section = README.split("## Benchmarks", 1)[1].split("\n## ", 1)[0]
    source = (ROOT / "benchmarks" / "README.md").read_text()
    rows = re.findall(
        r"^\| ((?:wasmq|[A-Z])[^|]*?) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|$", section, re.M
    )
    assert len(rows) >= 6
    for system, *figures in rows:
        quoted = f"| {system} | " + " | ".join(figures) + " |"
        assert quoted in source, f"benchmarks/README.md has other figures for {system}"
