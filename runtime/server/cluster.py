"""Redis Cluster: ``redis+cluster://host:port,host:port,...`` URLs and their client.

A cluster client is redis-py's :class:`redis.cluster.RedisCluster` started from every
node the URL names (any live one is enough). Making one switches the process to the
tagged key layout (:func:`runtime.queue.keys.use_layout`), in which every script call
touches one slot.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from runtime.queue import keys
from runtime.server.urls import cluster_nodes

#: Attempts of a command whose node went away (a failover takes a few seconds): each
#: attempt reloads the slot map, so a promoted replica is found on its own.
CLUSTER_RETRIES = 20


def connect_cluster(url: str, **options: Any) -> redis.Redis:
    """A cluster client for ``url``, typed as the ``redis.Redis`` the rest of wasmq uses:
    wasmq keeps to the commands both serve (every multi-key change is one script call
    in one slot, and pipelines group their commands by slot). Unlike a plain client it
    reads the slot map from a node at once: no node answering raises
    ``redis.RedisClusterException``. Made through
    :func:`runtime.server.connection.client_for`, which adds the TLS settings."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    user, _, password = credentials.partition(":")
    if user or password:
        options.setdefault("username", unquote(user) or None)
        options.setdefault("password", unquote(password) or None)
    if parts.scheme == "rediss+cluster":
        options.setdefault("ssl", True)
    # A caller's retry (a connect probe's: none) stands; the default rides out failovers.
    retry = options.pop("retry", None) or Retry(
        ExponentialBackoff(cap=0.5, base=0.05), CLUSTER_RETRIES
    )
    options.pop("health_check_interval", None)
    nodes = [ClusterNode(host, port) for host, port in cluster_nodes(url)]
    client = RedisCluster(startup_nodes=nodes, retry=retry, **options)
    keys.use_layout("tagged")
    return cast(redis.Redis, client)
