"""The wasm sandbox: engine, limits, ABI and captured output."""
