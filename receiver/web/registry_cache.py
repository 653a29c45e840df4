"""The web's in-memory copy of the subscription registry.

The whole registry is held in memory and reloaded when its version counter changes (checked
in the background every second), so a notification for a known subscription costs no Redis
read. An id not in memory is read from Redis directly (a subscription created a moment ago),
and remembered as unknown for a short while, so forged traffic naming made-up subscriptions
costs at most one small read per id and never a stream write.

Two bounds keep forged traffic cheap whatever it names (issue 15, 6): one request reads at most
``MAX_LOOKUPS`` ids from Redis (past that, one registry version check stands in for them: a
burst of new subscriptions shows up there), and the memory of unknown ids is bounded in bytes,
oldest forgotten first. The validator only lets GUID-shaped ids this far.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Iterable, Mapping

from redis.asyncio import Redis

from receiver import backoff
from receiver.store import registry
from receiver.store.keys import Keys
from receiver.store.registry import SubscriptionRecord

log = logging.getLogger(__name__)

DEFAULT_NEGATIVE_TTL_S = 0.5  # an id found unknown is not looked up again for this long
DEFAULT_POLL_S = 1.0  # background check of the registry version
MAX_LOOKUPS = 16  # ids read from Redis for one request, at most
MAX_NEGATIVE_BYTES = 4 * 1024 * 1024  # memory of unknown ids (about 20,000 GUIDs)
_ENTRY_OVERHEAD = 100  # a dict slot and the float beside each id, roughly


class RegistryCache:
    def __init__(
        self, redis: Redis, keys: Keys, *, negative_ttl_s: float = DEFAULT_NEGATIVE_TTL_S
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._records: dict[str, SubscriptionRecord] = {}
        self._version: int | None = None
        self._negative: dict[str, float] = {}  # id -> monotonic time it was found unknown
        self._negative_bytes = 0
        self.max_negative_bytes = MAX_NEGATIVE_BYTES
        self.max_lookups = MAX_LOOKUPS
        self._negative_ttl_s = negative_ttl_s
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
            self._refreshing.set_result(None)
        except BaseException as exc:
            self._refreshing.set_exception(exc)
            self._refreshing.exception()  # mark retrieved: the caller re-raises below
            raise
        finally:
            self._refreshing = None

    def _unknown(self, ids: Iterable[str]) -> list[str]:
        now = time.monotonic()
        out = []
        for i in ids:
            if i not in self._records:
                seen = self._negative.get(i)
                if seen is None or now - seen >= self._negative_ttl_s:
                    out.append(i)
        return out

    def cached(self, ids: Iterable[str]) -> Mapping[str, SubscriptionRecord] | None:
        """The records, or None when Redis must be asked first (see :meth:`lookup`)."""
        if not self.loaded or self._unknown(ids):
            return None
        return self._records

    async def lookup(self, ids: Iterable[str]) -> Mapping[str, SubscriptionRecord]:
        """The records for ``ids``, reading from Redis the ones not in memory (at most
        ``max_lookups`` of them; more than that costs one registry version check instead).

        Raises a Redis error when Redis must be read and does not answer.
        """
        if not self.loaded:
            await self.refresh()
        unknown = self._unknown(ids)
        if len(unknown) > self.max_lookups:
            await self.refresh()
            unknown = self._unknown(unknown)[: self.max_lookups]
        if unknown:
            async with self._redis.pipeline(transaction=False) as pipe:
                for sid in unknown:
                    pipe.hgetall(self._keys.subscription(sid))
                found = await pipe.execute()
            now = time.monotonic()
            for sid, raw in zip(unknown, found, strict=True):
                record = SubscriptionRecord.from_hash(sid, raw) if raw else None
                if record is None:
                    self._remember_unknown(sid, now)
                else:
                    self._records[sid] = record
                    self._forget_unknown(sid)
        return self._records

    @staticmethod
    def _cost(sid: str) -> int:
        return sys.getsizeof(sid) + _ENTRY_OVERHEAD

    def _remember_unknown(self, sid: str, now: float) -> None:
        self._forget_unknown(sid)  # re-added last: the oldest stay first in line
        self._negative[sid] = now
        self._negative_bytes += self._cost(sid)
        while self._negative_bytes > self.max_negative_bytes and self._negative:
            self._forget_unknown(next(iter(self._negative)))

    def _forget_unknown(self, sid: str) -> None:
        if self._negative.pop(sid, None) is not None:
            self._negative_bytes -= self._cost(sid)

    @property
    def negative_bytes(self) -> int:
        """The approximate memory held by the ids remembered as unknown."""
        return self._negative_bytes

    async def run(self, stop: asyncio.Event, poll_s: float = DEFAULT_POLL_S) -> None:
        """Background task: follow registry changes until ``stop`` is set.

        Ends on the event, not only on cancellation: a cancellation that lands inside a
        client library's own timeout handling can be lost, and shutdown must not hang on it.
        """
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("registry refresh failed: %s", type(exc).__name__)
            await backoff.pause(stop, poll_s)
