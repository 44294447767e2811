"""The WebAssembly binary format, as far as snapshots need it: sections, LEB128 numbers,
the global, memory, export and data sections, and constant expressions.

Only modules that already compiled (so are valid) reach this module; it still checks
every length it reads, and raises :class:`BinaryError` on anything it does not expect,
so a module it cannot read exactly is never rewritten.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"\0asm\x01\0\0\0"

CUSTOM, TYPE, IMPORT, FUNCTION, TABLE, MEMORY, GLOBAL, EXPORT = range(8)
START, ELEMENT, CODE, DATA, DATA_COUNT = range(8, 13)

#: Value types a snapshot can write as a constant (i32, i64, f32, f64).
I32, I64, F32, F64, V128 = 0x7F, 0x7E, 0x7D, 0x7C, 0x7B
NUMERIC = (I32, I64, F32, F64)

#: Export kinds.
EXPORT_FUNC, EXPORT_TABLE, EXPORT_MEMORY, EXPORT_GLOBAL = range(4)

_END = 0x0B


class BinaryError(ValueError):
    """The module uses something this reader does not handle."""


# -- numbers -------------------------------------------------------------------------------


def read_u32(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 of at most 32 bits at ``pos``: (value, next position)."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise BinaryError("a truncated or overlong LEB128 number")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if value >> 32:  # a fifth byte carrying more than the top four bits
                raise BinaryError("a LEB128 number over 32 bits")
            return value, pos


def skip_leb(data: bytes, pos: int, max_bytes: int = 10) -> int:
    """The position after a (signed or unsigned) LEB128 number at ``pos``."""
    for i in range(max_bytes):
        if pos + i >= len(data):
            break
        if not data[pos + i] & 0x80:
            return pos + i + 1
    raise BinaryError("a truncated or overlong LEB128 number")


def u32(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def s64(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40)
        out.append(byte if done else byte | 0x80)
        if done:
            return bytes(out)


def vec(items: list[bytes]) -> bytes:
    return u32(len(items)) + b"".join(items)


def name(text: str) -> bytes:
    raw = text.encode()
    return u32(len(raw)) + raw


# -- sections ------------------------------------------------------------------------------


@dataclass
class Section:
    id: int
    body: bytes


def sections(data: bytes) -> list[Section]:
    """The module's sections in order (custom sections included)."""
    if data[:8] != MAGIC:
        raise BinaryError("not a WebAssembly 1.0 module")
    out, pos = [], 8
    while pos < len(data):
        kind = data[pos]
        size, pos = read_u32(data, pos + 1)
        if pos + size > len(data):
            raise BinaryError(f"section {kind} runs past the end of the module")
        out.append(Section(kind, data[pos : pos + size]))
        pos += size
    return out


def assemble(parts: list[Section]) -> bytes:
    return MAGIC + b"".join(bytes([s.id]) + u32(len(s.body)) + s.body for s in parts)


def section(parts: list[Section], kind: int) -> Section | None:
    return next((s for s in parts if s.id == kind), None)


# -- constant expressions ------------------------------------------------------------------


def const_expr_end(data: bytes, pos: int) -> int:
    """The position after the constant expression at ``pos`` (its ``end`` included)."""
    while True:
        if pos >= len(data):
            raise BinaryError("a constant expression without its end")
        op = data[pos]
        pos += 1
        if op == _END:
            return pos
        if op in (0x41, 0x42, 0x23, 0xD2):  # i32/i64.const, global.get, ref.func
            pos = skip_leb(data, pos)
        elif op == 0x43:
            pos += 4
        elif op == 0x44:
            pos += 8
        elif op == 0xD0:  # ref.null heaptype
            pos = skip_leb(data, pos)
        elif op in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):  # extended-const arithmetic
            pass
        elif op == 0xFD and data[pos : pos + 1] == b"\x0c":  # v128.const
            pos += 1 + 16
        else:
            raise BinaryError(f"opcode 0x{op:02x} in a constant expression")


def const_of(kind: int, raw: bytes) -> bytes:
    """A constant expression giving ``raw`` (the value's little-endian bytes)."""
    if kind == I32:
        return b"\x41" + s64(struct.unpack("<i", raw)[0]) + b"\x0b"
    if kind == I64:
        return b"\x42" + s64(struct.unpack("<q", raw)[0]) + b"\x0b"
    if kind == F32:
        return b"\x43" + raw + b"\x0b"
    if kind == F64:
        return b"\x44" + raw + b"\x0b"
    raise BinaryError(f"no constant of value type 0x{kind:02x}")


# -- the sections snapshots read and rewrite -----------------------------------------------


@dataclass
class Global:
    kind: int
    mutable: bool
    #: The bytes of the whole entry (type, mutability, init expression).
    entry: bytes


def read_globals(body: bytes) -> list[Global]:
    count, pos = read_u32(body, 0)
    out = []
    for _ in range(count):
        start = pos
        if pos + 2 > len(body):
            raise BinaryError("a truncated global")
        kind, mutable = body[pos], body[pos + 1]
        if kind not in (*NUMERIC, V128, 0x70, 0x6F):
            raise BinaryError(f"a global of value type 0x{kind:02x}")
        pos = const_expr_end(body, pos + 2)
        out.append(Global(kind, bool(mutable), body[start:pos]))
    if pos != len(body):
        raise BinaryError("trailing bytes in the global section")
    return out


def write_globals(entries: list[bytes]) -> bytes:
    return vec(entries)


@dataclass
class Export:
    name: str
    kind: int
    index: int


