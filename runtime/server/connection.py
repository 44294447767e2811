"""Opening the Redis connection every command shares: a URL, or the embedded server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from runtime.errors import ConnectionFailed
from runtime.server import embedded
from runtime.server.cluster import connect_cluster, is_cluster_url
from runtime.settings import Settings


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = parsed.hostname or ""
    netloc = f"{parsed.username}:***@{netloc}" if parsed.username else f":***@{netloc}"
    if parsed.port:
        netloc += f":{parsed.port}"
    return urlunparse(parsed._replace(netloc=netloc))


#: Called with the state dir when a connection started a new, empty embedded server.
NewServerHook = Callable[[Path], None]


def resolve_url(settings: Settings, on_new_server: NewServerHook | None = None) -> str:
    """The configured URL, or the embedded server's (started if needed)."""
    if settings.redis_url:
        return settings.redis_url
    return embedded.ensure_running(settings.state_dir, on_new_server)


def connect(
    settings: Settings,
    *,
    check: bool = True,
    on_new_server: NewServerHook | None = None,
    **options: Any,
) -> redis.Redis:
    """A client for the configured server; raises :class:`ConnectionFailed` in one line.

    ``on_new_server`` hears of a new, empty embedded server this started (see
    :func:`runtime.server.embedded.ensure_running`)."""
    url = resolve_url(settings, on_new_server)
    options.setdefault("socket_connect_timeout", 5.0)
    options.setdefault("health_check_interval", 0)
    client: redis.Redis
    if not settings.redis_url:
        # Fail at once on a dead embedded server (it refuses instantly): callers retry
        # with their own backoff and logging while the pool restarts it, so retries
        # inside redis-py would only hide the outage or delay the reconnect.
        options.setdefault("retry", Retry(NoBackoff(), 0))
    try:
        if is_cluster_url(url):
            client = connect_cluster(url, **options)
        else:
            client = redis.Redis.from_url(url, **options)
    except redis.RedisClusterException as exc:
        raise ConnectionFailed(
            f"cannot reach the Redis Cluster at {redact(url)} ({exc}); check REDIS_URL"
        ) from None
    except ValueError as exc:
        raise ConnectionFailed(f"invalid REDIS_URL {redact(url)!r}: {exc}") from None
    if check:
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            raise ConnectionFailed(
                f"Redis at {redact(url)} refused the credentials ({exc}); check REDIS_URL"
            ) from None
        except (redis.RedisError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConnectionFailed(
                f"cannot reach Redis at {redact(url)} ({reason}); check REDIS_URL, "
                "or unset it to use the embedded server"
            ) from None
    return client
