"""The guest SDKs, shipped with wasmq so the compiler can build handlers that use them.

``sdk/go``, ``sdk/c`` and ``sdk/zig`` hold the sources a handler imports (the Go module
``wasmq.dev/wasmq``, the header ``wasmq.h``, the Zig module ``wasmq``). They are package
data of this package, so an installed wasmq finds them the same way as a checkout:
:mod:`compiler.sdk` locates them and shows them read-only to the toolchains.
"""
