/**
 * What the AssemblyScript standard library asks of its JavaScript host (`env.abort`,
 * `env.trace`, `env.seed`, `env.console.*`), served by WASI and the wasmq host instead:
 * task modules may import nothing else. wasmq compiles this file beside every `.ts`
 * source, with `--use abort=__wasmq_abort --use trace=__wasmq_trace
 * --use seed=__wasmq_seed --use console=__wasmq_console`.
 *
 * - `abort` (a failed assertion, a `throw`, an out-of-bounds index) writes
 *   `abort: MESSAGE at FILE:LINE:COLUMN` to stderr, records it through `wasmq.fail`
 *   (retryable, like any trap) and traps.
 * - `trace` writes a line to stderr; `console.log/info/debug` to stdout and
 *   `console.warn/error` to stderr (both captured per task).
 * - `Math.random` is seeded from WASI's `random_get`.
 */

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: u32, iovs: usize, iovsLen: usize, written: usize): u16;

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "random_get")
declare function random_get(buf: usize, len: usize): u16;

// @ts-ignore: decorator
@external("wasmq", "fail")
declare function hostFail(kind: i32, ptr: usize, len: usize): i32;

const RETRYABLE: i32 = 1;
const STDOUT: u32 = 1;
const STDERR: u32 = 2;

// One iovec and the count fd_write answers with; static, so writing allocates no more
// than the UTF-8 copy of the text.
const scratch = memory.data(16);
let aborting = false;

function writeLine(fd: u32, line: string): void {
  const data = String.UTF8.encode(line + "\n");
  let ptr = changetype<usize>(data);
  let left = <usize>data.byteLength;
  while (left > 0) {
    store<usize>(scratch, ptr);
    store<usize>(scratch, left, sizeof<usize>());
    if (fd_write(fd, scratch, 1, scratch + 2 * sizeof<usize>()) != 0) return;
    const written = <usize>load<u32>(scratch + 2 * sizeof<usize>());
    if (written == 0) return;
    ptr += written;
    left -= written;
  }
}

// @ts-ignore: decorator
@global
function __wasmq_abort(
  message: string | null,
  fileName: string | null,
  line: u32,
  column: u32,
): void {
  // Out of memory while reporting (the message needs memory too): trap at once.
  if (aborting) unreachable();
  aborting = true;
  let text = message !== null ? message : "abort";
  if (fileName !== null) {
    text += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  }
  writeLine(STDERR, "abort: " + text);
  const data = String.UTF8.encode(text);
  hostFail(RETRYABLE, changetype<usize>(data), <usize>data.byteLength);
  unreachable();
}

// @ts-ignore: decorator
@global
function __wasmq_trace(
  message: string,
  n: i32 = 0,
  a0: f64 = 0,
  a1: f64 = 0,
  a2: f64 = 0,
  a3: f64 = 0,
  a4: f64 = 0,
): void {
  let line = "trace: " + message;
  const values = [a0, a1, a2, a3, a4];
  for (let i = 0; i < n && i < values.length; i++) {
    line += (i == 0 ? " " : ", ") + values[i].toString();
  }
  writeLine(STDERR, line);
}

// @ts-ignore: decorator
@global
function __wasmq_seed(): f64 {
  store<u64>(scratch, 0);
  random_get(scratch, 8);
  // Never 0 (the generator refuses a zero seed), never NaN.
  return <f64>(load<u64>(scratch) >>> 12) + 1.0;
}

// @ts-ignore: decorator
@global
namespace __wasmq_console {
  export function assert<T>(condition: T, message: string = ""): void {
    if (!condition) writeLine(STDERR, "Assertion failed: " + message);
  }

  export function log(message: string = ""): void {
    writeLine(STDOUT, message);
  }

  export function debug(message: string = ""): void {
    writeLine(STDOUT, message);
  }

  export function info(message: string = ""): void {
    writeLine(STDOUT, message);
  }

  export function warn(message: string = ""): void {
    writeLine(STDERR, message);
  }

  export function error(message: string = ""): void {
    writeLine(STDERR, message);
  }
}

// Compile the hooks with this file, before the compiler lays out memory: `abort` is first
// referenced by runtime code compiled last, and compiling it then fails.
__wasmq_abort;
__wasmq_trace;
__wasmq_seed;
