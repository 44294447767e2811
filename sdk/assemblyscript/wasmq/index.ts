/**
 * The wasmq guest SDK for AssemblyScript: bytes in, bytes out, or an error.
 *
 *     import { handle, fail, text, bytes } from "wasmq";
 *     export { alloc, execute } from "wasmq";
 *
 *     handle((payload: Uint8Array): Uint8Array => {
 *       if (payload.length == 0) return fail("empty payload");
 *       return bytes("Hello, " + text(payload) + "!");
 *     });
 *
 * The SDK owns the module's `alloc` and `execute` exports (the handler's source re-exports
 * them: only an entry file's exports become the module's), the payload buffer and the
 * result, which stays reachable (so the GC keeps it) until the host has copied it.
 */

// @ts-ignore: decorator
@external("wasmq", "fail")
declare function hostFail(kind: i32, ptr: usize, len: usize): i32;

// @ts-ignore: decorator
@external("wasmq", "progress")
declare function hostProgress(value: f64, ptr: usize, len: usize): i32;

/** A handler: the payload in, the result out. */
export type Handler = (payload: Uint8Array) => Uint8Array;

/** `fail` kinds of the host ABI. */
const TERMINAL: i32 = 0;
const RETRYABLE: i32 = 1;

let handler: Handler | null = null;
// The buffer `alloc` handed out, reachable (so not collected) until `execute` reads it.
let input: ArrayBuffer | null = null;
// The last result, reachable until the next call: the host copies it after `execute`.
let output: Uint8Array | null = null;
let failed = false;

/** Registers the task's handler; call it once, at the top level of the source. */
export function handle(fn: Handler): void {
  handler = fn;
}

/**
 * Records a terminal error (the task is not retried and goes to the dead-letter queue);
 * return what it returns from the handler.
 */
export function fail(message: string): Uint8Array {
  report(TERMINAL, message);
  return new Uint8Array(0);
}

/**
 * Records a retryable error (retried with backoff up to the task's max_retries); return
 * what it returns from the handler.
 */
export function retry(message: string): Uint8Array {
  report(RETRYABLE, message);
  return new Uint8Array(0);
}

/**
 * Reports how far the handler is: `value` by convention a percentage (0..100), `message`
 * optional and short. Cheap enough to call in a loop; a non-finite value is ignored.
 */
export function progress(value: f64, message: string = ""): void {
  if (message.length == 0) {
    hostProgress(value, 0, 0);
    return;
  }
  const data = String.UTF8.encode(message);
  hostProgress(value, changetype<usize>(data), <usize>data.byteLength);
}

/** The bytes as UTF-8 text (invalid sequences become U+FFFD). */
export function text(data: Uint8Array): string {
  return String.UTF8.decodeUnsafe(data.dataStart, <usize>data.byteLength);
}

/** The text as UTF-8 bytes. */
export function bytes(value: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(value));
}

/** `value` as a JSON string literal, quotes and escapes included. */
export function jsonString(value: string): string {
  let out = '"';
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    let escaped = "";
    if (c == 0x22) escaped = '\\"';
    else if (c == 0x5c) escaped = "\\\\";
    else if (c == 0x0a) escaped = "\\n";
    else if (c == 0x0d) escaped = "\\r";
    else if (c == 0x09) escaped = "\\t";
    else if (c < 0x20) escaped = "\\u00" + (c < 0x10 ? "0" : "") + c.toString(16);
    else continue;
    out += value.substring(start, i) + escaped;
    start = i + 1;
  }
  return out + value.substring(start) + '"';
}

/**
 * The string value of `key` in the JSON object `json` (top-level keys only), or null
 * when `json` is not an object, has no such key, or its value is not a string.
 */
