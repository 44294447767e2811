"""Our own ``wasi_snapshot_preview1``: a small, capture-first WASI for isolated tasks.

Defined once per engine on one linker, shared by every task of the process; each call
finds its task through :func:`runtime.sandbox.capture.current`. What a task sees:

- stdout/stderr: captured per task (``fd_write`` on fds 1 and 2); stdin is empty;
- argv is just the task name; the environment is empty;
- no preopened directories, so every path operation fails (``EBADF``/``ENOTCAPABLE``);
- real clocks, ``random_get`` from the OS, ``sched_yield``;
- ``poll_oneoff`` sleeps for clock subscriptions (Go's ``time.Sleep``), never past the
  task's deadline, and wakes at once when the task is cancelled;
- ``proc_exit`` ends the task with its code;
- everything else answers ``ENOSYS`` (sockets, signals) or ``EBADF`` (other fds).

Every guest pointer is bounds-checked against the memory size before the host touches
it; a bad pointer answers ``EFAULT``.

Every call's work is bounded whatever its arguments, and every call checks the task's
deadline first, so no call into the host outruns the task's limits:

- ``fd_write`` takes at most :data:`MAX_IOVECS` buffers (``EINVAL`` beyond, like
  ``IOV_MAX``) and copies at most what the log limit still keeps; the rest is counted;
- ``poll_oneoff`` takes at most :data:`MAX_SUBSCRIPTIONS` subscriptions (``EINVAL``);
- ``random_get`` fills in :data:`RANDOM_CHUNK` pieces, checking the deadline between
  them; a sleep never passes the deadline.

:data:`FUNCTIONS` is the one table of preview1 signatures: the linker defines exactly
these, and registration (:mod:`runtime.modules.contract`) accepts exactly these imports.
"""

from __future__ import annotations

import ctypes
import os
import struct
import time
from collections.abc import Callable
from typing import Any

import wasmtime

from runtime.sandbox import raw
from runtime.sandbox.capture import current

MODULE = "wasi_snapshot_preview1"

SUCCESS = 0
EBADF = 8
EFAULT = 21
EINVAL = 28
ENOSYS = 52
ESPIPE = 70
ENOTCAPABLE = 76

_CHAR_DEVICE = 2
_RIGHT_READ = 1 << 1
_RIGHT_WRITE = 1 << 6
_RIGHT_POLL = 1 << 27
_FDSTAT = struct.Struct("<BxHxxxxQQ")
_FILESTAT = struct.Struct("<QQB7xQQQQQ")
_EVENT = struct.Struct("<QHB5xQH6x")
_SUB_HEAD = struct.Struct("<QB")
_SUB_CLOCK = struct.Struct("<I4xQQH")
_SUB_SIZE = 48
_M32 = 0xFFFFFFFF

#: Buffers one fd_write may name (Linux's IOV_MAX).
MAX_IOVECS = 1024
#: Subscriptions one poll_oneoff may name (the default RLIMIT_NOFILE of poll(2)).
MAX_SUBSCRIPTIONS = 1024
#: random_get fills memory in pieces of this size, checking the deadline between them.
RANDOM_CHUNK = 1 << 16

_u32 = ctypes.c_uint32.from_address
_u64 = ctypes.c_uint64.from_address
_string_at = ctypes.string_at
_memmove = ctypes.memmove


class Fault(Exception):
    """A guest pointer outside its memory."""


def memory_span(caller: Any) -> tuple[int, int]:
    io = current()
    # Before the host knows the memory (a start function), the caller's export is used.
    span: tuple[int, int] | None = io.backend.caller_span(caller, io.memory)
    if span is None:
        raise Fault
    return span


def check_span(size: int, ptr: int, length: int) -> None:
    if ptr + length > size:
        raise Fault


# -- output, input, file descriptors -----------------------------------------------------


def fd_write(caller: Any, vals: Any) -> int:
    fd = vals[0].i32
    if fd not in (1, 2):
        vals[0].i32 = EBADF
        return 0
    iovs, count, out = vals[1].i32 & _M32, vals[2].i32 & _M32, vals[3].i32 & _M32
    if count > MAX_IOVECS:
        vals[0].i32 = EINVAL
        return 0
    base, size = memory_span(caller)
    check_span(size, iovs, 8 * count)
    check_span(size, out, 4)
    fields = struct.unpack(f"<{2 * count}I", _string_at(base + iovs, 8 * count))
    total = 0
    for i in range(0, 2 * count, 2):
        check_span(size, fields[i], fields[i + 1])
        total += fields[i + 1]
    if total > _M32:  # the count written would not fit its u32 (Linux: over SSIZE_MAX)
        vals[0].i32 = EINVAL
        return 0
    io = current()
    room = io.room
    parts = []
    for i in range(0, 2 * count, 2):
        ptr, length = fields[i], fields[i + 1]
        if room and length:
            # Copy only what will be kept: the rest of the budget, never the whole buffer.
            take = min(length, room)
            parts.append(_string_at(base + ptr, take))
            room -= take
        elif not room:
            break
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    io.drop(total - len(data))
    io.write(fd, data)
    # Dropped output still counts as written, so the handler does not retry it forever.
    _u32(base + out).value = total
    vals[0].i32 = SUCCESS
    return 0


