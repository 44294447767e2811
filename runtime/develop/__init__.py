"""The handler edit loop: run one task locally, and start a new handler from a template.

- :mod:`runtime.develop.local_build` compiles a source file as the registry would, with a
  compile cache on local disk only (no Redis);
- :mod:`runtime.develop.local_run` runs one module once in the worker's sandbox, with the
  worker's limits;
- :mod:`runtime.develop.run_report` shows what that run did, for people or as JSON;
- :mod:`runtime.develop.scaffold` writes a new handler directory from a language's template.

``wasmq run`` and ``wasmq new`` (:mod:`runtime.cli.develop`) are the commands over them.
"""
