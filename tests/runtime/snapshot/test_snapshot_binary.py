"""The binary reader and writer the snapshots rely on: LEB128 numbers and constants round
trip (through the real engine where it matters), malformed input is a BinaryError, and a
mutated module makes ``take`` refuse or succeed, never crash."""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Sequence

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.errors import RegistryError
from runtime.modules.contract import compile_checked
from runtime.sandbox import Sandbox
from runtime.sandbox.engine import get_engine
from runtime.snapshot import NotSnapshotted, take
from runtime.snapshot import binary as wasm
from tests.runtime.snapshot.conftest import LIMITS, WAT_DIR

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENGINE_CHECKS = settings(max_examples=40, deadline=None)


def read_s64(data: bytes) -> tuple[int, int]:
    """A signed LEB128 (the reference decoding): (value, bytes read)."""
    value = shift = 0
    for pos, byte in enumerate(data):
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte & 0x40:
                value -= 1 << shift
            return value, pos + 1
    raise AssertionError("unterminated")


@FAST
@given(st.integers(0, 2**32 - 1))
def test_u32_round_trips_in_the_fewest_bytes(value: int) -> None:
    encoded = wasm.u32(value)
    assert wasm.read_u32(encoded + b"\x99", 0) == (value, len(encoded))
    assert len(encoded) == max(1, -(-value.bit_length() // 7))
    assert wasm.skip_leb(encoded, 0) == len(encoded)


@FAST
@given(st.integers(-(2**63), 2**63 - 1))
def test_s64_round_trips_in_the_fewest_bytes(value: int) -> None:
    encoded = wasm.s64(value)
    assert read_s64(encoded) == (value, len(encoded))
    bits = (value if value >= 0 else ~value).bit_length() + 1  # with the sign bit
    assert len(encoded) == -(-bits // 7)
    assert wasm.skip_leb(encoded, 0) == len(encoded)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80",
        b"\xff\xff\xff\xff",
        b"\x80\x80\x80\x80\x80\x00",  # six bytes
        b"\xff\xff\xff\xff\x7f",  # five bytes, 35 bits
        b"\x80\x80\x80\x80\x10",  # 2**32
    ],
)
def test_read_u32_refuses_truncated_and_overlong_numbers(data: bytes) -> None:
    with pytest.raises(wasm.BinaryError):
        wasm.read_u32(data, 0)


def test_read_u32_accepts_the_largest_and_padded_numbers() -> None:
    assert wasm.read_u32(b"\xff\xff\xff\xff\x0f", 0) == (2**32 - 1, 5)
    assert wasm.read_u32(b"\x85\x80\x80\x80\x00", 0) == (5, 5)  # padded, as LLVM writes
    assert wasm.read_u32(b"\x00\x05", 1) == (5, 2)


def test_skip_leb_refuses_truncated_and_overlong_numbers() -> None:
    for data in (b"", b"\x80\x80", b"\x80" * 10 + b"\x00"):
        with pytest.raises(wasm.BinaryError):
            wasm.skip_leb(data, 0)


def test_sections_refuse_what_is_not_a_module_or_runs_past_its_end() -> None:
    with pytest.raises(wasm.BinaryError):
        wasm.sections(b"\0asm\x02\0\0\0")
    with pytest.raises(wasm.BinaryError):
        wasm.sections(wasm.MAGIC + b"\x01\x05\x00")


def globals_module(entries: list[bytes]) -> list[object]:
    """The values of exported immutable globals with these entries, read by the engine."""
    body = wasm.vec(entries)
    exports = wasm.vec([wasm.name(f"g{i}") + b"\x03" + wasm.u32(i) for i in range(len(entries))])
    data = wasm.assemble([wasm.Section(wasm.GLOBAL, body), wasm.Section(wasm.EXPORT, exports)])
    store = wasmtime.Store(get_engine(False))
    instance = wasmtime.Instance(store, wasmtime.Module(get_engine(False), data), [])
    values = []
    for i in range(len(entries)):
        g = instance.exports(store)[f"g{i}"]
        assert isinstance(g, wasmtime.Global)
        values.append(g.value(store))
    return values


@ENGINE_CHECKS
@given(
    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=8),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=8),
    st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=8),
    st.lists(st.floats(allow_nan=False), min_size=1, max_size=8),
)
def test_constants_give_the_engine_the_exact_values(
    ints: list[int], longs: list[int], singles: list[float], doubles: list[float]
) -> None:
    columns: list[tuple[int, str, Sequence[float]]] = [(wasm.I32, "<i", ints)]
    columns.append((wasm.I64, "<q", longs))
    columns += [(wasm.F32, "<f", singles), (wasm.F64, "<d", doubles)]
    entries, expected = [], []
    for kind, fmt, values in columns:
        for value in values:
            raw = struct.pack(fmt, value)
            entries.append(bytes([kind, 0]) + wasm.const_of(kind, raw))
            expected.append(raw)
    got = globals_module(entries)
    packs = [fmt for _, fmt, values in columns for _ in values]
    assert [struct.pack(fmt, v) for fmt, v in zip(packs, got, strict=True)] == expected


