"""Opening the Redis connection every command shares: a URL, or the embedded server.

:func:`client_for` is the one place a client for a configured URL is made, so the URL
forms of :mod:`runtime.server.urls` (Sentinel and Redis Cluster included) and the TLS
settings hold for
producers, workers, the scheduler, the dashboard and the CLI alike. :func:`connect`
adds the embedded server and, for a configured URL, a bounded retry of the first
connection: a service started before its Redis waits for it instead of exiting.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, TryAgainError
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from runtime.errors import ConnectionFailed
from runtime.logging_config import get_logger
from runtime.server import embedded, urls
from runtime.server.cluster import connect_cluster
from runtime.settings import Settings

log = get_logger("connection")

redact = urls.redact

#: Retry budget of the first connection when ``WASMQ_CONNECT_TIMEOUT`` is unset and the
#: caller gave none (one-shot commands, the Python client).
DEFAULT_CONNECT_TIMEOUT = 5.0
#: The same for commands that run until stopped (worker, scheduler, reaper, dashboard).
SERVICE_CONNECT_TIMEOUT = 30.0
#: First pause between connection attempts; it doubles up to the ceiling.
FIRST_WAIT = 0.5
MAX_WAIT = 5.0
#: Sentinels answer from memory: a slow one is skipped for the next.
SENTINEL_TIMEOUT = 2.0

#: Called with the state dir when a connection started a new, empty embedded server.
NewServerHook = Callable[[Path], None]

_TLS_FILES = (
    ("WASMQ_REDIS_TLS_CA", "redis_tls_ca"),
    ("WASMQ_REDIS_TLS_CERT", "redis_tls_cert"),
    ("WASMQ_REDIS_TLS_KEY", "redis_tls_key"),
)


def resolve_url(settings: Settings, on_new_server: NewServerHook | None = None) -> str:
    """The configured URL, or the embedded server's (started if needed)."""
    if settings.redis_url:
        return settings.redis_url
    return embedded.ensure_running(settings.state_dir, on_new_server)


def tls_options(settings: Settings) -> dict[str, Any]:
    """redis-py's ``ssl_*`` options from the TLS settings; a file that cannot be read
    raises :class:`ConnectionFailed` naming its setting."""
    for env, name in _TLS_FILES:
        path = getattr(settings, name)
        if path is None:
            continue
        path = Path(os.path.expanduser(path))
        try:
            path.open("rb").close()
        except OSError as exc:
            raise ConnectionFailed(
                f"cannot read {env}={path} ({exc.strerror or exc}); point it at a readable PEM file"
            ) from None
    options: dict[str, Any] = {"ssl_cert_reqs": settings.redis_tls_verify}
    if settings.redis_tls_verify == "none":
        options["ssl_check_hostname"] = False
    if settings.redis_tls_ca is not None:
        options["ssl_ca_certs"] = os.path.expanduser(settings.redis_tls_ca)
    if settings.redis_tls_cert is not None:
        options["ssl_certfile"] = os.path.expanduser(settings.redis_tls_cert)
    if settings.redis_tls_key is not None:
        options["ssl_keyfile"] = os.path.expanduser(settings.redis_tls_key)
    return options


