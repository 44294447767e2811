"""What a task module exports: the one table that registration checks and the sandbox calls.

A task module exports its linear memory as :data:`MEMORY`, ``alloc(len) -> ptr`` (room
for the payload), ``execute(ptr, len) -> ptr << 32 | len`` (where its result is), and
may export ``_initialize()`` (a WASI reactor's constructor), which runs first.
:mod:`runtime.modules.contract` refuses a module whose exports differ from this table;
:mod:`runtime.sandbox.runner` calls them by these names without checking types again.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The exported linear memory.
MEMORY = "memory"


@dataclass(frozen=True)
class Export:
    """A function a task module exports, with its wasm type."""

    name: str
    params: tuple[str, ...]
    results: tuple[str, ...]
    required: bool = True

    @property
    def signature(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return self.params, self.results

    @property
    def symbol(self) -> bytes:
        """The name as a backend looks it up."""
        return self.name.encode()


INITIALIZE = Export("_initialize", (), (), required=False)
ALLOC = Export("alloc", ("i32",), ("i32",))
EXECUTE = Export("execute", ("i32", "i32"), ("i64",))

#: Every function export, in the order the sandbox calls them.
FUNCTIONS = (INITIALIZE, ALLOC, EXECUTE)

#: Value slots one call needs: the backends pass arguments and take results in one array.
CALL_SLOTS = max(max(len(f.params), len(f.results)) for f in FUNCTIONS)
