"""Options that take one of a fixed set, and shell completion of the names users type.

Each set comes from its single source (the enums of :mod:`runtime.queue.task`, the
tuples of :mod:`runtime.settings`...): :func:`choice_option` refuses anything else with
the valid values listed, and completes them. The ``complete_*`` functions read names
from Redis for the shell: quickly, without starting the embedded server, and silently
empty on any failure (a completion must never print an error into the user's prompt).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

import redis
import typer

#: Longest a completion waits for Redis (connect and each reply), in seconds.
COMPLETION_TIMEOUT = 0.5

#: The settings the global options give, as the root context holds them.
_ROOT_SETTINGS = ("redis_url", "state_dir", "module_dir")


def values_of(source: Iterable[Any]) -> tuple[str, ...]:
    """The plain strings of an enum class or a tuple of strings."""
    return tuple(str(v.value) if isinstance(v, Enum) else str(v) for v in source)


def check_choice(
    values: Iterable[Any], *, case_sensitive: bool = False
) -> Callable[[str | None], str | None]:
    """An option callback: the value (lower-cased unless ``case_sensitive``) when it is
    one of ``values``, else a usage error listing them."""
    allowed = values_of(values)

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        given = value if case_sensitive else value.strip().lower()
        if given not in allowed:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}")
        return given

    return check


def complete_values(values: Iterable[Any]) -> Callable[[str], list[str]]:
    """A completion callback over a fixed set."""
    allowed = values_of(values)

    def complete(incomplete: str) -> list[str]:
        return [v for v in allowed if v.startswith(incomplete.lower())]

    return complete


def choice_option(
    default: Any,
    *decls: str,
    values: Iterable[Any],
    help: str,
    case_sensitive: bool = False,
) -> Any:
    """``typer.Option`` for one of ``values``: checked, listed in ``--help``, completed
    (``default`` is ``...`` for a required option)."""
    allowed = values_of(values)
    return typer.Option(
        default,
        *decls,
        help=f"{help} One of: {', '.join(allowed)}.",
        callback=check_choice(allowed, case_sensitive=case_sensitive),
        autocompletion=complete_values(allowed),
    )


def _completion_redis(ctx: typer.Context) -> redis.Redis | None:
    """A client for the server the command line names, or ``None``: the embedded server
    is used only when it already runs (completing must not start it)."""
    from runtime.server import embedded
    from runtime.server.connection import client_for
    from runtime.settings import Settings

    root = ctx.find_root()
    overrides = {k: root.params.get(k) for k in _ROOT_SETTINGS}
    settings = Settings.load({k: v for k, v in overrides.items() if v is not None})
    if settings.redis_url:
        url = settings.redis_url
    else:
        paths = embedded.ServerPaths(settings.state_dir)
        if not paths.socket.exists():
            return None
        url = paths.url
    return client_for(
        url,
        settings,
        socket_timeout=COMPLETION_TIMEOUT,
        socket_connect_timeout=COMPLETION_TIMEOUT,
        retry_on_timeout=False,
    )


def _names(ctx: typer.Context, incomplete: str, read: Callable[[redis.Redis], Any]) -> list[str]:
    try:
        client = _completion_redis(ctx)
        if client is None:
            return []
        try:
            raw = read(client)
        finally:
            client.close()
    except Exception:  # any failure completes nothing, silently
        return []
    names = {n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in raw}
    return sorted(n for n in names if n.startswith(incomplete))


def complete_task_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Registered task names."""
    from runtime.queue import keys

    return _names(ctx, incomplete, lambda r: r.hkeys(keys.registry()))


def complete_queue_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Queues that ever received a task, and the default queue."""
    from runtime.queue import keys

    return _names(ctx, incomplete, lambda r: [*r.smembers(keys.QUEUES), keys.DEFAULT_QUEUE])


def complete_cron_ids(ctx: typer.Context, incomplete: str) -> list[str]:
    """Ids of cron entries."""
    from runtime.scheduling import cron_entries

    return _names(ctx, incomplete, lambda r: [e.id for e in cron_entries.list_entries(r, runs=0)])
