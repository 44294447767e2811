"""Random bytes and mutated valid modules fed to ``Registry.register`` as .wasm files.

Each attempt ends in a registered task or a clean :class:`WasmqError` refusal within a
few seconds: never another exception, never a hang, and a refusal records nothing.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest
import redis
import wasmtime

from runtime.errors import WasmqError
from runtime.modules.registry import Registry
from runtime.queue import keys
from runtime.settings import Settings
from tests.support.paths import ROOT

#: Longest one registration may take before it counts as a hang (s).
BOUND = 20.0


def attempt(registry: Registry, path: Path) -> BaseException | None:
    """Register ``path``; returns what it raised (None on success)."""
    box: list[BaseException | None] = []

    def target() -> None:
        try:
            registry.register(path, name="fuzz")
            box.append(None)
        except BaseException as exc:  # the test classifies what was raised
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), f"register hung on {path.name}"
    return box[0]


def check(registry: Registry, client: redis.Redis, path: Path) -> bool:
    before = client.hget(keys.TASK_REGISTRY, "fuzz")
    raised = attempt(registry, path)
    if raised is None:
        return True
    assert isinstance(raised, WasmqError), f"{path.name}: {type(raised).__name__}: {raised}"
    message = str(raised)
    assert message and "\n" not in message.strip(), message
    assert client.hget(keys.TASK_REGISTRY, "fuzz") == before
    return False


@pytest.fixture
def registry(settings: Settings, redis_client: redis.Redis) -> Registry:
    return Registry(settings, redis_client)


def test_random_bytes_are_refused(
    registry: Registry, redis_client: redis.Redis, tmp_path: Path
) -> None:
    rng = random.Random(7)
    samples = [b"", b"\x00asm", b"\x00asm\x01\x00\x00\x00", b"\x00asm\x0d\x00\x01\x00"]
    samples += [rng.randbytes(rng.randint(1, 600)) for _ in range(100)]
    # A valid header in front of garbage reaches the section parser.
    samples += [b"\x00asm\x01\x00\x00\x00" + rng.randbytes(rng.randint(1, 300)) for _ in range(100)]
    for i, data in enumerate(samples):
        path = tmp_path / f"random{i}.wasm"
        path.write_bytes(data)
        assert not check(registry, redis_client, path), f"random bytes {i} were accepted"


def test_mutated_modules_are_refused_or_registered(
    registry: Registry, redis_client: redis.Redis, tmp_path: Path
) -> None:
    valid = wasmtime.wat2wasm((ROOT / "tasks" / "echo.wat").read_text())
    rng = random.Random(11)
    accepted = 0
    for i in range(200):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            how = rng.randrange(3)
            pos = rng.randrange(len(data))
            if how == 0:
                data[pos] = rng.randrange(256)
            elif how == 1:
                del data[pos : pos + rng.randint(1, 8)]
            else:
                data[pos:pos] = rng.randbytes(rng.randint(1, 8))
        path = tmp_path / f"mutant{i}.wasm"
        path.write_bytes(bytes(data))
        accepted += check(registry, redis_client, path)
    # The untouched module still registers after all that.
    path = tmp_path / "valid.wasm"
    path.write_bytes(valid)
    assert check(registry, redis_client, path)
    assert accepted < 200
