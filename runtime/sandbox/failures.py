"""Turns a failed call into an :class:`Outcome` with one sentence a user understands."""

from __future__ import annotations

import wasmtime

from runtime.queue.task import OutcomeKind
from runtime.sandbox.capture import TaskIO
from runtime.sandbox.exports import EXECUTE
from runtime.sandbox.limits import TaskLimits
from runtime.sandbox.outcome import EXIT_RETRY, Outcome, stderr_hint
from runtime.sandbox.raw import CallFailed
from runtime.units import format_duration

PAGE = 65536
FRAMES = 5

_TRAPS: dict[wasmtime.TrapCode, tuple[str, str]] = {
    wasmtime.TrapCode.UNREACHABLE: ("unreachable", "reached unreachable code (a panic or abort)"),
    wasmtime.TrapCode.STACK_OVERFLOW: ("stack_overflow", "overflowed its stack (deep recursion?)"),
    wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS: (
        "memory_out_of_bounds",
        "accessed memory out of bounds",
    ),
    wasmtime.TrapCode.INTEGER_DIVISION_BY_ZERO: ("integer_division_by_zero", "divided by zero"),
    wasmtime.TrapCode.INTEGER_OVERFLOW: ("integer_overflow", "overflowed an integer division"),
    wasmtime.TrapCode.BAD_CONVERSION_TO_INTEGER: (
        "bad_conversion_to_integer",
        "converted an out-of-range float to an integer",
    ),
    wasmtime.TrapCode.INDIRECT_CALL_TO_NULL: ("indirect_call_to_null", "called a null function"),
    wasmtime.TrapCode.BAD_SIGNATURE: ("bad_signature", "made an indirect call of the wrong type"),
    wasmtime.TrapCode.TABLE_OUT_OF_BOUNDS: ("table_out_of_bounds", "indexed a table out of bounds"),
    wasmtime.TrapCode.HEAP_MISALIGNED: ("heap_misaligned", "made a misaligned atomic access"),
}


