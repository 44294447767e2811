"""AssemblyScript through ``asc`` (the ``assemblyscript`` npm package) on Node.js.

Handlers use the guest SDK (``import { handle } from "wasmq"``, resolved through
``--path``) or export ``alloc`` and ``execute`` themselves. Every build also compiles the
SDK's ``hooks.ts``, which serves what the standard library would import from its
JavaScript host (``env.abort``, ``env.trace``, ``env.seed``, ``env.console.*``) with WASI
and ``wasmq.fail``: task modules may import nothing else. The start function is exported
as ``_initialize``, so the module is a reactor and top-level code (``handle(...)``) runs
before the first task.

``asc`` is found at ``WASMQ_ASC``, else in the SDK's own ``node_modules`` (``make
toolchains`` installs the version its lock pins), else on ``PATH``. Node is dynamically
linked: the sandbox shows the ``node`` binary, the host's shared-library dirs, the
``node_modules`` dir holding the compiler and its dependencies, and the SDK.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
from pathlib import Path

from compiler import sdk
from compiler.base import base_env, read_output, run_tool, workspace
from compiler.isolation import TOOLCHAIN, WORK, Sandbox, bwrap_for
from runtime.errors import CompileError, ToolchainMissing

#: Names the compiler through a path to its ``asc`` (the npm bin link or ``bin/asc.js``).
ASC_ENV = "WASMQ_ASC"
PACKAGE = "assemblyscript"

#: The standard library's host imports, routed to the SDK's hooks.
_HOOKS = ("abort", "trace", "seed", "console")
# asc's diagnostics: "ERROR TS2304: message" ... "└─ in file.ts(3,5)".
_DIAGNOSTIC = re.compile(r"^ERROR (\w+): (.*)$")
_LOCATION = re.compile(r"in (\S+?)\((\d+),(\d+)\)\s*$")
_MORE = re.compile(r" \(\+\d+ more lines\)$")


def _package_root(asc: Path) -> Path | None:
    """The ``assemblyscript`` package an ``asc`` path belongs to (links followed)."""
    try:
        script = asc.resolve(strict=True)
    except OSError:
        return None
    root = script.parent.parent  # <package>/bin/asc.js
    try:
        name = json.loads((root / "package.json").read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return root if name == PACKAGE else None


@functools.cache
def _find(explicit: str | None, on_path: str | None) -> Path | None:
    if explicit:
        # A named compiler is the one meant: no quiet fallback to another.
        return _package_root(Path(explicit))
    try:
        bundled = sdk.path("assemblyscript") / "node_modules" / ".bin" / "asc"
    except ToolchainMissing:
        bundled = None
    for candidate in (bundled, Path(on_path) if on_path else None):
        root = _package_root(candidate) if candidate else None
        if root is not None:
            return root
    return None


def find_asc() -> Path | None:
    """The ``assemblyscript`` package directory the adapter compiles with."""
    return _find(os.environ.get(ASC_ENV) or None, shutil.which("asc"))


def find_node() -> Path | None:
    found = shutil.which("node")
    return Path(found).resolve() if found else None


def _package_version(root: Path) -> str:
    try:
        return str(json.loads((root / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"


def _dependency(root: Path, name: str) -> Path | None:
    """Where Node finds package ``name`` for ``root``: nested, or beside it."""
    for candidate in (root / "node_modules" / name, root.parent / name):
        if (candidate / "package.json").is_file():
            return candidate
    return None


def _packages(root: Path) -> dict[str, Path]:
    """``root`` and the packages it depends on, directly or not, by name."""
    found: dict[str, Path] = {}
    todo = [(PACKAGE, root)]
    while todo:
        name, path = todo.pop()
        if name in found:
            continue
        found[name] = path
        try:
            needs = json.loads((path / "package.json").read_text()).get("dependencies") or {}
        except (OSError, ValueError, AttributeError):
            needs = {}
        for dependency in needs:
            located = _dependency(path, dependency)
            if located is None:
                raise ToolchainMissing(
                    f"the AssemblyScript compiler at {root} lacks its dependency {dependency}:"
                    " run `make toolchains` (or npm install where it lives)"
                )
            todo.append((dependency, located))
    return found


class AssemblyScriptAdapter:
    """``.ts`` (AssemblyScript) with ``asc``."""

    language = "assemblyscript"
    name = "asc"
    runs_toolchain = True

    def __init__(self, cache_dir: Path | None = None, isolation: str = "bwrap") -> None:
        # asc keeps no build cache.
        self.cache_dir = cache_dir
        self.isolation = isolation

    def available(self) -> bool:
        return find_node() is not None and find_asc() is not None

    def install_hint(self) -> str:
        if find_node() is None:
            return "put Node.js 20+ on PATH, then run `make toolchains`"
        return (
            "run `make toolchains` (npm ci in sdk/assemblyscript), or point "
            f"{ASC_ENV} at an asc of assemblyscript 0.28"
        )

    def _toolchain(self) -> tuple[Path, Path]:
        node, root = find_node(), find_asc()
        if node is None or root is None:
            missing = "Node.js" if node is None else "the AssemblyScript compiler (asc)"
            raise ToolchainMissing(f"{missing} is not installed: {self.install_hint()}")
        return node, root

    def version(self) -> str:
        _, root = self._toolchain()
        binaryen = _dependency(root, "binaryen")
        tools = f"asc {_package_version(root)}"
        if binaryen is not None:
            tools += f" binaryen {_package_version(binaryen)}"
        # The SDK (hooks included) is part of every build: changing it rebuilds handlers.
        return f"{tools} wasmq-sdk {sdk.digest('assemblyscript')}"

    def flags(self) -> tuple[str, ...]:
        uses = [arg for hook in _HOOKS for arg in ("--use", f"{hook}={_hook_name(hook)}")]
        return ("-O3s", "--exportStart", "_initialize", *uses)

    def compile(self, source: Path, *, timeout: float, output_limit: int) -> bytes:
        node, root = self._toolchain()
        sandbox = Sandbox(bwrap_for(self.isolation))
        with workspace(source) as (tmp, copy):
            work = sandbox.bind(tmp, WORK, writable=True)
            sandbox.system_libraries()
            seen_node = sandbox.bind(node, TOOLCHAIN / "bin" / "node")
            # The compiler and its dependencies (binaryen, long), each package alone in one
            # node_modules, where Node resolves them from the compiler's own path.
            shown = {
                name: sandbox.bind(path, TOOLCHAIN / "node_modules" / name)
                for name, path in _packages(root).items()
            }
            asc = shown[PACKAGE] / "bin" / "asc.js"
            sdk_dir = sandbox.bind(sdk.path("assemblyscript"), sdk.SDK_MOUNT / "assemblyscript")
            command = [
                str(seen_node),
                str(asc),
                # "./": a file named like an option stays a file name.
                f"./{copy.name}",
                str(sdk_dir / "hooks.ts"),
                "--outFile",
                str(work / "out.wasm"),
                "--path",
                str(sdk_dir),
                "--noColors",
                # Warnings and hints only: the one-line error keeps room for errors.
                "--disableWarning",
                *self.flags(),
            ]
            try:
                run_tool(
                    command,
                    sandbox=sandbox,
                    source=source,
                    workdir=work,
                    cwd=work / "src",
                    env=base_env(work),
                    timeout=timeout,
                )
            except CompileError as exc:
                raise CompileError(_located(str(exc), copy.name, source)) from None
            return read_output(tmp / "out.wasm", source, output_limit)


def _hook_name(hook: str) -> str:
    return f"__wasmq_{hook}"


def _located(message: str, name: str, source: Path) -> str:
    """asc's boxed diagnostics, as :func:`~compiler.base.run_tool` joined them with
    `` | ``, turned into ``file:line:col: code: text``, one per error."""
    head, _, body = message.partition("failed: ")
    body, cut = _MORE.subn("", body)
    found: list[str] = []
    pending: tuple[str, str] | None = None
    for part in body.split(" | "):
        diagnostic = _DIAGNOSTIC.match(part.strip())
        if diagnostic:
            pending = (diagnostic.group(1), diagnostic.group(2))
            continue
        where = _LOCATION.search(part)
        if where and pending is not None:
            path = where.group(1)
            shown = str(source) if path.removeprefix("./") == name else path
            found.append(f"{shown}:{where.group(2)}:{where.group(3)}: {pending[0]}: {pending[1]}")
            pending = None
    if not found:
        return message
    more = " (and more errors)" if cut or pending is not None else ""
    return f"{head}failed: {' | '.join(found)}{more}"
