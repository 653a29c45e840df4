"""The alert -> ticket mapping in Redis and the per-alert lock ticket sinks create under.

A ticket sink (Jira, ServiceNow) does, for one alert, under :meth:`RedisTicketStore.lock`:
look the ticket up (:meth:`get`), else search the vendor for one a timed-out create may have
made, else create; then :meth:`put`. The lock is a Redis lock with a random token and a TTL
(``redis.asyncio.lock.Lock``): only its owner can release it, and a crashed worker's lock lapses
after the TTL. Waiting longer than ``wait_s`` for it raises RetryableError, so the deliver stage
tries again later instead of blocking a worker.

Keys: ``keys.ticket(sink, tenant, alert)`` (string, no TTL) and ``keys.ticket_lock(...)``
(TTL: ``lock_ttl_s``). :class:`RedisSlackMessageStore` is the same for the Slack app sink's
parent message per channel and alert (``keys.slack_message``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from receiver.sinks.base import RetryableError
from receiver.store.keys import Keys

__all__ = ["RedisSlackMessageStore", "RedisTicketStore"]

log = logging.getLogger(__name__)

DEFAULT_LOCK_TTL_S = 120.0
DEFAULT_LOCK_WAIT_S = 30.0
DEFAULT_LOCK_POLL_S = 0.01


class RedisTicketStore:
    """:class:`receiver.sinks.base.TicketStore` on Redis."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        lock_ttl_s: float = DEFAULT_LOCK_TTL_S,
        lock_wait_s: float = DEFAULT_LOCK_WAIT_S,
        lock_poll_s: float = DEFAULT_LOCK_POLL_S,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.lock_ttl_s = lock_ttl_s
        self.lock_wait_s = lock_wait_s
        self.lock_poll_s = lock_poll_s

    def _key(self, sink: str, tenant_id: str, alert_id: str) -> str:
        return self.keys.ticket(sink, tenant_id, alert_id)

    def _lock_key(self, sink: str, tenant_id: str, alert_id: str) -> str:
        return self.keys.ticket_lock(sink, tenant_id, alert_id)

    async def get(self, sink: str, tenant_id: str, alert_id: str) -> str | None:
        try:
            value = await self.redis.get(self._key(sink, tenant_id, alert_id))
        except RedisError as exc:
            raise RetryableError(f"ticket store unavailable: {type(exc).__name__}") from None
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def put(self, sink: str, tenant_id: str, alert_id: str, ticket_id: str) -> None:
        try:
            await self.redis.set(self._key(sink, tenant_id, alert_id), ticket_id)
        except RedisError as exc:
            raise RetryableError(f"ticket store unavailable: {type(exc).__name__}") from None

    @contextlib.asynccontextmanager
    async def lock(self, sink: str, tenant_id: str, alert_id: str) -> AsyncIterator[None]:
        name = self._lock_key(sink, tenant_id, alert_id)
        lock = Lock(
            self.redis,
            name,
            timeout=self.lock_ttl_s,
            sleep=self.lock_poll_s,
            blocking=True,
            blocking_timeout=self.lock_wait_s,
            thread_local=False,
        )
        try:
            acquired = await lock.acquire()
        except RedisError as exc:
            raise RetryableError(f"ticket store unavailable: {type(exc).__name__}") from None
        if not acquired:
            raise RetryableError(
                f"ticket lock for alert {alert_id} busy for "
                f"{self.lock_wait_s:g}s (another worker holds it)"
            )
        try:
            yield
        finally:
            try:
                await lock.release()
            except LockError:
                # The TTL ran out while we worked: someone else may have taken it since.
                log.warning(
                    "ticket lock for alert %s expired before release (TTL %gs)",
                    alert_id,
                    self.lock_ttl_s,
                    extra={"sink": sink, "tenant_id": tenant_id, "alert_id": alert_id},
                )
            except RedisError as exc:
                log.warning(
                    "ticket lock for alert %s not released: %s (it lapses in %gs)",
                    alert_id,
                    type(exc).__name__,
                    self.lock_ttl_s,
                    extra={"sink": sink, "tenant_id": tenant_id, "alert_id": alert_id},
                )


class RedisSlackMessageStore(RedisTicketStore):
    """The same store and lock for the Slack app sink's parent messages, keyed per channel
    (``keys.slack_message``): its ``sink`` argument is the channel."""

    def _key(self, sink: str, tenant_id: str, alert_id: str) -> str:
        return self.keys.slack_message(sink, tenant_id, alert_id)

    def _lock_key(self, sink: str, tenant_id: str, alert_id: str) -> str:
        return self.keys.slack_message_lock(sink, tenant_id, alert_id)
