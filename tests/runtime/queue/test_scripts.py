"""The Lua scripts: their list, their callers, and key names spelled in keys.py only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import redis

import runtime
from runtime.queue import keys, scripts
from runtime.queue.scripts import Script, Scripts

LUA_DIR = Path(scripts.__file__).parent / "lua"
RUNTIME_DIR = Path(runtime.__file__).parent
#: The default queue and named ones, dots and dashes included.
QUEUES = ["default", "q1", "batch.jobs-2", "a_b"]


def _long_bracket(text: str, i: int) -> str | None:
    """The closing bracket of a long bracket opening at ``i`` (``[[``, ``[==[``), if any."""
    match = re.match(r"\[(=*)\[", text[i:])
    return None if match is None else "]" + match.group(1) + "]"


def lua_strings(text: str) -> list[str]:
    """Every string literal in Lua source (quoted or long-bracket), comments skipped."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("--", i):
            close = _long_bracket(text, i + 2) or "\n"
            end = text.find(close, i + 2)
            i = len(text) if end < 0 else end + len(close)
        elif text[i] in "'\"":
            quote, j = text[i], i + 1
            while text[j] != quote:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i + 1 : j])
            i = j + 1
        elif close := _long_bracket(text, i):
            start = text.index("[", i + 1) + 1
            end = text.index(close, start)
            out.append(text[start:end])
            i = end + len(close)
        else:
            i += 1
    return out


def key_names() -> set[str]:
    """Every key and prefix keys.py names, and the namespaces they live in."""
    names = {v for k, v in vars(keys).items() if k.isupper() and isinstance(v, str)}
    names.discard(keys.DEFAULT_QUEUE)  # a queue name, checked on its own
    return names | {name.split(":")[0] + ":" for name in names}


def key_literals(text: str) -> list[str]:
    names = key_names()
    return [
        s for s in lua_strings(text) if s == keys.DEFAULT_QUEUE or any(name in s for name in names)
    ]


def lua_files() -> list[Path]:
    return sorted(LUA_DIR.glob("*.lua"))


def test_every_script_file_is_listed_and_every_listed_script_has_a_file() -> None:
    stems = {path.stem for path in lua_files()}
    assert stems == {script.value for script in Script} | {scripts.PRELUDE}


def test_every_script_is_called_from_runtime_code() -> None:
    code = "\n".join(
        path.read_text() for path in RUNTIME_DIR.rglob("*.py") if path != Path(scripts.__file__)
    )
    uncalled = [s.value for s in Script if not re.search(rf"\bscripts\.{s.value}\(", code)]
    assert uncalled == []


def test_every_script_has_one_wrapper_that_calls_that_script() -> None:
    tree = ast.parse(Path(scripts.__file__).read_text())
    used: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            used[node.name] = {
                n.attr
                for n in ast.walk(node)
                if isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name)
                and n.value.id == "Script"
            }
    assert {s.value: used.get(s.value) for s in Script} == {s.value: {s.name} for s in Script}


def test_the_key_literal_scan_finds_literals_in_every_form() -> None:
    source = """
    -- 'task_metadata:' in a comment is fine
    --[[ so is 'wasmq:wake:' in a block comment ]]
    local a = 'task_metadata:' .. id
    local b = "task_queue:" .. q .. ':pending'
    local c = [[wasmq:wake:]]
    local d = 'ERR it\\'s task_set:timeout'
    local e = 'default'
    local f = 'task_stage'
    """
    assert key_literals(source) == [
        "task_metadata:",
        "task_queue:",
        "wasmq:wake:",
        "ERR it\\'s task_set:timeout",
        "default",
    ]


@pytest.mark.parametrize("path", lua_files(), ids=lambda p: p.name)
def test_no_lua_file_spells_a_key_name(path: Path) -> None:
    assert key_literals(path.read_text()) == []


def test_the_prelude_constants_evaluate_to_the_values_of_keys_py(
    redis_client: redis.Redis,
) -> None:
    names = list(scripts.LUA_CONSTANTS)
    reply = redis_client.eval(scripts.prelude() + f"return {{{', '.join(names)}}}", 0)
    values = [v.decode() if isinstance(v, bytes) else v for v in reply]
    assert values == [getattr(keys, name) for name in names]
    parts = redis_client.eval(
        scripts.prelude() + "local out = {} for p in pairs(QUEUE_PARTS) do "
        "out[#out + 1] = p end table.sort(out) return out",
        0,
    )
    assert [p.decode() for p in parts] == sorted(keys.STAGES)


@pytest.mark.parametrize("queue", QUEUES)
def test_queue_key_in_lua_is_keys_queue(redis_client: redis.Redis, queue: str) -> None:
    for part in keys.STAGES:
        got = redis_client.eval(
            scripts.prelude() + "return queue_key(ARGV[1], ARGV[2])", 0, queue, part
        )
        assert got.decode() == keys.queue(queue, part)


def test_queue_key_in_lua_reads_a_missing_queue_field_as_the_default_queue(
    redis_client: redis.Redis,
) -> None:
    lua = scripts.prelude() + "return {queue_key(false, 'dlq'), queue_key('', 'pending')}"
    assert redis_client.eval(lua, 0) == [keys.dlq().encode(), keys.pending().encode()]


def test_queue_key_in_lua_refuses_an_unknown_part_like_keys_queue(
    redis_client: redis.Redis,
) -> None:
    with pytest.raises(ValueError):
        keys.queue("q1", "done")
    with pytest.raises(redis.ResponseError, match="unknown queue part done"):
        redis_client.eval(scripts.prelude() + "return queue_key('q1', 'done')", 0)


@pytest.mark.parametrize(
    ("queue", "expected"),
    [
        ("q1", "q1"),
        ("", "default"),
        ("pending", "default"),
        ("a b", "default"),
        ("x" * 129, "default"),
    ],
)
def test_a_damaged_queue_name_goes_to_the_default_queue(
    redis_client: redis.Redis, queue: str, expected: str
) -> None:
    lua = scripts.prelude() + "return queue_or_default(ARGV[1])"
    assert redis_client.eval(lua, 0, queue) == expected.encode()


def test_push_pending_adds_a_wake_token_per_id_and_trims_older_ones(
    redis_client: redis.Redis,
) -> None:
    lua = scripts.prelude() + (
        "local ids = {} for i = 1, tonumber(ARGV[1]) do ids[i] = tostring(i) end "
        "push_pending(KEYS[1], KEYS[2], ids) return redis.call('LLEN', KEYS[2])"
    )
    redis_client.rpush(keys.wake("q1"), *["old"] * 5)
    assert redis_client.eval(lua, 2, keys.pending("q1"), keys.wake("q1"), 2500) == 2500
    assert redis_client.lrange(keys.pending("q1"), 0, 2) == [b"1", b"2", b"3"]
    assert redis_client.llen(keys.pending("q1")) == 2500


def test_every_script_loads_after_the_prelude(redis_client: redis.Redis) -> None:
    runner = Scripts(redis_client)
    shas = [runner.loaded(script).sha for script in Script]
    assert all(
        redis_client.script_load(scripts.text(s)) == sha
        for s, sha in zip(Script, shas, strict=True)
    )
    assert len(set(shas)) == len(shas)


def test_a_call_runs_its_script_with_its_keys_and_args(redis_client: redis.Redis) -> None:
    redis_client.rpush(keys.dlq("q1"), "gone")
    assert Scripts(redis_client).run(scripts.dlq_purge(queue="q1", cutoff_ms=0)) == 1
    assert redis_client.exists(keys.dlq("q1")) == 0