@pytest.mark.parametrize("offset", [0, 64, 2**31 - 1, 2**31, 2**32 - 65536, 2**32 - 1])
def test_an_active_segment_offset_is_the_engines_unsigned_address(offset: int) -> None:
    segment = wasm.active_data(offset, b"x")
    expression = segment[1 : wasm.const_expr_end(segment, 1)]
    (value,) = globals_module([bytes([wasm.I32, 0]) + expression])
    assert isinstance(value, int)
    assert value & 0xFFFFFFFF == offset
    assert segment.endswith(b"\x01x")


# -- mutated modules -----------------------------------------------------------------------


def seeds() -> list[bytes]:
    return [bytes(wasmtime.wat2wasm(p.read_text())) for p in sorted(WAT_DIR.glob("*.wat"))]


def mutant(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    if rng.random() < 0.1:
        return bytes(out[: rng.randrange(8, len(out))])
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(8, len(out))
        if rng.random() < 0.5:
            out[pos] = rng.randrange(256)
        else:
            out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


def compiles(data: bytes) -> wasmtime.Module | None:
    try:
        return wasmtime.Module(get_engine(False), data)
    except wasmtime.WasmtimeError:
        return None


def checked(data: bytes) -> bool:
    try:
        compile_checked(get_engine(False), data)
    except RegistryError:
        return False
    return True


def fuzz(count: int, seed: int, sandbox: Sandbox | None = None) -> dict[str, int]:
    """Feeds ``count`` compiling mutants to ``take``: it refuses or succeeds, and what it
    makes compiles (and, given a sandbox, runs like the mutant)."""
    rng = random.Random(seed)
    originals = seeds()
    seen = {"refused": 0, "taken": 0}
    for _ in range(count * 20):
        if seen["refused"] + seen["taken"] >= count:
            break
        data = mutant(rng, rng.choice(originals))
        if compiles(data) is None:
            continue
        try:
            snapshot = take(data, hashlib.sha256(data).hexdigest(), "t", LIMITS)
        except NotSnapshotted as exc:
            assert "\n" not in str(exc)
            seen["refused"] += 1
            continue
        seen["taken"] += 1
        assert compiles(snapshot.data) is not None, data.hex()
        if checked(data):
            assert checked(snapshot.data), data.hex()
            if sandbox is not None:
                same_runs(sandbox, data, snapshot.data)
    return seen


def same_runs(sandbox: Sandbox, data: bytes, snapshot: bytes) -> None:
    for payload in (b"", b"x"):
        runs = [
            sandbox.run(
                wasmtime.Module(get_engine(False), d),
                hashlib.sha256(d).hexdigest(),
                payload,
                LIMITS,
                task_name="t",
            )
            for d in (data, snapshot)
        ]
        a, b = ((o.kind, o.result, o.stdout, o.stderr) for o in runs)
        assert a == b, data.hex()


def test_mutated_modules_are_refused_or_snapshotted_never_crash() -> None:
    seen = fuzz(150, seed=1)
    assert seen["taken"] > 50 and seen["refused"] > 5, seen


@pytest.mark.slow
def test_many_mutated_modules_run_the_same_as_their_snapshots(sandbox: Sandbox) -> None:
    seen = fuzz(1500, seed=2, sandbox=sandbox)
    assert seen["taken"] > 500, seen


def test_truncations_of_every_module_are_refused_or_snapshotted() -> None:
    compiled = 0
    for data in seeds():
        for end in range(8, len(data)):
            cut = data[:end]
            if compiles(cut) is None:
                continue
            compiled += 1
            try:
                snapshot = take(cut, "d", "t", LIMITS)
            except NotSnapshotted as exc:
                assert "\n" not in str(exc)
                continue
            assert compiles(snapshot.data) is not None, cut.hex()
    assert compiled > 0  # cuts at section boundaries (no data, no names) still compile