class ClusterUnreachable(ConnectionFailed):
    """No node of a cluster URL answered while its client was made (a cluster client
    reads the slot map at once); ``reason`` is why, and a later try may succeed."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot reach the Redis Cluster at {redact(url)} ({reason}); check REDIS_URL"
        )
        self.reason = reason


def client_for(url: str, settings: Settings, **options: Any) -> redis.Redis:
    """A client for ``url`` with the Sentinel and TLS settings applied; no I/O happens
    here, except for a Redis Cluster, whose client reads the slot map when made.
    ``options`` are redis-py connection options. Raises :class:`ConnectionFailed` for a
    URL or TLS file it cannot use (:class:`ClusterUnreachable` when no node answered)."""
    tls = tls_options(settings) if urls.is_tls(url) else {}
    try:
        if urls.is_cluster(url):
            return _cluster_client(url, settings, {**tls, **options})
        if not urls.is_sentinel(url):
            client: redis.Redis = redis.Redis.from_url(url, **tls, **options)
            return client
        target = urls.parse_sentinel(url)
    except ValueError as exc:
        raise ConnectionFailed(f"invalid REDIS_URL {redact(url)!r}: {exc}") from None
    if target.tls:
        tls["ssl"] = True
    sentinel_options: dict[str, Any] = {
        "socket_connect_timeout": SENTINEL_TIMEOUT,
        "socket_timeout": SENTINEL_TIMEOUT,
        # One try per sentinel: discovery moves on to the next one itself.
        "retry": Retry(NoBackoff(), 0),
        "password": settings.sentinel_password,
        **tls,
    }
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options)
    master: redis.Redis = sentinel.master_for(
        target.service,
        db=target.db,
        username=target.username,
        password=target.password,
        **tls,
        **options,
    )
    return master


def _cluster_client(url: str, settings: Settings, options: dict[str, Any]) -> redis.Redis:
    try:
        return connect_cluster(url, **options)
    except redis.RedisClusterException as exc:
        # redis-py wraps the last node's error: that one says what went wrong.
        cause = exc.__cause__ or exc
        if isinstance(cause, redis.AuthenticationError):
            raise ConnectionFailed(
                f"Redis at {redact(url)} refused the credentials ({cause}); check REDIS_URL"
            ) from None
        reason = _first_line(cause)
        problem = _tls_problem(reason, url, settings)
        if problem is not None:
            raise ConnectionFailed(problem) from None
        raise ClusterUnreachable(url, reason) from None


def connect(
    settings: Settings,
    *,
    check: bool = True,
    on_new_server: NewServerHook | None = None,
    **options: Any,
) -> redis.Redis:
    """A client for the configured server; raises :class:`ConnectionFailed` in one line.

    With ``check``, a configured URL is tried until ``settings.connect_timeout`` (default
    :data:`DEFAULT_CONNECT_TIMEOUT`) has passed, logging one warning per retry; the
    embedded server is started here, so it is tried once. ``on_new_server`` hears of a
    new, empty embedded server this started (see
    :func:`runtime.server.embedded.ensure_running`)."""
    url = resolve_url(settings, on_new_server)
    options.setdefault("socket_connect_timeout", 5.0)
    options.setdefault("health_check_interval", 0)
    if not settings.redis_url:
        # Fail at once on a dead embedded server (it refuses instantly): callers retry
        # with their own backoff and logging while the pool restarts it, so retries
        # inside redis-py would only hide the outage or delay the reconnect.
        options.setdefault("retry", Retry(NoBackoff(), 0))
    if check and settings.redis_url:
        # Before the client is made: a cluster client needs a live node to be made at all.
        _wait_until_reachable(url, settings)
    client = client_for(url, settings, **options)
    if not check:
        return client
    # With a URL the probe had a client of its own: open this one's first connection
    # now too, so callers start with a warm pool, as with the embedded server.
    try:
        _ping(client, url, settings)
    except _Transient as exc:
        raise _unreachable(url, exc.reason) from None
    return client


class _Transient(Exception):
    """A failure worth another try (refused, timed out, loading, failing over)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _unreachable(url: str, reason: str) -> ConnectionFailed:
    return ConnectionFailed(
        f"cannot reach Redis at {redact(url)} ({reason}); check REDIS_URL, "
        "or unset it to use the embedded server"
    )


