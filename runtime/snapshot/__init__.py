"""Pre-initialized modules: run ``_initialize`` once, keep the state it leaves, and rewrite
the module so that every new instance starts from that state.

This is what Wizer does, done here so that the initializer runs inside the sandbox's own
limits and host functions:

1. the module is read (:mod:`runtime.snapshot.binary`); one whose code can change a
   table, whose memory has passive data segments, or whose mutable globals are not plain
   numbers is not snapshotted (:class:`NotSnapshotted` says why);
2. a copy exporting every mutable global runs ``_initialize``
   (:mod:`runtime.snapshot.initialize`) three times: once for the snapshot, once with other
   random bytes and once with other clock readings, so the snapshot knows whether the
   state it keeps came from either (:attr:`Snapshot.kept`);
3. the snapshot module is the original with its memory's initial size and contents, and
   its mutable globals' initial values, taken from the first run; ``_initialize`` is no
   longer exported and a start function is dropped (both already ran). Active data
   segments are replaced (by empty passive ones when code may name them by index).

wasmtime instantiates the snapshot's memory copy-on-write from a memory image, so a task
still gets a fresh instance of its own, only without running the initializer.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import wasmtime

from runtime.sandbox import failures
from runtime.sandbox.engine import get_engine
from runtime.sandbox.exports import INITIALIZE, MEMORY
from runtime.sandbox.limits import TaskLimits
from runtime.snapshot import binary as wasm
from runtime.snapshot.binary import BinaryError, Section
from runtime.snapshot.code import first_table_change
from runtime.snapshot.initialize import NotSnapshotted, Run, State

#: Bumped when snapshots are built differently: part of what caches them.
FORMAT = 1
#: The custom section recording where a snapshot came from.
CUSTOM_SECTION = "wasmq.snapshot"
_GLOBAL_EXPORT = "__wasmq_snapshot_global_"
#: Zero runs at least this long split the memory into separate data segments.
_ZERO_GAP = 64
_ZEROS = re.compile(b"\x00{%d,}" % _ZERO_GAP)
#: Clock shift of the run that tests whether state came from the clock (ns).
_CLOCK_SHIFT = 86_400 * 1_000_000_000 + 7


@dataclass
class Snapshot:
    """A pre-initialized module and what it was made from."""

    data: bytes
    #: SHA-256 of the module it was made from.
    source_digest: str
    init_ms: float
    #: Inputs the kept state depends on: "random" and/or "clock".
    kept: tuple[str, ...]
    memory_bytes: int


@dataclass
class _Plan:
    parts: list[Section]
    globals: list[wasm.Global]
    exports: list[wasm.Export]
    #: Global index -> value type, for every mutable global.
    mutable: dict[int, int]


def has_initializer(data: bytes) -> bool:
    """Whether the module exports ``_initialize`` (read from its binary: no compile)."""
    try:
        exports = wasm.read_exports(_body(wasm.sections(data), wasm.EXPORT))
    except (BinaryError, IndexError, UnicodeDecodeError):
        return False
    return any(e.name == INITIALIZE.name and e.kind == wasm.EXPORT_FUNC for e in exports)


def take(
    data: bytes, source_digest: str, task_name: str, limits: TaskLimits, max_size: int = 0
) -> Snapshot:
    """Snapshot ``data`` after its ``_initialize``; :class:`NotSnapshotted` says why not.

    ``max_size`` (bytes, 0 for none) refuses a snapshot larger than that."""
    plan = _plan(data)
    instrumented = _instrumented(plan)
    try:
        module = wasmtime.Module(get_engine(False), instrumented)
    except wasmtime.WasmtimeError as exc:  # an export already named like the added ones
        cause = [line.strip() for line in str(exc).splitlines() if line.strip()][-1]
        raise NotSnapshotted(f"its instrumented copy does not compile: {cause}") from None
    run = Run(module, task_name, limits)
    run.globals = {i: (f"{_GLOBAL_EXPORT}{i}", kind) for i, kind in plan.mutable.items()}
    key = os.urandom(32)
    first = run.state(key)
    kept = []
    if _differ(first, run.state(os.urandom(32))):
        kept.append("random")
    if _differ(first, run.state(key, _CLOCK_SHIFT)):
        kept.append("clock")
    out = _rewrite(plan, first, source_digest)
    try:
        wasmtime.Module.validate(get_engine(False), out)
    except wasmtime.WasmtimeError as exc:  # a rewriter bug must not cost the task its module
        raise NotSnapshotted(f"its snapshot does not validate: {failures.reason(exc)}") from None
    if max_size and len(out) > max_size:
        raise NotSnapshotted(
            f"its snapshot would be {len(out)} bytes, over the largest module"
            f" ({max_size} bytes, WASMQ_COMPILE_OUTPUT_LIMIT)"
        )
    return Snapshot(out, source_digest, first.init_ms, tuple(kept), len(first.memory))


def _differ(a: State, b: State) -> bool:
    return a.memory != b.memory or a.globals != b.globals


def _plan(data: bytes) -> _Plan:
    try:
        parts = wasm.sections(data)
        imports = wasm.section(parts, wasm.IMPORT)
        # Imported globals would shift the indexes of the module's own (the contract
        # refuses them, but take() reads what it is given).
        if imports is not None and len(wasm.import_functions(imports.body)) < wasm.import_count(
            imports.body
        ):
            raise BinaryError("the module imports something other than functions")
        exports = wasm.read_exports(_body(parts, wasm.EXPORT))
        if not any(e.name == INITIALIZE.name and e.kind == wasm.EXPORT_FUNC for e in exports):
            raise NotSnapshotted(f"it does not export {INITIALIZE.name}")
        memories = wasm.read_memories(_body(parts, wasm.MEMORY))
        if len(memories) != 1:
            raise NotSnapshotted("it does not define exactly one memory")
        if not any(e.name == MEMORY and e.kind == wasm.EXPORT_MEMORY for e in exports):
            raise NotSnapshotted(f"it does not export its memory as {MEMORY}")
        globals_ = wasm.read_globals(_body(parts, wasm.GLOBAL))
        mutable = {}
        for index, g in enumerate(globals_):
            if not g.mutable:
                continue
            if g.kind not in wasm.NUMERIC:
                raise NotSnapshotted(f"its mutable global {index} is not a plain number")
            mutable[index] = g.kind
        segments = wasm.read_data(_body(parts, wasm.DATA))
        if any(not s.active for s in segments):
            raise NotSnapshotted("it has passive data segments")
        elements = wasm.section(parts, wasm.ELEMENT)
        if elements is not None:
            wasm.element_kinds(elements.body)
        change = first_table_change(_body(parts, wasm.CODE))
    except BinaryError as exc:
        raise NotSnapshotted(f"its binary cannot be rewritten: {exc}") from None
    except (IndexError, UnicodeDecodeError):
        raise NotSnapshotted("its binary cannot be rewritten: a section ends early") from None
    if change:
        raise NotSnapshotted(
            f"its code can change a table ({change}), which a snapshot cannot keep"
        )
    return _Plan(parts, globals_, exports, mutable)


def _body(parts: list[Section], kind: int) -> bytes:
    found = wasm.section(parts, kind)
    return found.body if found is not None else b"\x00"


def _instrumented(plan: _Plan) -> bytes:
    extra = [wasm.Export(f"{_GLOBAL_EXPORT}{i}", wasm.EXPORT_GLOBAL, i) for i in plan.mutable]
    body = wasm.write_exports(plan.exports + extra)
    return wasm.assemble([Section(s.id, body) if s.id == wasm.EXPORT else s for s in plan.parts])


def _segments(memory: bytes) -> list[bytes]:
    out, start = [], 0
    for gap in _ZEROS.finditer(memory):
        if gap.start() > start:
            out.append(wasm.active_data(start, memory[start : gap.start()]))
        start = gap.end()
    if start < len(memory):
        tail = memory[start:].rstrip(b"\x00")
        if tail:
            out.append(wasm.active_data(start, tail))
    return out


def _rewrite(plan: _Plan, state: State, source_digest: str) -> bytes:
    segments = _segments(state.memory)
    has_count = wasm.section(plan.parts, wasm.DATA_COUNT) is not None
    kept_indexes: list[bytes] = []
    if has_count:  # code may name segments by index: keep each index, emptied
        old = wasm.read_data(_body(plan.parts, wasm.DATA))
        kept_indexes = [wasm.EMPTY_PASSIVE] * len(old)
    data_body = wasm.vec(kept_indexes + segments)
    out: list[Section] = []
    for s in plan.parts:
        if s.id == wasm.MEMORY:
            memories = wasm.read_memories(s.body)
            memories[0].minimum = len(state.memory) // 65536
            out.append(Section(s.id, wasm.write_memories(memories)))
        elif s.id == wasm.GLOBAL:
            entries = [
                bytes([g.kind, 1]) + wasm.const_of(g.kind, state.globals[i])
                if i in state.globals
                else g.entry
                for i, g in enumerate(plan.globals)
            ]
            out.append(Section(s.id, wasm.write_globals(entries)))
        elif s.id == wasm.EXPORT:
            kept = [e for e in plan.exports if e.name != INITIALIZE.name]
            out.append(Section(s.id, wasm.write_exports(kept)))
        elif s.id == wasm.START:
            continue  # it ran before _initialize; its work is in the snapshot
        elif s.id == wasm.DATA_COUNT:
            out.append(Section(s.id, wasm.u32(len(kept_indexes) + len(segments))))
        elif s.id == wasm.DATA:
            continue  # written after the code section below
        else:
            out.append(s)
        if s.id == wasm.CODE:
            out.append(Section(wasm.DATA, data_body))
    note = json.dumps({"format": FORMAT, "source": source_digest}, separators=(",", ":"))
    out.append(Section(wasm.CUSTOM, wasm.name(CUSTOM_SECTION) + note.encode()))
    return wasm.assemble(out)


__all__ = ["FORMAT", "NotSnapshotted", "Snapshot", "has_initializer", "take"]
