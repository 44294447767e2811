"""wasmq: a Redis-fed task queue whose workers run untrusted handlers as WebAssembly."""

__version__ = "0.1.0"