export function jsonField(json: string, key: string): string | null {
  let i = skipSpace(json, 0);
  if (i >= json.length || json.charCodeAt(i) != 0x7b) return null;
  i = skipSpace(json, i + 1);
  if (i < json.length && json.charCodeAt(i) == 0x7d) return null;
  while (i < json.length) {
    if (json.charCodeAt(i) != 0x22) return null;
    const keyEnd = stringEnd(json, i);
    if (keyEnd < 0) return null;
    const name = unescape(json, i + 1, keyEnd - 1);
    i = skipSpace(json, keyEnd);
    if (i >= json.length || json.charCodeAt(i) != 0x3a) return null;
    i = skipSpace(json, i + 1);
    if (name !== null && name == key) {
      if (i >= json.length || json.charCodeAt(i) != 0x22) return null;
      const end = stringEnd(json, i);
      return end < 0 ? null : unescape(json, i + 1, end - 1);
    }
    i = skipSpace(json, valueEnd(json, i));
    if (i >= json.length || json.charCodeAt(i) != 0x2c) return null;
    i = skipSpace(json, i + 1);
  }
  return null;
}

// The module's exports (re-exported by the handler's source).

export function alloc(len: i32): usize {
  const buffer = new ArrayBuffer(len);
  input = buffer;
  return changetype<usize>(buffer);
}

export function execute(ptr: usize, len: i32): u64 {
  failed = false;
  output = null;
  const fn = handler;
  if (fn === null) {
    fail("the task registers no handler: call handle(...) at the top level of its source");
    return 0;
  }
  const result = fn(payloadAt(ptr, len));
  input = null;
  // After fail/retry the host discards the result: return none.
  if (failed || result.byteLength == 0) return 0;
  output = result;
  return (<u64>result.dataStart << 32) | <u64>result.byteLength;
}

function payloadAt(ptr: usize, len: i32): Uint8Array {
  const buffer = input;
  if (buffer !== null && ptr == changetype<usize>(buffer) && len <= buffer.byteLength) {
    return Uint8Array.wrap(buffer, 0, len);
  }
  // Not the buffer alloc gave (a host that wrote elsewhere): copy it into one we own.
  const copy = new Uint8Array(len);
  memory.copy(copy.dataStart, ptr, <usize>len);
  return copy;
}

function report(kind: i32, message: string): void {
  failed = true;
  const data = String.UTF8.encode(message);
  hostFail(kind, changetype<usize>(data), <usize>data.byteLength);
}

function skipSpace(s: string, i: i32): i32 {
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
    i++;
  }
  return i;
}

// The index after the string literal that starts (with its quote) at `i`, or -1.
function stringEnd(s: string, i: i32): i32 {
  for (i++; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x5c) i++;
    else if (c == 0x22) return i + 1;
  }
  return -1;
}

// The index after the value that starts at `i` (strings, objects and arrays skipped whole).
function valueEnd(s: string, i: i32): i32 {
  let depth = 0;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c == 0x22) {
      const end = stringEnd(s, i);
      if (end < 0) return s.length;
      i = end;
      if (depth == 0) return i;
      continue;
    }
    if (c == 0x7b || c == 0x5b) depth++;
    else if (c == 0x7d || c == 0x5d) {
      if (depth == 0) return i;
      depth--;
      if (depth == 0) return i + 1;
    } else if (depth == 0 && (c == 0x2c || c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09)) {
      return i;
    }
    i++;
  }
  return i;
}

// The string between `start` and `end` (exclusive) with JSON escapes decoded, or null.
function unescape(s: string, start: i32, end: i32): string | null {
  if (s.substring(start, end).indexOf("\\") < 0) return s.substring(start, end);
  let out = "";
  let i = start;
  while (i < end) {
    const c = s.charCodeAt(i);
    if (c != 0x5c) {
      out += String.fromCharCode(c);
      i++;
      continue;
    }
    if (i + 1 >= end) return null;
    const e = s.charCodeAt(i + 1);
    i += 2;
    if (e == 0x22 || e == 0x5c || e == 0x2f) out += String.fromCharCode(e);
    else if (e == 0x62) out += "\b";
    else if (e == 0x66) out += "\f";
    else if (e == 0x6e) out += "\n";
    else if (e == 0x72) out += "\r";
    else if (e == 0x74) out += "\t";
    else if (e == 0x75 && i + 4 <= end) {
      let code = 0;
      for (let j = i; j < i + 4; j++) {
        const digit = hexDigit(s.charCodeAt(j));
        if (digit < 0) return null;
        code = (code << 4) | digit;
      }
      // A surrogate pair comes as two escapes; UTF-16 strings join the halves as they are.
      out += String.fromCharCode(code);
      i += 4;
    } else return null;
  }
  return out;
}

function hexDigit(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}