def fd_read(caller: Any, vals: Any) -> int:
    if vals[0].i32 != 0:
        vals[0].i32 = EBADF
        return 0
    base, size = memory_span(caller)
    out = vals[3].i32 & _M32
    check_span(size, out, 4)
    _u32(base + out).value = 0  # stdin is empty: end of file
    vals[0].i32 = SUCCESS
    return 0


def fd_fdstat_get(caller: Any, vals: Any) -> int:
    fd = vals[0].i32
    if fd not in (0, 1, 2):
        vals[0].i32 = EBADF
        return 0
    base, size = memory_span(caller)
    out = vals[1].i32 & _M32
    check_span(size, out, _FDSTAT.size)
    rights = (_RIGHT_READ if fd == 0 else _RIGHT_WRITE) | _RIGHT_POLL
    # A character device, like a terminal: C's stdio line-buffers it, so output written
    # before a crash is not lost in a buffer.
    _memmove(base + out, _FDSTAT.pack(_CHAR_DEVICE, 0, rights, 0), _FDSTAT.size)
    vals[0].i32 = SUCCESS
    return 0


def fd_filestat_get(caller: Any, vals: Any) -> int:
    if vals[0].i32 not in (0, 1, 2):
        vals[0].i32 = EBADF
        return 0
    base, size = memory_span(caller)
    out = vals[1].i32 & _M32
    check_span(size, out, _FILESTAT.size)
    _memmove(base + out, _FILESTAT.pack(0, 0, _CHAR_DEVICE, 1, 0, 0, 0, 0), _FILESTAT.size)
    vals[0].i32 = SUCCESS
    return 0


def _stdio_ok(_caller: Any, vals: Any) -> int:
    """fd_close, fd_fdstat_set_flags, fd_sync, ...: accepted on stdio, EBADF elsewhere."""
    vals[0].i32 = SUCCESS if vals[0].i32 in (0, 1, 2) else EBADF
    return 0


def _stdio_spipe(_caller: Any, vals: Any) -> int:
    """fd_seek, fd_tell: stdio is not seekable."""
    vals[0].i32 = ESPIPE if vals[0].i32 in (0, 1, 2) else EBADF
    return 0


def _stdio_nosys(_caller: Any, vals: Any) -> int:
    vals[0].i32 = ENOSYS if vals[0].i32 in (0, 1, 2) else EBADF
    return 0


def _no_dir(_caller: Any, vals: Any) -> int:
    """Path operations and preopen queries: no directory was granted."""
    vals[0].i32 = ENOTCAPABLE if vals[0].i32 in (0, 1, 2) else EBADF
    return 0


def _nosys(_caller: Any, vals: Any) -> int:
    vals[0].i32 = ENOSYS
    return 0


# -- args, environment, clocks, randomness -------------------------------------------------


def args_sizes_get(caller: Any, vals: Any) -> int:
    base, size = memory_span(caller)
    argc, buf_size = vals[0].i32 & _M32, vals[1].i32 & _M32
    check_span(size, argc, 4)
    check_span(size, buf_size, 4)
    _u32(base + argc).value = 1
    _u32(base + buf_size).value = len(current().argv0)
    vals[0].i32 = SUCCESS
    return 0


def args_get(caller: Any, vals: Any) -> int:
    base, size = memory_span(caller)
    argv, buf = vals[0].i32 & _M32, vals[1].i32 & _M32
    arg = current().argv0
    check_span(size, argv, 4)
    check_span(size, buf, len(arg))
    _u32(base + argv).value = buf
    _memmove(base + buf, arg, len(arg))
    vals[0].i32 = SUCCESS
    return 0


def environ_sizes_get(caller: Any, vals: Any) -> int:
    base, size = memory_span(caller)
    count, buf_size = vals[0].i32 & _M32, vals[1].i32 & _M32
    check_span(size, count, 4)
    check_span(size, buf_size, 4)
    _u32(base + count).value = 0
    _u32(base + buf_size).value = 0
    vals[0].i32 = SUCCESS
    return 0


def environ_get(_caller: Any, vals: Any) -> int:
    vals[0].i32 = SUCCESS  # nothing to write: the environment is empty
    return 0


_CLOCKS: dict[int, Callable[[], int]] = {
    0: time.time_ns,
    1: time.monotonic_ns,
    2: time.process_time_ns,
    3: time.thread_time_ns,
}


