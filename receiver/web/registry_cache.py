"""The web's in-memory copy of the subscription registry.

The whole registry is held in memory and reloaded only when its version counter changes, so a
notification costs no Redis read, and forged traffic naming unknown subscriptions costs at most
a few version reads per second (never a stream write).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping

from redis.asyncio import Redis

from receiver import registry
from receiver.keys import Keys
from receiver.registry import SubscriptionRecord

log = logging.getLogger(__name__)

DEFAULT_MISS_REFRESH_S = 0.25  # at most this often, a miss re-checks the registry version
DEFAULT_POLL_S = 1.0  # background check of the registry version


class RegistryCache:
    def __init__(self, redis: Redis, keys: Keys, *, miss_refresh_s: float = DEFAULT_MISS_REFRESH_S
                 ) -> None:
        self._redis = redis
        self._keys = keys
        self._records: dict[str, SubscriptionRecord] = {}
        self._version: int | None = None
        self._checked_at = 0.0
        self._miss_refresh_s = miss_refresh_s
        self._refreshing: asyncio.Future[None] | None = None

    @property
    def loaded(self) -> bool:
        return self._version is not None

    def __len__(self) -> int:
        return len(self._records)

    async def refresh(self) -> None:
        """Reload if the registry changed. Concurrent callers share one round trip."""
        if self._refreshing is not None:
            await asyncio.shield(self._refreshing)
            return
        loop = asyncio.get_running_loop()
        self._refreshing = loop.create_future()
        try:
            current = await registry.version(self._redis, self._keys)
            if current != self._version:
                version, records = await registry.load_all(self._redis, self._keys)
                self._records, self._version = records, version
                log.info("subscription registry loaded", extra={"count": len(records)})
            self._checked_at = time.monotonic()
            self._refreshing.set_result(None)
        except BaseException as exc:
            self._refreshing.set_exception(exc)
            self._refreshing.exception()  # mark retrieved: the caller re-raises below
            raise
        finally:
            self._refreshing = None

    def cached(self, ids: Iterable[str]) -> Mapping[str, SubscriptionRecord] | None:
        """The records, or None when one of ``ids`` is unknown and a refresh is due."""
        if not self.loaded:
            return None
        records = self._records
        for i in ids:
            if i not in records:
                if time.monotonic() - self._checked_at >= self._miss_refresh_s:
                    return None
                break
        return records

    async def lookup(self, ids: Iterable[str]) -> Mapping[str, SubscriptionRecord]:
        """The records for ``ids``; refreshes first when one is unknown (rate-limited).

        Raises a Redis error when the registry must be read and Redis does not answer.
        """
        records = self.cached(ids)
        if records is None:
            await self.refresh()
            records = self._records
        return records

    async def run(self, poll_s: float = DEFAULT_POLL_S) -> None:
        """Background task: follow registry changes while the app runs."""
        while True:
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("registry refresh failed: %s", type(exc).__name__)
            await asyncio.sleep(poll_s)
