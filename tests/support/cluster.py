"""A real local Redis Cluster for tests: Valkey masters and replicas on free ports.

:class:`LocalCluster` starts ``2 * masters`` ``valkey-server --cluster-enabled yes``
processes under a directory of the test's, joins them with ``valkey-cli --cluster create
--cluster-replicas 1``, waits for ``cluster_state:ok`` on every node, and can SIGKILL a
master and wait for its replica to take over. The node timeout is short (1 s) so that a
failover takes a few seconds, not the default fifteen.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from runtime.server.embedded import server_binary
from tests.support.pools import stop_processes

#: How long a node may go unheard before the cluster fails it over (ms).
NODE_TIMEOUT_MS = 1000
#: Longest wait for the cluster to form or to promote a replica (s).
SETTLE_TIMEOUT = 60.0


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free now, each with its cluster bus port (+10000) free too."""
    ports: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port + 10000 > 65535 or port in ports:
                s.close()
                continue
            bus = socket.socket()
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                s.close()
                continue
            finally:
                bus.close()
            held.append(s)
            ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Node:
    port: int
    proc: subprocess.Popen[bytes]

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)


class LocalCluster:
    """``masters`` masters with ``replicas`` replica each, on 127.0.0.1; :meth:`stop` ends
    them. One master (no replicas) is a cluster too: it takes every slot itself, since
    ``valkey-cli --cluster create`` wants three."""

    def __init__(self, root: Path, masters: int = 3, replicas: int = 1) -> None:
        self.root = root
        self.masters = masters
        self.replicas = replicas
        self.nodes: list[Node] = []

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL of every node (any one is enough to start)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> LocalCluster:
        binary = server_binary()
        cli = binary.with_name("valkey-cli")
        for port in free_ports((1 + self.replicas) * self.masters):
            home = self.root / f"node-{port}"
            home.mkdir(parents=True)
            args = [
                str(binary),
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--appendonly", "no",
                # A replica that never finished its first sync cannot take over: sync now.
                "--repl-diskless-sync-delay", "0",
                "--save", "",
                "--dir", str(home),
                "--logfile", "valkey.log",
            ]  # fmt: skip
            proc = subprocess.Popen(args, cwd=home, start_new_session=True)
            self.nodes.append(Node(port, proc))
        for node in self.nodes:
            _wait(lambda n=node: bool(n.client().ping()), SETTLE_TIMEOUT, f"node {node.port}")
        if self.masters == 1 and self.replicas == 0:
            self.nodes[0].client().execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        else:
            self._create(str(cli))
        self.wait_ok()
        self.wait_synced()
        return self

    def _create(self, cli: str) -> None:
        hosts = [f"127.0.0.1:{n.port}" for n in self.nodes]
        replicas = str(self.replicas)
        created = subprocess.run(
            [cli, "--cluster", "create", *hosts, "--cluster-replicas", replicas, "--cluster-yes"],
            capture_output=True,
            timeout=SETTLE_TIMEOUT,
        )
        if created.returncode != 0:
            raise AssertionError(f"cluster create failed: {created.stdout.decode()[-2000:]}")

    def wait_synced(self) -> None:
        """Wait until every replica has its master's data (only then can it take over)."""
        for node in self.live():

            def synced(n: Node = node) -> bool:
                info: dict[str, Any] = n.client().info("replication")
                return info.get("role") != "slave" or info.get("master_link_status") == "up"

            _wait(synced, SETTLE_TIMEOUT, f"replica {node.port} in sync")

    def wait_ok(self, nodes: list[Node] | None = None) -> None:
        """Wait until every (live) node says ``cluster_state:ok`` and sees every slot."""
        for node in nodes or self.live():

            def ok(n: Node = node) -> bool:
                info: dict[str, Any] = n.client().cluster("info")  # type: ignore[no-untyped-call]
                return str(info.get("cluster_state")) == "ok"

            _wait(ok, SETTLE_TIMEOUT, f"cluster_state:ok on {node.port}")

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.proc.poll() is None]

    def master_ports(self) -> list[int]:
        """Ports of the live masters, as a live node sees them."""
        reply: Any = self.live()[0].client().execute_command("CLUSTER", "NODES")
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        ports = []
        for line in text.splitlines():
            parts = line.split()
            if "master" in parts[2] and "fail" not in parts[2]:
                ports.append(int(parts[1].split("@")[0].rsplit(":", 1)[1]))
        return sorted(ports)

    def master_of(self, key: str) -> int:
        """Port of the master that serves ``key``'s slot."""
        node = self.live()[0].client()
        slot = int(node.execute_command("CLUSTER", "KEYSLOT", key))
        for start, end, master, *_ in node.execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return int(master[1])
        raise AssertionError(f"no master serves slot {slot}")

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` (no shutdown, no goodbye to the cluster)."""
        node = next(n for n in self.nodes if n.port == port)
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait()

    def wait_promoted(self, key: str, old_port: int) -> int:
        """Wait until another master serves ``key``'s slot and the cluster is ok again."""
        taken: list[int] = []

        def moved() -> bool:
            port = self.master_of(key)
            taken[:] = [port]
            return port != old_port

        _wait(moved, SETTLE_TIMEOUT, f"a replica to take over from {old_port}")
        self.wait_ok()
        return taken[0]

    def stop(self) -> None:
        stop_processes([n.proc for n in self.nodes], timeout=10)
