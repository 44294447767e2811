"""``wasmq new``'s files: the template with the name filled in, a payload, a README."""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler import sdk
from runtime.develop.scaffold import LANGUAGES, PLACEHOLDER, ScaffoldError, scaffold
from runtime.errors import InvalidTask


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_language_has_a_template_that_names_the_task(language: str) -> None:
    ext, _ = LANGUAGES[language]
    template = sdk.path(language) / "template"
    assert PLACEHOLDER in (template / f"handler.{ext}").read_text()
    assert (template / "payload.json").is_file()


def test_writes_the_handler_payload_and_readme(tmp_path: Path) -> None:
    made = scaffold("greeter", "wat", tmp_path)
    directory = tmp_path / "greeter"
    assert made.directory == directory
    assert made.files == [
        directory / "greeter.wat",
        directory / "payload.json",
        directory / "README.md",
    ]
    handler = made.source.read_text()
    assert PLACEHOLDER not in handler and '{\\"task\\":\\"greeter\\"' in handler
    assert PLACEHOLDER not in made.payload.read_text()
    readme = (directory / "README.md").read_text()
    assert "    wasmq run greeter/greeter.wat --payload @greeter/payload.json\n" in readme
    assert "    wasmq register greeter/greeter.wat\n" in readme
    assert made.run_command() == (
        f"wasmq run {directory}/greeter.wat --payload @{directory}/payload.json"
    )


def test_refuses_an_existing_directory_unless_forced(tmp_path: Path) -> None:
    scaffold("greeter", "wat", tmp_path)
    (tmp_path / "greeter" / "greeter.wat").write_text("my edits")
    (tmp_path / "greeter" / "notes.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match=r"greeter exists already; pick another name or pass"):
        scaffold("greeter", "wat", tmp_path)
    assert (tmp_path / "greeter" / "greeter.wat").read_text() == "my edits"
    scaffold("greeter", "wat", tmp_path, force=True)
    assert (tmp_path / "greeter" / "greeter.wat").read_text() != "my edits"
    assert (tmp_path / "greeter" / "notes.txt").read_text() == "mine"
    (tmp_path / "plain").write_text("a file")
    with pytest.raises(ScaffoldError, match="is not a directory"):
        scaffold("plain", "wat", tmp_path, force=True)


def test_refuses_bad_names_and_languages(tmp_path: Path) -> None:
    with pytest.raises(InvalidTask, match="invalid task name 'a/b'"):
        scaffold("a/b", "wat", tmp_path)
    with pytest.raises(ScaffoldError, match="unknown language 'cobol': use one of go, c, zig, wat"):
        scaffold("ok", "cobol", tmp_path)
    assert list(tmp_path.iterdir()) == []
