"""wasmq's implementation: queue, scheduling, workers, sandbox, modules, output, server, CLI.

Users import the public API from :mod:`wasmq`; the version is ``wasmq.__version__``.
"""
