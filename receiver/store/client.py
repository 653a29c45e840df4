"""Redis connection from settings, with a logged retry on connect.

The one place that builds a Redis client, so every role connects the same way: one Redis
(`redis.url`) or a Redis Cluster (`redis.cluster: true`, the URL naming any one node; the
client discovers the rest and follows MOVED/ASK).

Why the cluster client is typed as :class:`Redis`: every key of a deployment carries the
prefix's hash tag (receiver/store/keys.py), so every command, transaction pipeline, Lua script and
XREADGROUP the product sends touches one slot, and redis-py's async ``RedisCluster`` serves
that same command surface (pipelines with ``transaction=True`` since 6.x, ``EVALSHA`` with
keys of one slot, blocking reads). Rather than widen every signature in the product to a
union or a protocol, the two meet here, in one cast; tests/test_cluster.py runs the whole
pipeline against a real three-master cluster, which is what proves the claim.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterDownError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from receiver import backoff
from receiver.config.settings import RedisSettings

log = logging.getLogger(__name__)

Redis = aioredis.Redis

# Errors that mean "not reachable yet" while connecting (a cluster still electing, a node
# restarting), retried with a logged count; anything else is a configuration error.
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, ClusterDownError, OSError)


def make_redis(settings: RedisSettings) -> Redis:
    """A client for ``settings.url`` (not yet connected): a cluster client when
    ``settings.cluster`` is set."""
    password = settings.password.get_secret_value() if settings.password else None
    if settings.cluster:
        return _cluster(settings, password)
    client: Redis = aioredis.Redis.from_url(
        settings.url,
        password=password,
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
        max_connections=settings.max_connections,
        decode_responses=False,
        health_check_interval=30,
    )
    return client


def _cluster(settings: RedisSettings, password: str | None) -> Redis:
    client = RedisCluster.from_url(
        settings.url,
        password=password,
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
        max_connections=settings.max_connections,  # per node
        decode_responses=False,
        health_check_interval=30,
    )
    return cast(Redis, client)  # see the module docstring


def _transient(exc: BaseException) -> bool:
    """Worth another try: unreachable, or a cluster whose slots are not all served yet (a
    node not in cluster mode is a configuration error, raised at once)."""
    if isinstance(exc, _TRANSIENT) or isinstance(exc.__cause__, _TRANSIENT):
        return True
    return isinstance(exc, RedisClusterException) and "not covered" in str(exc)


def is_cluster(client: Redis) -> bool:
    """True for a client made with ``redis.cluster: true``."""
    return isinstance(client, RedisCluster)


async def connect(settings: RedisSettings, *, delay_s: float = 0.5) -> Redis:
    """Connect and PING, retrying ``settings.connect_retries`` times with a logged count."""
    attempt = 0
    while True:
        client = make_redis(settings)
        try:
            await client.ping()
            return client
        except (*_TRANSIENT, RedisClusterException) as exc:
            await client.aclose()
            attempt += 1
            if not _transient(exc) or attempt > settings.connect_retries:
                raise
            log.warning(
                "redis not reachable (%s), retry %d of %d",
                type(exc).__name__,
                attempt,
                settings.connect_retries,
                extra={"attempt": attempt},
            )
            await asyncio.sleep(backoff.exponential(attempt, delay_s, 5.0))