def clock_time_get(caller: Any, vals: Any) -> int:
    clock = _CLOCKS.get(vals[0].i32)
    if clock is None:
        vals[0].i32 = EINVAL
        return 0
    base, size = memory_span(caller)
    out = vals[2].i32 & _M32
    check_span(size, out, 8)
    _u64(base + out).value = clock()
    vals[0].i32 = SUCCESS
    return 0


def clock_res_get(caller: Any, vals: Any) -> int:
    if vals[0].i32 not in _CLOCKS:
        vals[0].i32 = EINVAL
        return 0
    base, size = memory_span(caller)
    out = vals[1].i32 & _M32
    check_span(size, out, 8)
    _u64(base + out).value = 1000
    vals[0].i32 = SUCCESS
    return 0


def fill_random(caller: Any, vals: Any, source: Callable[[int], bytes]) -> int:
    """``random_get`` with bytes from ``source(n)``, in pieces, checking the deadline
    between them (a 4 GiB request must not outrun the task's limit)."""
    base, size = memory_span(caller)
    buf, length = vals[0].i32 & _M32, vals[1].i32 & _M32
    check_span(size, buf, length)
    io = current()
    for offset in range(0, length, RANDOM_CHUNK):
        if offset and io.overdue():
            trap: int = io.backend.new_trap("deadline passed in random_get")
            return trap
        piece = min(RANDOM_CHUNK, length - offset)
        _memmove(base + buf + offset, source(piece), piece)
    vals[0].i32 = SUCCESS
    return 0


def random_get(caller: Any, vals: Any) -> int:
    return fill_random(caller, vals, os.urandom)


def sched_yield(_caller: Any, vals: Any) -> int:
    vals[0].i32 = SUCCESS
    return 0


def proc_exit(_caller: Any, vals: Any) -> int:
    io = current()
    io.exit_code = vals[0].i32 & _M32
    trap: int = io.backend.new_trap("proc_exit")
    return trap


# -- poll_oneoff: sleeping -----------------------------------------------------------------


def poll_oneoff(caller: Any, vals: Any) -> int:
    subs, events_out, count, nevents = (vals[i].i32 & _M32 for i in range(4))
    if count > MAX_SUBSCRIPTIONS:
        vals[0].i32 = EINVAL
        return 0
    base, size = memory_span(caller)
    check_span(size, subs, _SUB_SIZE * count)
    check_span(size, events_out, _EVENT.size * count)
    check_span(size, nevents, 4)
    if count == 0:
        vals[0].i32 = EINVAL
        return 0
    raw_subs = _string_at(base + subs, _SUB_SIZE * count)
    io = current()
    files = io.files
    ready: list[tuple[int, int, int]] = []  # (userdata, errno, type)
    clocks: list[tuple[int, int]] = []  # (userdata, ns from now)
    for offset in range(0, _SUB_SIZE * count, _SUB_SIZE):
        userdata, tag = _SUB_HEAD.unpack_from(raw_subs, offset)
        if tag == 0:
            clock_id, timeout, _precision, flags = _SUB_CLOCK.unpack_from(raw_subs, offset + 16)
            if flags & 1:  # absolute time on that clock
                clock = _CLOCKS.get(clock_id, time.monotonic_ns)
                timeout -= clock()
            clocks.append((userdata, max(timeout, 0)))
        elif tag in (1, 2):
            fd = struct.unpack_from("<I", raw_subs, offset + 16)[0]
            # Files granted by the operator (wasmtime's WASI) are always ready, as in POSIX.
            usable = (tag == 1 and fd == 0) or (tag == 2 and fd in (1, 2)) or (fd > 2 and files)
            ready.append((userdata, SUCCESS if usable else EBADF, tag))
        else:
            ready.append((userdata, EINVAL, tag))
    if not ready:
        wait = min(ns for _, ns in clocks)
        left = io.deadline - time.monotonic()
        if wait / 1e9 > left:
            io.sleep(max(left, 0.0))
            io.timed_out = True
            trap: int = io.backend.new_trap("deadline passed while sleeping")
            return trap
        if wait:
            io.sleep(wait / 1e9)
            if io.cancelled:
                stopped: int = io.backend.new_trap("cancelled while sleeping")
                return stopped
        ready = [(userdata, SUCCESS, 0) for userdata, ns in clocks if ns <= wait]
    out = b"".join(_EVENT.pack(userdata, err, tag, 0, 0) for userdata, err, tag in ready)
    base, size = memory_span(caller)  # sleeping did not move memory, but be exact
    _memmove(base + events_out, out, len(out))
    _u32(base + nevents).value = len(ready)
    vals[0].i32 = SUCCESS
    return 0


# -- the table -----------------------------------------------------------------------------

