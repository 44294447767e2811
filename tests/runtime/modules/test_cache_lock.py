"""One compile per module per machine: worker processes that start together share it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from runtime.modules.cache import sha256
from runtime.queue import keys

LOADER = """
import sys, time
from pathlib import Path
import redis
from runtime.modules.cache import STATS, ModuleCache
client = redis.Redis.from_url(sys.argv[1])
cache = ModuleCache(Path(sys.argv[2]), client)
while not Path(sys.argv[4]).exists():  # start together, as a pool's processes do
    time.sleep(0.001)
cache.load(sys.argv[3])
print(STATS.wasm_compiles, STATS.native_loads)
"""


def big_module(functions: int = 1500) -> str:
    """A valid task module that takes a noticeable time to compile."""
    body = "".join(
        f"(func $f{i} (param i32) (result i32) local.get 0 i32.const {i} i32.mul"
        f" i32.const 7 i32.add local.get 0 i32.xor)"
        for i in range(functions)
    )
    return f"""(module (memory (export "memory") 1) {body}
      (func (export "alloc") (param i32) (result i32) i32.const 0)
      (func (export "execute") (param i32 i32) (result i64) i64.const 0))"""


@pytest.mark.processes
def test_processes_loading_a_new_module_together_compile_it_once(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    import wasmtime

    data = wasmtime.wat2wasm(big_module())
    digest = sha256(data)
    redis_client.set(keys.module(digest), data)
    go = tmp_path / "go"
    args = [redis_url, str(tmp_path / "modules"), digest, str(go)]
    loaders = [
        subprocess.Popen([sys.executable, "-c", LOADER, *args], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    time.sleep(1.0)  # let every loader reach its start line
    go.touch()
    counts = [tuple(map(int, p.communicate(timeout=120)[0].split())) for p in loaders]
    assert all(p.returncode == 0 for p in loaders)
    assert sum(compiles for compiles, _ in counts) == 1, counts
    assert sum(loads for _, loads in counts) == 3, counts