def size_text(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % (scale // 16) == 0:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


def reason(error: BaseException | None) -> str:
    """The line of a wasmtime error that says what went wrong (its root cause)."""
    text = str(error or "unknown error").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Caused by:" in lines:
        causes = lines[lines.index("Caused by:") + 1 :]
        if causes:
            return causes[0].split(": ", 1)[-1] if causes[0][:1].isdigit() else causes[0]
    return lines[0] if lines else "unknown error"


def _where(phase: str) -> str:
    return "" if phase == EXECUTE.name else f" (in {phase})"


def _hint(io: TaskIO) -> str:
    hint = stderr_hint(io.logs())
    return f"; stderr: {hint}" if hint else ""


def _frames(trap: wasmtime.Trap | None) -> list[str]:
    if trap is None:
        return []
    try:
        frames = trap.frames[:FRAMES]
        return [f"{f.func_name or f'func[{f.func_index}]'} @ {f.module_offset:#x}" for f in frames]
    except Exception:  # frames are a nicety; a trap without them is still a trap
        return []


def said_out_of_memory(io: TaskIO) -> bool:
    """Whether the task's runtime reported running out of memory (Go: "fatal error: out
    of memory")."""
    return "out of memory" in stderr_hint(io.logs(), 400).lower()


def memory_exhausted(io: TaskIO, memory_size: int | None, limits: TaskLimits) -> bool:
    """Whether a trap looks caused by the memory limit.

    A refused ``memory.grow`` returns -1 to the module instead of trapping, and wasmtime's
    C API offers no hook on it, so the host only sees what the module did next. Blame
    the limit when the memory ended within an eighth of it (a refused grow of a typical
    allocation), or when the runtime said it ran out of memory."""
    if memory_size is not None and memory_size + max(PAGE, limits.memory // 8) > limits.memory:
        return True
    return said_out_of_memory(io)


def _memory_limit(io: TaskIO, phase: str, limits: TaskLimits, exit_code: int | None) -> Outcome:
    return Outcome(
        OutcomeKind.MEMORY_LIMIT,
        message=f"The task needed more than its memory limit of {size_text(limits.memory)}"
        f"{_where(phase)}{_hint(io)}.",
        exit_code=exit_code,
        phase=phase,
    )


def classify(
    failure: CallFailed, io: TaskIO, phase: str, memory_size: int | None, limits: TaskLimits
) -> Outcome:
    """The outcome of a call that trapped or failed in ``phase``."""
    trap, error = failure.trap, failure.error
    code = trap.trap_code if trap is not None else None
    exit_code = io.exit_code
    if exit_code is None and isinstance(error, wasmtime.ExitTrap):
        exit_code = error.code
    if exit_code == 0:
        return Outcome(OutcomeKind.OK, exit_code=0, phase=phase)
    if io.cancelled:
        return cancelled(phase)
    if io.timed_out or code == wasmtime.TrapCode.INTERRUPT:
        return Outcome(
            OutcomeKind.TIMEOUT,
            message=f"The task ran past its time limit of {format_duration(limits.timeout)}"
            f" and was stopped{_where(phase)}.",
            retryable=True,
            frames=_frames(trap),
            phase=phase,
        )
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return Outcome(
            OutcomeKind.TIMEOUT,
            message=f"The task used up its fuel limit of {limits.fuel} units{_where(phase)};"
            " a retry would use the same fuel again.",
            retryable=False,
            frames=_frames(trap),
            phase=phase,
        )
    if phase == "instantiate" and trap is None and exit_code is None:
        return instantiate_failed(reason(error))
    if exit_code is not None:
        # An exit code is the handler's own verdict; only its runtime's word overrides it.
        if said_out_of_memory(io):
            return _memory_limit(io, phase, limits, exit_code)
        retry = exit_code == EXIT_RETRY
        asked = " and asked for a retry" if retry else ""
        return Outcome(
            OutcomeKind.EXIT,
            message=f"The task exited with code {exit_code}{asked}{_where(phase)}{_hint(io)}.",
            retryable=retry,
            exit_code=exit_code,
            phase=phase,
        )
    if memory_exhausted(io, memory_size, limits):
        return _memory_limit(io, phase, limits, None)
    if io.host_error is not None:
        return Outcome(
            OutcomeKind.TRAP,
            message=f"The sandbox failed serving the task{_where(phase)}: {io.host_error}.",
            retryable=True,
            trap_code="host_error",
            phase=phase,
        )
    name, text = _TRAPS.get(code, (None, None)) if code is not None else (None, None)
    if text is None:
        text = f"failed: {trap.message.strip() if trap is not None else reason(error)}"
    return Outcome(
        OutcomeKind.TRAP,
        message=f"The task {text}{_where(phase)}{_hint(io)}.",
        retryable=True,
        trap_code=name or (code.name.lower() if code is not None else None),
        frames=_frames(trap),
        phase=phase,
    )


def cancelled(phase: str) -> Outcome:
    """The run was stopped because its task was cancelled (never retried)."""
    return Outcome(
        OutcomeKind.CANCELLED,
        message=f"The task was cancelled while it ran and was stopped{_where(phase)}.",
        phase=phase,
    )


def instantiate_failed(reason: str) -> Outcome:
    return Outcome(
        OutcomeKind.INSTANTIATE,
        message=f"The module could not be instantiated: {reason.rstrip('.')}.",
        phase="instantiate",
    )


def bad_result(message: str, phase: str = EXECUTE.name) -> Outcome:
    return Outcome(OutcomeKind.BAD_RESULT, message=message, phase=phase)


#: Where a module built by wasm-ld or Zig keeps its stack pointer, when it exports it.
STACK_POINTER = b"__stack_pointer"
_SDK_HINT = " The guest SDKs (sdk/ in wasmq) own alloc, execute and result packing."


def in_stack(ptr: int, length: int, stack_top: int | None) -> bool:
    """Whether ``ptr..ptr+length`` lies in the shadow stack below ``stack_top``.

    wasm-ld's and Zig's stack-first layout puts the stack at ``[0, stack top)`` and
    data and heap above it; once a call has returned, the stack pointer is back at the
    top, so anything below it belongs to frames that no longer exist."""
    return stack_top is not None and length > 0 and ptr + length <= stack_top


def alloc_problem(ptr: int, size: int, mem_size: int, stack_top: int | None) -> str:
    """Why the payload cannot go where ``alloc`` said, or ''."""
    if ptr + size > mem_size:
        return (
            f"alloc returned {ptr}, where a {size}-byte payload does not fit in the"
            f" task's {mem_size}-byte memory."
        )
    if in_stack(ptr, size, stack_top):
        return (
            f"alloc returned {ptr}, an address in its stack (below {stack_top}): that memory"
            " is freed when alloc returns, and execute's own calls would overwrite the"
            f" payload; allocate it on the heap.{_SDK_HINT}"
        )
    return ""


def result_problem(ptr: int, length: int, mem_size: int, limit: int, stack_top: int | None) -> str:
    """Why ``execute``'s packed result (``ptr << 32 | length``) cannot be read, or ''.

    Says which half is wrong, and recognises the halves swapped: a "length" that is a
    plausible address and a "pointer" that is a plausible length."""
    fits = ptr + length <= mem_size
    # Swapped: the "length" is a plausible address and the "pointer" a plausible length.
    swapped = 0 < ptr < length and length + ptr <= mem_size and ptr <= limit
    if swapped and (not fits or length > limit):
        return (
            f"execute returned pointer {ptr} and length {length}: they look swapped (a"
            f" {ptr}-byte result at offset {length}?); pack the result as"
            f" pointer << 32 | length.{_SDK_HINT}"
        )
    # An empty result may sit exactly at the end of memory: nothing is read past it.
    if ptr >= mem_size and not fits:
        return (
            f"execute returned a result pointer (high 32 bits) of {ptr}, past the end of the"
            f" task's {mem_size}-byte memory.{_SDK_HINT}"
        )
    if not fits:
        return (
            f"execute returned a result length (low 32 bits) of {length}: from offset {ptr}"
            f" it runs {ptr + length - mem_size} bytes past the end of the task's"
            f" {mem_size}-byte memory.{_SDK_HINT}"
        )
    if length > limit:
        return f"The task's result is {length} bytes, over its result limit of {size_text(limit)}."
    if in_stack(ptr, length, stack_top):
        return (
            f"execute returned a result at offset {ptr}, in its stack (below {stack_top}):"
            " a local buffer, freed when execute returned, so the bytes there are not"
            f" reliable; return memory that outlives the call (heap or static).{_SDK_HINT}"
        )
    return ""
