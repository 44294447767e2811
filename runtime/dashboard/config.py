"""How a dashboard is served: address, who may see it, whether it may change anything."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from runtime.errors import WasmqError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


@dataclass(frozen=True)
class DashboardConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    #: Hides every action and refuses every POST.
    read_only: bool = False
    #: A bearer token (``Authorization: Bearer T``, or ``?token=T`` once in a browser).
    token: str | None = None
    #: ``(user, password)`` for HTTP basic auth.
    basic_auth: tuple[str, str] | None = None

    @property
    def needs_auth(self) -> bool:
        return self.token is not None or self.basic_auth is not None

    def check(self) -> None:
        """Refuse to serve beyond this machine without a token or a password."""
        if not is_loopback(self.host) and not self.needs_auth:
            raise WasmqError(
                f"--host {self.host} exposes the dashboard beyond this machine: give --token "
                "(or WASMQ_DASHBOARD_TOKEN) or --basic-auth USER:PASSWORD, or bind 127.0.0.1"
            )
        if self.token is not None and len(self.token) < 16:
            raise WasmqError("--token is shorter than 16 characters: use a long random one")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_basic_auth(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise WasmqError(f"--basic-auth {text!r} is not USER:PASSWORD: give both, with a colon")
    return user, password