def _wait_until_reachable(url: str, settings: Settings) -> None:
    budget = settings.connect_timeout
    budget = DEFAULT_CONNECT_TIMEOUT if budget is None else budget
    deadline = time.monotonic() + budget
    wait = FIRST_WAIT
    attempt = 0
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        probe: redis.Redis | None = None
        try:
            # A probe that does not retry inside redis-py: this loop owns the pacing.
            probe = _probe(
                url,
                settings,
                retry=Retry(NoBackoff(), 0),
                socket_connect_timeout=min(5.0, max(left, 0.5)),
                socket_timeout=5.0,
            )
            _ping(probe, url, settings)
            return
        except _Transient as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _unreachable(url, exc.reason) from None
            pause = min(wait, left)
            log.warning(
                "Redis not reachable yet, retrying",
                attempt=attempt,
                wait=round(pause, 2),
                reason=exc.reason,
                url=redact(url),
            )
            time.sleep(pause)
            wait = min(wait * 2, MAX_WAIT)
        finally:
            if probe is not None:
                probe.close()


def _probe(url: str, settings: Settings, **options: Any) -> redis.Redis:
    """:func:`client_for`; a cluster none of whose nodes answered yet is transient."""
    try:
        return client_for(url, settings, **options)
    except ClusterUnreachable as exc:
        raise _Transient(exc.reason) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, MasterNotFoundError):
        # redis-py appends the repr of every sentinel client it tried.
        found, unreachable, _ = text.partition(" : ")
        return found + (" (no sentinel answered)" if unreachable else "")
    return text.splitlines()[0] if text else type(exc).__name__


def _ping(client: redis.Redis, url: str, settings: Settings) -> None:
    """PING; a failure that retrying cannot fix raises :class:`ConnectionFailed`, one
    that it may raises :class:`_Transient`."""
    try:
        client.ping()
    except redis.RedisClusterException as exc:
        # A cluster whose slot map is incomplete or changing (a failover): try again.
        raise _Transient(_first_line(exc)) from None
    except redis.AuthenticationError as exc:
        raise ConnectionFailed(
            f"Redis at {redact(url)} refused the credentials ({exc}); check REDIS_URL"
        ) from None
    except (redis.RedisError, OSError) as exc:
        reason = _first_line(exc)
        problem = _tls_problem(reason, url, settings)
        if problem is not None:
            raise ConnectionFailed(problem) from None
        if isinstance(exc, redis.ResponseError) and not isinstance(
            exc,
            redis.BusyLoadingError | redis.ReadOnlyError | ClusterDownError | TryAgainError,
        ):
            raise ConnectionFailed(f"Redis at {redact(url)} answered an error: {reason}") from None
        raise _Transient(reason) from None


def _tls_problem(reason: str, url: str, settings: Settings) -> str | None:
    """The one-line error for a TLS failure no retry fixes, or ``None``."""
    if not urls.is_tls(url):
        return None
    lowered = reason.lower()
    where = redact(url)
    if "certificate verify failed" in lowered or "certificate_verify_failed" in lowered:
        ca = settings.redis_tls_ca
        trusted = f"WASMQ_REDIS_TLS_CA={ca}" if ca is not None else "the system's CAs"
        return (
            f"TLS: the certificate of Redis at {where} does not verify against {trusted} "
            f"({reason}); set WASMQ_REDIS_TLS_CA to the CA that signed it"
        )
    if "certificate required" in lowered or "certificate_required" in lowered:
        if settings.redis_tls_cert is None:
            return (
                f"TLS: Redis at {where} requires a client certificate; set "
                "WASMQ_REDIS_TLS_CERT and WASMQ_REDIS_TLS_KEY"
            )
        return (
            f"TLS: Redis at {where} refused the client certificate ({reason}); check "
            "WASMQ_REDIS_TLS_CERT and WASMQ_REDIS_TLS_KEY"
        )
    if "alert unknown ca" in lowered or "alert bad certificate" in lowered:
        return (
            f"TLS: Redis at {where} refused the client certificate ({reason}); check "
            "WASMQ_REDIS_TLS_CERT and WASMQ_REDIS_TLS_KEY"
        )
    return None
