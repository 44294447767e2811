"""Real Valkey servers on TCP for the connection tests: a plain one, a master with a
replica watched by three sentinels, and a TLS endpoint (stunnel in front of Valkey).

Every process started here is stopped by :meth:`Servers.stop_all` (the tests call it in
a ``finally``), and ports are taken from the kernel, so runs never collide.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from runtime.server import embedded
from tests.support.pools import stop_processes

SERVICE = "mymaster"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Servers:
    """Starts servers in ``root``; :meth:`stop_all` stops every one of them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.binary = str(embedded.server_binary())

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with open(self.root / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        self.procs.append(proc)
        return proc

    def valkey(self, port: int, *extra: str, wait: bool = True) -> subprocess.Popen[bytes]:
        """A Valkey server on 127.0.0.1:``port`` with no persistence."""
        data = self.root / f"valkey-{port}"
        data.mkdir(exist_ok=True)
        proc = self._spawn(
            f"valkey-{port}",
            [
                self.binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data),
                *extra,
            ],
        )
        if wait:
            client = redis.Redis(port=port, socket_connect_timeout=1)
            try:
                wait_until(client.ping, 10, f"valkey on port {port}")
            finally:
                client.close()
        return proc

    def sentinel(self, port: int, master_port: int) -> subprocess.Popen[bytes]:
        """A sentinel on ``port`` watching the master on ``master_port`` (quorum 2), quick
        to call the master down and to fail over, so a test sees a failover in seconds."""
        conf = self.root / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.root}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 3000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        return self._spawn(f"sentinel-{port}", [self.binary, str(conf), "--sentinel"])

    def stunnel(self, accept: int, connect: int, cert: Path, key: Path, ca: Path) -> None:
        """TLS on ``accept`` in front of plain ``connect``, requiring a client certificate
        signed by ``ca``."""
        binary = shutil.which("stunnel4") or shutil.which("stunnel")
        assert binary is not None
        conf = self.root / f"stunnel-{accept}.conf"
        conf.write_text(
            "foreground = yes\n"
            f"pid =\n"
            "debug = 4\n"
            "[redis]\n"
            f"accept = 127.0.0.1:{accept}\n"
            f"connect = 127.0.0.1:{connect}\n"
            f"cert = {cert}\n"
            f"key = {key}\n"
            f"CAfile = {ca}\n"
            "verifyChain = yes\n"
            "requireCert = yes\n"
        )
        self._spawn(f"stunnel-{accept}", [binary, str(conf)])

        def listening() -> bool:
            with socket.create_connection(("127.0.0.1", accept), timeout=1):
                return True

        wait_until(listening, 10, f"stunnel on port {accept}")

    def logs(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(self.root.glob("*.log"))
        )

    def stop_all(self) -> None:
        stop_processes(self.procs, timeout=5)


def stunnel_missing() -> str | None:
    """Why the TLS tests cannot run here, or ``None``."""
    if shutil.which("stunnel4") or shutil.which("stunnel"):
        return None
    return "stunnel is not installed (make system-deps installs the stunnel4 package)"


def make_certificates(root: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, all
    signed by that CA, plus a second, unrelated CA; PEM files in ``root``."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True)

    for ca in ("ca", "other-ca"):
        openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN=wasmq test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
        )  # fmt: skip
    (root / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", ["-extfile", "server.ext"]), ("client", [])):
        openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=wasmq test {name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr",
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *ext,
        )  # fmt: skip
    return {
        name: root / f"{name}.{ext}"
        for name, ext in (
            ("ca", "pem"),
            ("other-ca", "pem"),
            ("server", "pem"),
            ("client", "pem"),
        )
    } | {"server-key": root / "server.key", "client-key": root / "client.key"}