def read_exports(body: bytes) -> list[Export]:
    count, pos = read_u32(body, 0)
    out = []
    for _ in range(count):
        size, pos = read_u32(body, pos)
        text = body[pos : pos + size].decode()
        pos += size
        kind = body[pos]
        index, pos = read_u32(body, pos + 1)
        out.append(Export(text, kind, index))
    if pos != len(body):
        raise BinaryError("trailing bytes in the export section")
    return out


def write_exports(items: list[Export]) -> bytes:
    return vec([name(e.name) + bytes([e.kind]) + u32(e.index) for e in items])


@dataclass
class Limits:
    flags: int
    minimum: int
    maximum: int | None


def read_memories(body: bytes) -> list[Limits]:
    count, pos = read_u32(body, 0)
    out = []
    for _ in range(count):
        flags = body[pos]
        if flags not in (0, 1):
            raise BinaryError(f"memory limits with flags 0x{flags:02x} (shared or 64-bit)")
        minimum, pos = read_u32(body, pos + 1)
        maximum = None
        if flags & 1:
            maximum, pos = read_u32(body, pos)
        out.append(Limits(flags, minimum, maximum))
    return out


def write_memories(items: list[Limits]) -> bytes:
    out = []
    for m in items:
        entry = bytes([m.flags]) + u32(m.minimum)
        if m.maximum is not None:
            entry += u32(m.maximum)
        out.append(entry)
    return vec(out)


@dataclass
class Segment:
    active: bool
    entry: bytes


def read_data(body: bytes) -> list[Segment]:
    count, pos = read_u32(body, 0)
    out = []
    for _ in range(count):
        start = pos
        flags, pos = read_u32(body, pos)
        if flags == 1:
            active = False
        elif flags in (0, 2):
            active = True
            if flags == 2:
                _, pos = read_u32(body, pos)
            pos = const_expr_end(body, pos)
        else:
            raise BinaryError(f"a data segment with flags {flags}")
        size, pos = read_u32(body, pos)
        pos += size
        if pos > len(body):
            raise BinaryError("a data segment runs past its section")
        out.append(Segment(active, body[start:pos]))
    return out


def active_data(offset: int, payload: bytes) -> bytes:
    """An active segment of memory 0 at a constant offset."""
    return (
        b"\x00\x41"
        + s64(offset if offset < 1 << 31 else offset - (1 << 32))
        + b"\x0b"
        + (u32(len(payload)) + payload)
    )


#: An empty passive segment: keeps a replaced segment's index for memory.init/data.drop.
EMPTY_PASSIVE = b"\x01\x00"


def element_kinds(body: bytes) -> list[int]:
    """The flags of each element segment (bit 0: passive or declarative)."""
    count, pos = read_u32(body, 0)
    flags = []
    for _ in range(count):
        flag, pos = read_u32(body, pos)
        flags.append(flag)
        if flag > 7:
            raise BinaryError(f"an element segment with flags {flag}")
        if flag & 2 and not flag & 1:  # an explicit table index
            _, pos = read_u32(body, pos)
        if not flag & 1:  # active: an offset expression
            pos = const_expr_end(body, pos)
        if flag & 3:  # an element kind or reference type
            pos += 1
        n, pos = read_u32(body, pos)
        for _ in range(n):
            pos = const_expr_end(body, pos) if flag & 4 else read_u32(body, pos)[1]
    return flags


# -- function signatures -------------------------------------------------------------------


def _function_types(body: bytes) -> list[bytes]:
    """Each function type of the type section as the value types of its params and
    results (one byte each: the engine refuses typed references)."""
    count, pos = read_u32(body, 0)
    out = []
    for _ in range(count):
        if body[pos] != 0x60:
            raise BinaryError(f"a type of form 0x{body[pos]:02x}, not a function type")
        params, pos = read_u32(body, pos + 1)
        kinds = body[pos : pos + params]
        results, pos = read_u32(body, pos + params)
        out.append(kinds + body[pos : pos + results])
        pos += results
    return out


def import_count(body: bytes) -> int:
    return read_u32(body, 0)[0]


def import_functions(body: bytes) -> list[tuple[str, int]]:
    """(module.name, type index) of each imported function, up to the first import of
    another kind."""
    count, pos = read_u32(body, 0)
    out = []
    for _ in range(count):
        names = []
        for _ in range(2):
            size, pos = read_u32(body, pos)
            names.append(body[pos : pos + size].decode("utf-8", "replace"))
            pos += size
        if body[pos] != 0:
            break  # the contract refuses any other import before it looks further
        index, pos = read_u32(body, pos + 1)
        out.append((".".join(names), index))
    return out


def v128_signature(data: bytes) -> str | None:
    """The first import or exported function whose signature mentions v128, or None.

    wasmtime-py cannot describe a v128 value type (asking aborts the process), so the
    contract reads signatures of imports and exports from the binary before it asks."""
    parts = sections(data)
    found = section(parts, TYPE)
    if found is None:
        return None
    types = _function_types(found.body)
    imports = section(parts, IMPORT)
    imported = import_functions(imports.body) if imports is not None else []
    for what, index in imported:
        if V128 in types[index]:
            return f"import `{what}`"
    if imports is not None and len(imported) < import_count(imports.body):
        return None  # it imports more than functions: refused before exports are read
    functions = section(parts, FUNCTION)
    defined: list[int] = []
    if functions is not None:
        count, pos = read_u32(functions.body, 0)
        for _ in range(count):
            index, pos = read_u32(functions.body, pos)
            defined.append(index)
    every = [index for _, index in imported] + defined
    exports = section(parts, EXPORT)
    for export in read_exports(exports.body) if exports is not None else []:
        if export.kind == EXPORT_FUNC and V128 in types[every[export.index]]:
            return f"export `{export.name}`"
    return None
