"""A per-tenant request limiter shared by every process through Redis.

Graph limits ``/security`` to 150 requests a minute per app per tenant, counted over a sliding
window. The limiter mirrors that: a sliding-window log (one sorted-set member per request,
scored by Redis' own clock, so every process shares one time) checked and appended by one Lua
script. A caller over the limit is told how long until the oldest request leaves the window
and waits that long (plus a little jitter): nothing is dropped, the deployment stays under
Graph's limit instead of finding it by 429s.

A log rather than GCRA: GCRA allows a burst on top of the steady rate, which a sliding window
of the same size does not, so GCRA tuned to never burst would halve the usable rate. The log
costs one member per request in the window (150 per tenant): small.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from receiver.keys import Keys

# KEYS[1] the window's sorted set; ARGV: limit, window (ms), a unique member suffix.
# Returns 0 when the request is counted, else the milliseconds to wait before trying again.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now + 1)
"""

Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """``await limiter.acquire(tenant_id, bucket)`` returns once the request may be sent."""

    def __init__(self, redis: Redis, keys: Keys, limits: dict[str, tuple[int, float]], *,
                 sleep: Sleep = asyncio.sleep) -> None:
        """``limits``: bucket -> (requests, window seconds); other buckets are not limited."""
        self._redis = redis
        self._keys = keys
        self._limits = limits
        self._sleep = sleep
        self._script = redis.register_script(_ACQUIRE)
        self.waited_s = 0.0

    def limited(self, bucket: str | None) -> bool:
        return bucket is not None and bucket in self._limits

    async def acquire(self, tenant_id: str, bucket: str | None) -> None:
        if bucket is None or bucket not in self._limits:
            return
        limit, window_s = self._limits[bucket]
        key = self._keys.rate_limit(tenant_id, bucket)
        while True:
            wait_ms = int(await self._script(keys=[key], args=[limit, int(window_s * 1000),
                                                                 secrets.token_hex(6)]))
            if wait_ms <= 0:
                return
            wait = wait_ms / 1000 + random.uniform(0, 0.02)  # noqa: S311 - jitter
            self.waited_s += wait
            await self._sleep(wait)
