"""The development tools are reproducible: pinned in pyproject.toml, locked with hashes in
requirements/dev.lock, installed from the lock by the Makefile and run by pre-commit from
the project venv at those same versions."""

from __future__ import annotations

import re
from importlib import metadata

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.paths import ROOT

LOCK = ROOT / "requirements" / "dev.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MAKEFILE = (ROOT / "Makefile").read_text()
PRE_COMMIT = (ROOT / ".pre-commit-config.yaml").read_text()

# A pinned line and the hash lines continuing it.
_ENTRY = re.compile(
    r"^([\w.-]+)==([^\s\\]+)((?:[ \t]*\\\n[ \t]+--hash=sha256:[0-9a-f]{64})*)", re.M
)


def locked() -> dict[str, tuple[str, int]]:
    """Each locked package (canonical name) -> (version, how many hashes it carries)."""
    found: dict[str, tuple[str, int]] = {}
    for match in _ENTRY.finditer(LOCK.read_text()):
        found[canonicalize_name(match[1])] = (match[2], match[3].count("--hash="))
    return found


def requirements(extra: str | None = None) -> list[Requirement]:
    """The runtime dependencies, or those of one extra."""
    project = PYPROJECT["project"]
    texts = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return [Requirement(text) for text in texts]


def same_check(command: str, recipe: str) -> bool:
    """Whether Makefile ``recipe`` is ``command`` given files to check (no other options)."""
    if recipe != command and not recipe.startswith(command + " "):
        return False
    return not any(word.startswith("-") for word in recipe[len(command) :].split())


def test_every_locked_package_is_pinned_with_hashes() -> None:
    entries = locked()
    pinned_lines = re.findall(r"^[\w.-]+==", LOCK.read_text(), re.M)
    assert len(entries) == len(pinned_lines) > 30
    unhashed = [name for name, (_, hashes) in entries.items() if hashes == 0]
    assert not unhashed, f"locked without a hash: {unhashed}"


def test_dev_tools_are_pinned_exactly_and_locked_at_their_pins() -> None:
    entries = locked()
    for requirement in requirements("dev"):
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", (
            f"pin {requirement} exactly in the dev extra"
        )
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{name} is not in {LOCK.name}: run make lock"
        assert entries[name][0] == specifiers[0].version, f"{name}: run make lock"


def test_dependencies_and_extras_are_locked_within_their_ranges() -> None:
    entries = locked()
    extras = ("go", "zig", "otel")
    declared = [*requirements(), *(r for extra in extras for r in requirements(extra))]
    assert {"dev", *extras} == set(PYPROJECT["project"]["optional-dependencies"])
    for requirement in declared:
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{name} is not in {LOCK.name}: run make lock"
        version = entries[name][0]
        assert requirement.specifier.contains(version), f"{name}=={version} is not {requirement}"


def test_the_venv_holds_the_locked_versions() -> None:
    stale = {}
    for name, (version, _) in locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            stale[name] = f"{installed}, locked {version}"
    assert not stale, f"the venv is not the lock (run make venv): {stale}"


def test_makefile_installs_from_the_lock_alone() -> None:
    assert "LOCK := requirements/dev.lock" in MAKEFILE
    stamp = MAKEFILE.split("$(STAMP): ", 1)[1].split("\n\n", 1)[0]
    assert stamp.startswith("pyproject.toml $(LOCK)\n")
    assert "pip install --quiet --require-hashes -r $(LOCK)\n" in stamp
    assert "pip install --quiet --no-deps -e .\n" in stamp
    lock = MAKEFILE.split("\nlock:\n", 1)[1].split("\n\n", 1)[0]
    assert "pip compile pyproject.toml --extra dev --extra go --extra zig --extra otel" in lock
    assert "--generate-hashes" in lock and "--output-file $(LOCK)" in lock


def test_pre_commit_runs_the_make_checks_with_the_venv_tools() -> None:
    """Local hooks only (nothing fetched), each a command ``make lint typecheck`` runs."""
    assert re.findall(r"^\s*- repo: (\S+)", PRE_COMMIT, re.M) == ["local"]
    hooks = re.findall(r"^\s*- id: ", PRE_COMMIT, re.M)
    languages = re.findall(r"^\s*language: (\S+)", PRE_COMMIT, re.M)
    entries = re.findall(r"^\s*entry: (.+)$", PRE_COMMIT, re.M)
    assert len(hooks) == len(entries) >= 3
    assert languages == ["system"] * len(hooks)
    dev_tools = {canonicalize_name(r.name) for r in requirements("dev")}
    recipes = [line.strip() for line in MAKEFILE.splitlines() if line.startswith("\t")]
    for entry in entries:
        assert entry.startswith(".venv/bin/"), entry
        tool = entry.split()[0].removeprefix(".venv/bin/")
        assert {tool, f"{tool}-bin"} & dev_tools, f"{tool} is not a pinned dev tool"
        command = entry.replace(".venv/bin/", "$(BIN)/", 1)
        assert any(same_check(command, line) for line in recipes), f"make runs no {entry}"


def test_coverage_measures_every_package_that_ships() -> None:
    shipped = {name.split(".")[0] for name in PYPROJECT["tool"]["setuptools"]["packages"]}
    assert set(PYPROJECT["tool"]["coverage"]["run"]["source"]) == shipped
