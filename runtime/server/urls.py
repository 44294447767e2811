"""The forms ``REDIS_URL`` takes, checked without touching the network.

``redis://``, ``rediss://`` (TLS) and ``unix://`` are redis-py's own. A Sentinel URL names
the sentinels and the monitored service instead of a server:

    redis+sentinel://[user:password@]host1[:port1][,host2[:port2]...]/service[/db]

``rediss+sentinel://`` speaks TLS to the sentinels and to the master. The service and db
may also come as ``?service=NAME&db=N``. The credentials are the master's; sentinels that
need a password of their own get ``WASMQ_SENTINEL_PASSWORD``.

A Redis Cluster URL names any of its nodes (one live node is enough to find the rest):

    redis+cluster://[user:password@]host1:port1[,host2:port2...]

``rediss+cluster://`` speaks TLS to every node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlparse, urlsplit

PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
TLS_SCHEMES = ("rediss", "rediss+sentinel", "rediss+cluster")
#: The port sentinels listen on unless the URL names another.
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelTarget:
    """What a Sentinel URL names."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    username: str | None
    password: str | None
    tls: bool


def scheme(url: str) -> str:
    return url.partition("://")[0].lower()


def is_sentinel(url: str) -> bool:
    return scheme(url) in SENTINEL_SCHEMES


def is_cluster(url: str) -> bool:
    return scheme(url) in CLUSTER_SCHEMES


def is_tls(url: str) -> bool:
    return scheme(url) in TLS_SCHEMES


def check(text: str) -> str | None:
    """``text`` as a URL wasmq accepts (a bare ``host:port`` gets ``redis://``), ``None``
    when empty; raises ``ValueError`` saying what is wrong."""
    value = text.strip()
    if not value:
        return None
    if "://" not in value:
        # The reference's .env uses a bare host:port.
        value = "redis://" + value
    kind = scheme(value)
    if kind in SENTINEL_SCHEMES:
        parse_sentinel(value)
        return value
    if kind in CLUSTER_SCHEMES:
        cluster_nodes(value)
        return value
    if kind not in PLAIN_SCHEMES:
        raise ValueError(
            f"unsupported scheme {kind!r} (use redis://, rediss://, unix://, "
            "redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://)"
        )
    parsed = urlparse(value)
    if kind == "unix":
        if not parsed.path:
            raise ValueError("a unix:// URL needs a socket path")
        return value
    if not parsed.hostname:
        raise ValueError("the URL has no host")
    try:
        parsed.port  # noqa: B018 - raises on an out-of-range port
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return value


def _address(text: str) -> tuple[str, int]:
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
    if bracketed:
        host, port = bracketed.group(1), bracketed.group(2)
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, ""
    if not host:
        raise ValueError(f"sentinel address {text!r} has no host")
    if not port:
        return host, SENTINEL_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"sentinel address {text!r} has no valid port")
    return host, int(port)


def parse_sentinel(url: str) -> SentinelTarget:
    """The sentinels, service, db and master credentials of a Sentinel URL."""
    kind, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    addresses = tuple(_address(item.strip()) for item in hosts.split(",") if item.strip())
    if not addresses:
        raise ValueError("a Sentinel URL needs at least one sentinel host:port")
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    parts = [unquote(p) for p in path.split("/") if p]
    service = params.get("service") or (parts[0] if parts else "")
    db_text = params.get("db") or (parts[1] if len(parts) > 1 else "0")
    if not service:
        raise ValueError(
            "a Sentinel URL needs the service name: redis+sentinel://HOST:PORT/SERVICE[/DB]"
        )
    if len(parts) > 2 or not db_text.isdigit():
        raise ValueError(f"{path!r} is not /SERVICE or /SERVICE/DB (a number)")
    return SentinelTarget(
        sentinels=addresses,
        service=service,
        db=int(db_text),
        username=username,
        password=password,
        tls=kind.lower() in TLS_SCHEMES,
    )


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The ``(host, port)`` pairs of a cluster URL; ValueError in one line when bad."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    nodes: list[tuple[str, int]] = []
    for part in netloc.split(","):
        host, _, port = part.strip().rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"cluster node {part!r} is not host:port "
                "(use redis+cluster://host:port,host:port,...)"
            )
        nodes.append((host, int(port)))
    return nodes


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    url = re.sub(r"(://[^/@?]*?:)[^/@?]*@", r"\1***@", url, count=1)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)
