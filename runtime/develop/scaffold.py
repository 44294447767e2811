"""``wasmq new``: a handler directory from a language's template, ready to run and register.

Each language's template is ``template/handler.<ext>`` and ``template/payload.json`` in
its SDK directory (:func:`compiler.sdk.path`); ``__NAME__`` in them becomes the task's
name. The directory gets ``NAME.<ext>`` (the file stem is the name ``wasmq register``
gives the task), ``payload.json`` and a README with the commands to run and register it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import WasmqError
from runtime.queue.names import check_task_name

#: Language (as ``--lang`` takes it) -> source file extension and the name people use.
LANGUAGES: dict[str, tuple[str, str]] = {
    "go": ("go", "Go"),
    "c": ("c", "C"),
    "zig": ("zig", "Zig"),
    "wat": ("wat", "WebAssembly text (no SDK)"),
    "assemblyscript": ("ts", "AssemblyScript"),
}
PLACEHOLDER = "__NAME__"


class ScaffoldError(WasmqError):
    """A new handler directory could not be written."""


@dataclass
class Scaffold:
    """What ``new`` wrote."""

    directory: Path
    source: Path
    payload: Path
    files: list[Path] = field(default_factory=list)

    def run_command(self) -> str:
        return f"wasmq run {self.source} --payload @{self.payload}"


def template_files(language: str) -> tuple[Path, Path]:
    """The handler and sample payload of ``language``'s template."""
    from compiler import sdk

    ext, _ = LANGUAGES[language]
    template = sdk.path(language) / "template"
    handler, payload = template / f"handler.{ext}", template / "payload.json"
    for path in (handler, payload):
        if not path.is_file():
            raise ScaffoldError(
                f"the {language} template is incomplete: {path} is missing; reinstall wasmq"
            )
    return handler, payload


def readme(name: str, language: str) -> str:
    ext, words = LANGUAGES[language]
    return (
        f"# {name}\n\n"
        f"A wasmq task handler in {words}: `{name}.{ext}`, with a sample payload in"
        " `payload.json`. From the directory above this one, run it locally, then"
        " register it:\n\n"
        f"    wasmq run {name}/{name}.{ext} --payload @{name}/payload.json\n"
        f"    wasmq register {name}/{name}.{ext}\n"
    )


def scaffold(name: str, language: str, parent: Path, *, force: bool = False) -> Scaffold:
    """Write ``parent/name/`` for a ``language`` handler; refuse an existing directory
    unless ``force`` (then only the files written here are replaced)."""
    check_task_name(name)
    if language not in LANGUAGES:
        choices = ", ".join(LANGUAGES)
        raise ScaffoldError(f"unknown language {language!r}: use one of {choices}")
    handler, payload = template_files(language)
    directory = parent / name
    if directory.exists() and not force:
        raise ScaffoldError(f"{directory} exists already; pick another name or pass --force")
    if directory.exists() and not directory.is_dir():
        raise ScaffoldError(f"{directory} exists and is not a directory; remove it first")
    ext, _ = LANGUAGES[language]
    contents = {
        directory / f"{name}.{ext}": handler.read_text().replace(PLACEHOLDER, name),
        directory / "payload.json": payload.read_text().replace(PLACEHOLDER, name),
        directory / "README.md": readme(name, language),
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for path, text in contents.items():
            path.write_text(text)
    except OSError as exc:
        raise ScaffoldError(f"cannot write {directory}: {exc.strerror or exc}") from None
    files = list(contents)
    return Scaffold(directory, files[0], files[1], files)