#: name -> (parameter letters: i = i32, I = i64; implementation). All return one i32
#: errno except proc_exit, which returns nothing (:func:`signature`).
FUNCTIONS: dict[str, tuple[str, Callable[[Any, Any], int]]] = {
    "args_get": ("ii", args_get),
    "args_sizes_get": ("ii", args_sizes_get),
    "environ_get": ("ii", environ_get),
    "environ_sizes_get": ("ii", environ_sizes_get),
    "clock_res_get": ("ii", clock_res_get),
    "clock_time_get": ("iIi", clock_time_get),
    "fd_advise": ("iIIi", _stdio_nosys),
    "fd_allocate": ("iII", _stdio_nosys),
    "fd_close": ("i", _stdio_ok),
    "fd_datasync": ("i", _stdio_ok),
    "fd_fdstat_get": ("ii", fd_fdstat_get),
    "fd_fdstat_set_flags": ("ii", _stdio_ok),
    "fd_fdstat_set_rights": ("iII", _stdio_nosys),
    "fd_filestat_get": ("ii", fd_filestat_get),
    "fd_filestat_set_size": ("iI", _stdio_nosys),
    "fd_filestat_set_times": ("iIIi", _stdio_nosys),
    "fd_pread": ("iiiIi", _stdio_spipe),
    "fd_prestat_get": ("ii", _no_dir),
    "fd_prestat_dir_name": ("iii", _no_dir),
    "fd_pwrite": ("iiiIi", _stdio_spipe),
    "fd_read": ("iiii", fd_read),
    "fd_readdir": ("iiiIi", _no_dir),
    "fd_renumber": ("ii", _stdio_nosys),
    "fd_seek": ("iIii", _stdio_spipe),
    "fd_sync": ("i", _stdio_ok),
    "fd_tell": ("ii", _stdio_spipe),
    "fd_write": ("iiii", fd_write),
    "path_create_directory": ("iii", _no_dir),
    "path_filestat_get": ("iiiii", _no_dir),
    "path_filestat_set_times": ("iiiiIIi", _no_dir),
    "path_link": ("iiiiiii", _no_dir),
    "path_open": ("iiiiiIIii", _no_dir),
    "path_readlink": ("iiiiii", _no_dir),
    "path_remove_directory": ("iii", _no_dir),
    "path_rename": ("iiiiii", _no_dir),
    "path_symlink": ("iiiii", _no_dir),
    "path_unlink_file": ("iii", _no_dir),
    "poll_oneoff": ("iiii", poll_oneoff),
    "proc_exit": ("i", proc_exit),
    "proc_raise": ("i", _nosys),
    "sched_yield": ("", sched_yield),
    "random_get": ("ii", random_get),
    "sock_accept": ("iii", _nosys),
    "sock_recv": ("iiiiii", _nosys),
    "sock_send": ("iiiii", _nosys),
    "sock_shutdown": ("ii", _nosys),
}


#: What capability tasks get from this module rather than from wasmtime's WASI: sleeps
#: and random fills there ignore the deadline.
SHADOWED = ("poll_oneoff", "random_get")

_TYPES = {"i": "i32", "I": "i64"}


def signature(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(params, results) of preview1 function ``name`` as wasm type names."""
    letters, _ = FUNCTIONS[name]
    results: tuple[str, ...] = () if name == "proc_exit" else ("i32",)
    return tuple(_TYPES[c] for c in letters), results


def guarded(name: str, func: Callable[[Any, Any], int]) -> Callable[[Any, Any], int]:
    def host(caller: Any, vals: Any) -> int:
        io = current()
        # The deadline holds inside the host too: a loop of host calls gives wasm's own
        # epoch check little to see, and the ticker may be late.
        if io.overdue():
            trap: int = io.backend.new_trap(f"deadline passed before {name}")
            return trap
        try:
            return func(caller, vals)
        except Fault:
            vals[0].i32 = EFAULT
            return 0
        except Exception as exc:  # a host bug becomes a trap of this task, not a crash
            io.host_error = f"{name}: {type(exc).__name__}: {exc}"
            failed: int = io.backend.new_trap(f"host function {name} failed")
            return failed

    return host


def define(linker: wasmtime.Linker, backend: raw.Backend, only: tuple[str, ...] = ()) -> None:
    """Defines every preview1 function (or those in ``only``) in ``linker``."""
    unknown = sorted(set(only) - FUNCTIONS.keys())
    if unknown:  # a misspelt name would otherwise leave wasmtime's version in place
        raise ValueError(f"not preview1 functions of this module: {', '.join(unknown)}")
    types = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64()}
    for name, (_, func) in FUNCTIONS.items():
        if only and name not in only:
            continue
        params, results = signature(name)
        backend.define(
            linker,
            MODULE,
            name,
            [types[p] for p in params],
            [types[r] for r in results],
            guarded(name, func),
        )
