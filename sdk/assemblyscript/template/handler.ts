// __NAME__: a wasmq task handler in AssemblyScript, written with the wasmq SDK.
//
// The payload is JSON ({"name": "Ada"}); the bytes the handler returns are the task's
// result. Return fail("...") to fail the attempt for good, retry("...") to have it
// retried (up to the task's max_retries). A throw or a failed assertion traps, which is
// retried too, with its message in the task's stderr.
import { bytes, fail, handle, jsonField, jsonString, progress, text } from "wasmq";

// The module's entry points, which the SDK implements: keep this line.
export { alloc, execute } from "wasmq";

handle((payload: Uint8Array): Uint8Array => {
  const name = jsonField(text(payload), "name");
  if (name === null || name.trim().length == 0) {
    // The same payload would fail again: no point in retrying.
    return fail('the payload has no "name": send {"name": "Ada"}');
  }
  progress(50, "greeting " + name);
  const greeting = "Hello, " + name.trim() + "! (from __NAME__)";
  return bytes('{"greeting":' + jsonString(greeting) + "}");
});
