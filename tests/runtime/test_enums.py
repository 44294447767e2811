"""The stage, outcome and error-kind enums against what is stored and what produces it.

The Lua scripts write ``task_stage`` and ``error_kind`` as string literals and the
sandbox builds outcomes in several places; these tests fail when either drifts from
the enums, or when an enum keeps a member nothing produces.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import redis

from runtime.queue import keys
from runtime.queue.task import ErrorKind, OutcomeKind, Stage, Task, TextEnum
from runtime.sandbox import outcome as outcome_module
from tests.support.paths import ROOT

LUA = sorted((ROOT / "runtime" / "queue" / "lua").glob("*.lua"))
#: ``'task_stage', 'x'``: a field and its value in an HSET (or a list built for one), or
#: ``set_stage(key, 'x'`` (the prelude helper that also writes ``wasmq_stage``).
STAGE_WRITE = re.compile(r"(?:'task_stage',\s*|set_stage\([^,()]+,\s*)'([^']*)'")
#: ``stage == 'x'``, ``HGET(..., 'task_stage') ~= 'x'``, ``... or 'x'`` after a stage read.
STAGE_TEST = re.compile(r"(?:stage|'task_stage'\))\s*(?:[=~]=|or)\s*'([^']*)'")
ERROR_KIND_WRITE = re.compile(r"'error_kind',\s*'([^']*)'")
#: The last ``redis.call('CMD'`` or ``redis.pcall('CMD'`` before a match.
CALL = re.compile(r"redis\.p?call\('([A-Z]+)'")
#: Commands whose arguments are field names only: two in a row are not field and value.
FIELD_LISTS = {"HMGET", "HDEL"}


def _in_field_list(text: str, at: int) -> bool:
    calls = list(CALL.finditer(text, 0, at))
    if not calls:
        return False
    last = calls[-1]
    return last.group(1) in FIELD_LISTS and ")" not in text[last.end() : at]


def lua_matches(pattern: re.Pattern[str]) -> dict[str, set[str]]:
    """Each captured value -> the scripts it appears in (field lists of reads skipped)."""
    found: dict[str, set[str]] = {}
    for path in LUA:
        text = path.read_text()
        for match in pattern.finditer(text):
            if not _in_field_list(text, match.start()):
                found.setdefault(match.group(1), set()).add(path.name)
    return found


def test_the_lua_scripts_are_found() -> None:
    assert len(LUA) > 10 and all(path.stat().st_size for path in LUA)


def test_every_stage_a_script_writes_or_tests_is_a_stage() -> None:
    found = {**lua_matches(STAGE_TEST), **lua_matches(STAGE_WRITE)}
    unknown = {value: where for value, where in found.items() if value not in set(Stage)}
    assert not unknown, f"stage values in Lua that are no Stage member: {unknown}"


def test_every_stage_is_written_by_a_script() -> None:
    written = lua_matches(STAGE_WRITE)
    assert {str(stage) for stage in Stage} == set(written)


def test_every_error_kind_a_script_writes_is_an_error_kind() -> None:
    written = lua_matches(ERROR_KIND_WRITE)
    assert written, "no script writes error_kind: the pattern no longer matches"
    assert set(written) <= {str(kind) for kind in ErrorKind}, written


def test_every_outcome_kind_but_ok_is_the_error_kind_it_records() -> None:
    for kind in OutcomeKind:
        if kind is OutcomeKind.OK:
            assert "ok" not in {str(k) for k in ErrorKind}
        else:
            assert ErrorKind(kind.value).name == kind.name


def _outcome_kinds_built(path: Path) -> list[ast.expr]:
    """The kind argument of every ``Outcome(...)`` built in ``path``."""
    kinds = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Outcome":
            by_name = [k.value for k in node.keywords if k.arg == "kind"]
            kinds.append(node.args[0] if node.args else by_name[0])
    return kinds


def test_the_sandbox_builds_outcomes_only_from_members_and_uses_them_all() -> None:
    built: set[str] = set()
    for path in (ROOT / "runtime" / "sandbox").glob("*.py"):
        for kind in _outcome_kinds_built(path):
            assert isinstance(kind, ast.Attribute), f"{path.name}: {ast.unparse(kind)}"
            assert ast.unparse(kind.value) == "OutcomeKind", f"{path.name}: {ast.unparse(kind)}"
            built.add(kind.attr)
    assert built == {kind.name for kind in OutcomeKind}


def test_every_error_kind_is_produced_somewhere() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "runtime").rglob("*.py"))
    named = set(re.findall(r"\bErrorKind\.([A-Z_]+)\b", source))
    from_sandbox = {kind.name for kind in OutcomeKind}
    from_lua = {ErrorKind(value).name for value in lua_matches(ERROR_KIND_WRITE)}
    assert {kind.name for kind in ErrorKind} == (named | from_sandbox | from_lua) - {"OK"}


def test_the_outcome_docs_describe_every_failure_kind() -> None:
    doc = outcome_module.__doc__ or ""
    missing = [k for k in OutcomeKind if k is not OutcomeKind.OK and f"``{k}``" not in doc]
    assert not missing


def test_members_read_and_write_as_their_plain_strings(redis_client: redis.Redis) -> None:
    members: list[TextEnum] = [*Stage, *ErrorKind, *OutcomeKind]
    for member in members:
        value = member.value
        assert member == value and hash(member) == hash(value)
        assert str(member) == f"{member}" == f"{member:s}" == format(member) == value
        assert json.dumps({member: member}) == json.dumps({value: value})
        redis_client.hset("enum-check", str(member.name), member)
    stored = redis_client.hgetall("enum-check")
    assert stored == {m.name.encode(): m.value.encode() for m in members[::-1]}


def test_a_task_record_stores_the_plain_stage(redis_client: redis.Redis) -> None:
    task = Task(id="s1", task_name="job", stage=Stage.RETRYING)
    redis_client.hset(keys.task(task.id), mapping=task.to_hash())
    assert redis_client.hget(keys.task(task.id), "task_stage") == b"retrying"
    stored = Task.from_hash(redis_client.hgetall(keys.task(task.id)))
    assert stored.stage == Stage.RETRYING and Stage(stored.stage) is Stage.RETRYING
