"""Reads function bodies instruction by instruction to find the ones a snapshot cannot keep.

A snapshot copies linear memory and globals; it cannot copy a table, because a
``funcref`` read from a table cannot be mapped back to a function index. So a module
whose code can change a table at run time (``table.set``, ``table.grow``, ``table.fill``,
``table.copy``, ``table.init``, ``elem.drop``) is not snapshotted. Go, TinyGo, clang and
Zig emit none of these for ordinary code.

Decoding is exact (every immediate of every instruction the engine accepts is skipped by
its encoding), so a byte that merely looks like one of these opcodes inside an immediate
is never mistaken for it; an opcode the decoder does not know stops it with
:class:`~runtime.snapshot.binary.BinaryError`, and the module is not snapshotted.
"""

from __future__ import annotations

from runtime.snapshot.binary import BinaryError, read_u32, skip_leb

_NONE = frozenset({0x00, 0x01, 0x05, 0x0B, 0x0F, 0x1A, 0x1B, 0xD1, *range(0x45, 0xC5)})
_BLOCK = frozenset({0x02, 0x03, 0x04})
_ONE_INDEX = frozenset({0x0C, 0x0D, 0x10, 0x12, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26})
_ONE_INDEX |= {0x3F, 0x40, 0xD2}
_TWO_INDEXES = frozenset({0x11, 0x13})
_MEMARG = frozenset(range(0x28, 0x3F))
#: Fixed-size immediates: f32.const, f64.const.
_FIXED = {0x43: 4, 0x44: 8}
_SINGLE_BYTE_TYPES = frozenset({0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F})

#: 0xFC sub-opcodes that change a table.
_TABLE_CHANGES_FC = {12: "table.init", 13: "elem.drop", 14: "table.copy", 15: "table.grow"}
_TABLE_CHANGES_FC[17] = "table.fill"
_FC_IMMEDIATES = {8: 2, 9: 1, 10: 2, 11: 1, 12: 2, 13: 1, 14: 2, 15: 1, 16: 1, 17: 1}
_LAST_SIMD = 0x113


def _memarg(body: bytes, pos: int) -> int:
    align, pos = read_u32(body, pos)
    if align & 0x40:  # a memory index follows (multi-memory)
        pos = skip_leb(body, pos)
    return skip_leb(body, pos)


def _simd(body: bytes, pos: int) -> int:
    sub, pos = read_u32(body, pos)
    if sub <= 11 or sub in (92, 93):
        return _memarg(body, pos)
    if sub in (12, 13):
        return pos + 16
    if 21 <= sub <= 34:
        return pos + 1
    if 84 <= sub <= 91:
        return _memarg(body, pos) + 1
    if sub > _LAST_SIMD:
        raise BinaryError(f"SIMD instruction 0x{sub:x} is not known to the snapshot reader")
    return pos


def _immediates(body: bytes, op: int, pos: int) -> int:
    """The position after the immediates of instruction ``op`` (its opcode at ``pos - 1``)."""
    if op in _ONE_INDEX or op in (0x41, 0x42, 0xD0):
        return skip_leb(body, pos)
    if op in _MEMARG:
        return _memarg(body, pos)
    if op in _BLOCK:
        return pos + 1 if body[pos] in _SINGLE_BYTE_TYPES else skip_leb(body, pos)
    if op in _FIXED:
        return pos + _FIXED[op]
    if op in _TWO_INDEXES:
        return skip_leb(body, skip_leb(body, pos))
    if op == 0x0E:  # br_table: the labels, then the default
        count, pos = read_u32(body, pos)
        for _ in range(count + 1):
            pos = skip_leb(body, pos)
        return pos
    if op == 0x1C:  # typed select: one-byte value types
        count, pos = read_u32(body, pos)
        return pos + count
    if op == 0xFD:
        return _simd(body, pos)
    raise BinaryError(f"instruction 0x{op:02x} is not known to the snapshot reader")


def table_changes(body: bytes) -> str | None:
    """The first table-changing instruction in one function body, or None."""
    if 0x26 not in body and 0xFC not in body:
        return None  # neither opcode byte appears at all: nothing to decode
    groups, pos = read_u32(body, 0)
    for _ in range(groups):
        _, pos = read_u32(body, pos)
        pos += 1  # the local's value type (reference types with heap types are off)
    end = len(body)
    while pos < end:
        op = body[pos]
        pos += 1
        if op in _NONE:
            continue
        if op == 0x26:
            return "table.set"
        if op == 0xFC:
            sub, pos = read_u32(body, pos)
            if sub in _TABLE_CHANGES_FC:
                return _TABLE_CHANGES_FC[sub]
            if sub > 17:
                raise BinaryError(f"instruction 0xfc {sub} is not known to the snapshot reader")
            for _ in range(_FC_IMMEDIATES.get(sub, 0)):
                pos = skip_leb(body, pos)
            continue
        pos = _immediates(body, op, pos)
    if pos != end:
        raise BinaryError("a function body ends inside an instruction")
    return None


def first_table_change(code_section: bytes) -> str | None:
    """The first table-changing instruction in the code section, or None."""
    count, pos = read_u32(code_section, 0)
    for _ in range(count):
        size, pos = read_u32(code_section, pos)
        found = table_changes(code_section[pos : pos + size])
        if found:
            return found
        pos += size
    return None
