// hello_as: a JSON handler written with the wasmq AssemblyScript SDK. {"name": "Ada"}
// gives {"greeting": "Hello, Ada!"} and prints a line; a payload without a name fails
// for good (a retry would get the same payload).
import { bytes, fail, handle, jsonField, jsonString, progress, text } from "wasmq";

export { alloc, execute } from "wasmq";

handle((payload: Uint8Array): Uint8Array => {
  const name = jsonField(text(payload), "name");
  if (name === null || name.trim().length == 0) {
    return fail('the payload has no "name": send {"name": "Ada"}');
  }
  console.log("Hello, " + name + "! (from hello_as in AssemblyScript)");
  progress(100, "greeted " + name);
  return bytes('{"greeting":' + jsonString("Hello, " + name + "!") + "}");
});
