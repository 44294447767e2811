"""``rediss://`` against a real TLS server that requires a client certificate: stunnel in
front of Valkey, with a throwaway CA made by the openssl CLI. A producer enqueues and a
real worker pool runs the task over TLS; a wrong CA, a missing client certificate and an
unreadable file each give one line naming the setting to fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.client import Client
from runtime.errors import ConnectionFailed
from runtime.modules.registry import Registry
from runtime.queue import keys
from runtime.server.connection import connect
from runtime.settings import Settings
from tests.support.cli import cli_env, run_cli
from tests.support.pools import SPIN_WAT
from tests.support.servers import Servers, free_port, make_certificates, stunnel_missing

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Path]]]:
    """``(rediss:// URL, certificate files)`` of a TLS endpoint requiring client certs."""
    missing = stunnel_missing()
    if missing is not None:
        pytest.skip(missing)
    root = tmp_path_factory.mktemp("tls")
    files = make_certificates(root)
    servers = Servers(root)
    try:
        plain, tls = free_port(), free_port()
        servers.valkey(plain)
        servers.stunnel(tls, plain, files["server"], files["server-key"], files["ca"])
        yield f"rediss://127.0.0.1:{tls}/0", files
    finally:
        servers.stop_all()


def tls_env(files: dict[str, Path], ca: str = "ca", client: bool = True) -> dict[str, str]:
    env = {"WASMQ_REDIS_TLS_CA": str(files[ca]), "WASMQ_CONNECT_TIMEOUT": "2s"}
    if client:
        env["WASMQ_REDIS_TLS_CERT"] = str(files["client"])
        env["WASMQ_REDIS_TLS_KEY"] = str(files["client-key"])
    return env


def test_worker_runs_a_task_over_mutual_tls(
    tls_server: tuple[str, dict[str, Path]], tmp_path: Path
) -> None:
    url, files = tls_server
    env = cli_env(url, tmp_path, **tls_env(files))
    settings = Settings.load({}, environ=env, env_file=None)
    client = connect(settings)
    try:
        assert client.connection_pool.connection_kwargs["ssl_certfile"] == str(files["client"])
        client.flushall()
        source = tmp_path / "spin.wat"
        source.write_text(SPIN_WAT)
        Registry(settings, client).register(source)
        with Client(settings=settings) as producer:
            task = producer.enqueue("spin", b"over tls")
        done = run_cli("worker", "--burst", "--concurrency", "1", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert client.hget(keys.task(task.id), "task_stage") == b"completed"
        assert client.get(keys.result(task.id)) == b"over tls"
    finally:
        client.close()


@pytest.mark.parametrize(
    ("ca", "with_client", "said"),
    [
        ("other-ca", True, "does not verify against WASMQ_REDIS_TLS_CA="),
        ("ca", False, "requires a client certificate; set WASMQ_REDIS_TLS_CERT"),
    ],
)
def test_tls_mistakes_fail_in_one_line(
    tls_server: tuple[str, dict[str, Path]], ca: str, with_client: bool, said: str
) -> None:
    url, files = tls_server
    settings = Settings.load(
        {"redis_url": url}, environ=tls_env(files, ca, with_client), env_file=None
    )
    with pytest.raises(ConnectionFailed, match=said) as failed:
        connect(settings)
    assert "\n" not in str(failed.value)


def test_unreadable_tls_file_names_its_setting(tmp_path: Path) -> None:
    settings = Settings.load(
        {"redis_url": "rediss://127.0.0.1:1/0"},
        environ={"WASMQ_REDIS_TLS_CA": str(tmp_path / "nope.pem")},
        env_file=None,
    )
    with pytest.raises(ConnectionFailed, match=r"^cannot read WASMQ_REDIS_TLS_CA=.*nope\.pem \("):
        connect(settings)
