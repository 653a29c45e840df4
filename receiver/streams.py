"""Redis connection from settings, with a logged retry on connect.

The one place that builds a Redis client, so every role connects the same way.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from receiver.settings import RedisSettings

log = logging.getLogger(__name__)

Redis = aioredis.Redis


def make_redis(settings: RedisSettings) -> Redis:
    """A client for ``settings.url`` (not yet connected)."""
    password = settings.password.get_secret_value() if settings.password else None
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


async def connect(settings: RedisSettings, *, delay_s: float = 0.5) -> Redis:
    """Connect and PING, retrying ``settings.connect_retries`` times with a logged count."""
    client = make_redis(settings)
    attempt = 0
    while True:
        try:
            await client.ping()
            return client
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            attempt += 1
            if attempt > settings.connect_retries:
                await client.aclose()
                raise
            log.warning("redis not reachable (%s), retry %d of %d", type(exc).__name__,
                        attempt, settings.connect_retries, extra={"attempt": attempt})
            await asyncio.sleep(min(delay_s * 2 ** (attempt - 1), 5.0))
