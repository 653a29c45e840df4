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

Requests for one tenant and bucket that ask in the same turn of the event loop (the fetch
stage starts a batch of notifications at once) share one call of the script, which grants as
many of them as the window has room for: one Redis round trip instead of one per request.
Nothing is reserved ahead of demand, so no slot of the window is wasted.

The Graph client asks it from :class:`RateLimitedTransport`, a transport around the real one:
every request that leaves, retries and the one after a token refresh included, passes it.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Awaitable, Callable

import httpx
from redis.asyncio import Redis

from receiver.graph.call import GraphCall
from receiver.store.keys import Keys

# KEYS[1] the window's sorted set; ARGV: limit, window (ms), a unique member suffix, requests.
# Counts as many of the requests as the window has room for; returns {granted, wait}: wait
# is the milliseconds until the oldest request leaves the window (0 when all were granted).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local wanted = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local granted = math.max(0, math.min(wanted, limit - redis.call('ZCARD', KEYS[1])))
for i = 1, granted do
  redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3] .. '-' .. i)
end
if granted > 0 then
  redis.call('PEXPIRE', KEYS[1], window + 1000)
end
if granted == wanted then
  return {granted, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {granted, math.max(1, tonumber(oldest[2]) + window - now + 1)}
"""

Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """``await limiter.acquire(tenant_id, bucket)`` returns once the request may be sent."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        limits: dict[str, tuple[int, float]],
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """``limits``: bucket -> (requests, window seconds); other buckets are not limited."""
        self._redis = redis
        self._keys = keys
        self._limits = limits
        self._sleep = sleep
        self._script = redis.register_script(_ACQUIRE)
        self.waited_s = 0.0
        self.round_trips = 0  # script calls made (requests asking together share one)
        self._waiting: dict[tuple[str, str], list[asyncio.Future[float]]] = {}
        self._asking: set[asyncio.Task[None]] = set()

    def limited(self, bucket: str | None) -> bool:
        return bucket is not None and bucket in self._limits

    async def acquire(self, tenant_id: str, bucket: str | None) -> None:
        if bucket is None or bucket not in self._limits:
            return
        loop = asyncio.get_running_loop()
        while True:
            waiter: asyncio.Future[float] = loop.create_future()
            queue = self._waiting.get((tenant_id, bucket))
            if queue is None:  # the first in this turn of the loop asks for everyone
                queue = self._waiting[(tenant_id, bucket)] = []
                task = loop.create_task(self._ask(tenant_id, bucket, queue))
                self._asking.add(task)
                task.add_done_callback(self._asking.discard)
            queue.append(waiter)
            wait_ms = await waiter
            if wait_ms <= 0:
                return
            wait = wait_ms / 1000 + random.uniform(0, 0.02)  # noqa: S311 - jitter
            self.waited_s += wait
            await self._sleep(wait)

    async def _ask(self, tenant_id: str, bucket: str, queue: list[asyncio.Future[float]]) -> None:
        """One script call for every request queued in this turn of the loop."""
        await asyncio.sleep(0)  # let the rest of this turn's requests join the queue
        del self._waiting[(tenant_id, bucket)]
        waiters = [w for w in queue if not w.done()]
        if not waiters:
            return
        limit, window_s = self._limits[bucket]
        try:
            self.round_trips += 1
            granted, wait_ms = await self._script(
                keys=[self._keys.rate_limit(tenant_id, bucket)],
                args=[limit, int(window_s * 1000), secrets.token_hex(6), len(waiters)],
            )
        except asyncio.CancelledError:
            for w in waiters:
                w.cancel()
            raise
        except Exception as exc:  # Redis unavailable: every caller sees it, as before
            for w in waiters:
                if not w.done():
                    w.set_exception(exc)
            return
        for i, w in enumerate(waiters):
            if not w.done():  # a caller cancelled meanwhile wastes its slot (never exceeds)
                w.set_result(0 if i < int(granted) else max(1, int(wait_ms)))


class RateLimitedTransport(httpx.AsyncBaseTransport):
    """The transport under the Graph client: waits for the limiter (the request's tenant and
    bucket, from its :class:`GraphCall`) before handing the request to the real transport.
    Counts what it sends (``sent``: retries and token refreshes included)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, limiter: RateLimiter | None) -> None:
        self.inner = inner
        self.limiter = limiter
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = GraphCall.of(request)
        if self.limiter is not None and call is not None:
            await self.limiter.acquire(call.tenant_id, call.bucket)
        self.sent += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
