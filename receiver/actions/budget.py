"""What a confirmation page may cost: its own small Graph budget and a short-lived alert read.

A GET of an action link reads the alert from Graph to show it. Graph allows 150 ``/security``
requests a minute per app and tenant, and the pipeline needs them; four clients looping on one
link once filled the shared per-tenant limiter in 2.3 s and held a new alert back 30 s (issue
15, 4). So, before any Graph call:

- each link may be shown ``LINK_VIEWS`` times and each client address ``CLIENT_VIEWS`` times a
  minute (link previews, mail scanners and a person need a handful); past that the page
  answers 429 without touching Graph;
- a read is kept ``CACHE_TTL_S`` seconds in the process (found or not found), so repeated
  views of one alert cost one Graph call;
- the reads that do reach Graph for pages are capped per tenant at ``TENANT_READS`` a minute
  (a tenth of Graph's limit), counted in Redis so every web process shares the cap. The
  pipeline keeps the other nine tenths whatever the pages are asked.

Counters are fixed one-minute windows in Redis (``SET NX EX`` then ``INCR``, one round trip),
under :meth:`receiver.store.keys.Keys.rate_limit` names. The client address is the one uvicorn
reports (behind a proxy, set ``FORWARDED_ALLOW_IPS`` so it is the browser's, not the proxy's).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from receiver.store.keys import Keys

__all__ = ["NOT_FOUND", "AlertCache", "PageBudget"]

LINK_VIEWS = 10  # per link per minute
CLIENT_VIEWS = 60  # per client address per minute
TENANT_READS = 15  # Graph reads for pages per tenant per minute (Graph allows 150)
WINDOW_S = 60
CACHE_TTL_S = 15.0
CACHE_MAX = 512

NOT_FOUND: dict[str, Any] = {}  # the cached answer "no such alert" (compared by identity)


class PageBudget:
    """The per-link, per-client and per-tenant counters of confirmation pages."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        link_views: int = LINK_VIEWS,
        client_views: int = CLIENT_VIEWS,
        tenant_reads: int = TENANT_READS,
        window_s: int = WINDOW_S,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.link_views = link_views
        self.client_views = client_views
        self.tenant_reads = tenant_reads
        self.window_s = window_s

    async def _count(self, *keys: str) -> list[int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, 0, ex=self.window_s, nx=True)
                pipe.incr(key)
            results = await pipe.execute()
        return [int(n) for n in results[1::2]]

    async def admit(self, tenant_id: str, nonce: str, client: str) -> bool:
        """Count one page view of the link from the client; False when either is over."""
        link, by_client = await self._count(
            self._keys.rate_limit(tenant_id, f"action_link.{nonce}"),
            self._keys.rate_limit(tenant_id, f"action_client.{client or '-'}"),
        )
        return link <= self.link_views and by_client <= self.client_views

    async def spend_read(self, tenant_id: str) -> bool:
        """Count one Graph read for a page in the tenant; False when the cap is reached."""
        [reads] = await self._count(self._keys.rate_limit(tenant_id, "action_reads"))
        return reads <= self.tenant_reads


class AlertCache:
    """Alert reads for pages, kept ``ttl_s`` seconds (bounded, oldest out first)."""

    def __init__(
        self,
        ttl_s: float = CACHE_TTL_S,
        max_entries: int = CACHE_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[tuple[str, str, str], tuple[float, dict[str, Any]]] = OrderedDict()

    def get(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        """The alert (or :data:`NOT_FOUND`), or None when not cached or too old."""
        hit = self._items.get(key)
        if hit is None:
            return None
        if self._clock() - hit[0] >= self.ttl_s:
            del self._items[key]
            return None
        return hit[1]

    def put(self, key: tuple[str, str, str], alert: dict[str, Any]) -> None:
        self._items.pop(key, None)
        self._items[key] = (self._clock(), alert)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def forget(self, key: tuple[str, str, str]) -> None:
        self._items.pop(key, None)
