"""The poller: what Graph does not push, read with ``lastUpdateDateTime gt <watermark>``.

Graph documents no change notifications for ``security/alerts_v2`` or ``security/incidents``,
and the legacy alerts API is being retired, so these are pulled on a schedule into the same
``notifications`` stream as pushed notifications; the fetch stage's dedup makes an alert seen
both ways one message per change. In a deployment the scheduler's leader decides what is due
and any worker reads it (``receiver.pipeline.poll`` calls :meth:`Poller.read_source` and
stores the watermark itself); :meth:`Poller.poll_all` is the same read as one in-process
round (tests, and a library call).

- One watermark per tenant and source in Redis, advanced only after the items are in the
  stream, and read back with an overlap window: a crash between the two re-reads a little,
  never skips.
- An in-process round reads every tenant's sources at once, at most
  ``scheduler.poll_concurrency`` of them in flight: Graph answers in ~150 ms, so 200
  tenants one after another took a minute per round, six times a 10 s interval. A source
  still being read (a slow tenant) is not started again beside itself, and a failing one is
  logged, counted and retried next round from the same watermark without holding up the
  others. The per-tenant rate limiter sits in the Graph client, under every request (in
  Redis, shared by every process), so concurrency cannot push a tenant past Graph's limit.
- Each entry carries the alert as read (no second GET in the fetch stage).
- Backfills (the supervisor's after ``missed`` or a recreated subscription, and ``receiver
  backfill``) re-read alerts_v2 and incidents first, where every alert is today, then the
  legacy alerts API, which Graph retired on 2026-10-15: its errors are expected and never
  stop a backfill.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis

from receiver import clock as calendar
from receiver.config.settings import Settings, TenantSettings
from receiver.graph.client import GraphError
from receiver.store.entries import BackfillRequest, NotificationEntry
from receiver.store.keys import Keys

log = logging.getLogger(__name__)

PAGE_SIZE = 100
# Graph's $top limits: incidents 50 (documented), alerts 1,000 / 2,000.
PAGE_SIZES = {"security/incidents": 50}
# An incident is read with its alerts (Graph's `$expand=alerts`), so its message can list them.
EXPAND = {"security/incidents": "alerts"}
SOURCES = ("alerts_v2", "incidents")  # the polled sources, as named in PollSettings
Clock = Callable[[], datetime]
# Hands a page of items to the notifications stream: (tenant id, collection path, items).
Queue = Callable[[str, str, list[dict[str, Any]]], Awaitable[None]]


class Pages(Protocol):
    def pages(self, tenant_id: str, path: str, params: dict[str, str] | None = None) -> Any: ...


def entry_fields(
    tenant_id: str, path: str, items: list[dict[str, Any]], source: str = "poll"
) -> list[dict[str, str]]:
    """The ``notifications`` stream entries of polled items, each carrying the item as read
    (no second GET in the fetch stage)."""
    now_ms = int(time.time() * 1000)
    return [
        NotificationEntry(
            tenant_id=tenant_id,
            change_type="updated",
            resource=f"{path}/{item['id']}",
            resource_id=str(item["id"]),
            received_at_ms=now_ms,
            source=source,
            resource_data=json.dumps(item, separators=(",", ":")),
        ).to_fields()
        for item in items
    ]


class Poller:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: Settings,
        graph: Pages,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.graph = graph
        self.clock = clock or calendar.now
        self.items = Counter(
            "receiver_poller_items", "Items the poller queued", ["source"], registry=registry
        )
        self.failures = Counter(
            "receiver_poller_failures", "Failed polls", ["source"], registry=registry
        )
        self.round_seconds = Gauge(
            "receiver_poller_round_seconds",
            "How long the last poll round took (keep it under the poll interval)",
            registry=registry,
        )
        self.legacy_errors = Counter(
            "receiver_poller_legacy_errors",
            "Legacy alerts reads of a backfill Graph refused "
            "(expected since the API's retirement), by HTTP status",
            ["status"],
            registry=registry,
        )
        self._running: set[tuple[str, str]] = set()  # (tenant id, source) being read now

    async def poll_all(self) -> int:
        """One round over every tenant; returns the number of items queued."""
        return await self._round(self.settings.tenants)

    async def poll_tenant(self, tenant: TenantSettings) -> int:
        """One round over one tenant's sources."""
        return await self._round([tenant])

    async def _round(self, tenants: Sequence[TenantSettings]) -> int:
        """Poll each (tenant, source) at most ``scheduler.poll_concurrency`` at once, and
        return when all are done, so the scheduler's one-instance job never starts a round
        beside the last. A failing source (or tenant) does not stop the others: it is logged
        and retried at the next round from the same watermark."""
        started = time.monotonic()
        gate = asyncio.Semaphore(self.settings.scheduler.poll_concurrency)

        async def one(tenant: TenantSettings, source: str) -> int:
            async with gate:
                return await self._poll_one(tenant, source)

        # Cancellation (shutdown) ends every source's read; their watermarks stay put.
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(one(tenant, source))
                for tenant in tenants
                for source in SOURCES
                if getattr(tenant.poll, source)
            ]
        self.round_seconds.set(time.monotonic() - started)
        return sum(task.result() for task in tasks)

    async def _poll_one(self, tenant: TenantSettings, source: str) -> int:
        unit = (tenant.tenant_id, source)
        if unit in self._running:  # an earlier round still reads it: never two at once
            log.info(
                "polling %s skipped: the previous read is still running",
                source,
                extra={"tenant_id": tenant.tenant_id},
            )
            return 0
        self._running.add(unit)
        try:
            return await self._poll(tenant, source)
        except Exception as exc:
            self.failures.labels(source).inc()
            log.warning("polling %s failed: %s", source, exc, extra={"tenant_id": tenant.tenant_id})
            return 0
        finally:
            self._running.discard(unit)

    async def _poll(self, tenant: TenantSettings, source: str) -> int:
        key = self.keys.watermark(tenant.tenant_id, source)
        raw = await self.redis.get(key)
        text = raw.decode() if isinstance(raw, bytes) else raw
        count, moved = await self.read_source(tenant, source, text, self._queue)
        # Only now that every item is in the stream does the watermark move.
        if moved is not None:
            await self.redis.set(key, moved)
        return count

    async def read_source(
        self, tenant: TenantSettings, source: str, watermark_text: str | None, queue: Queue
    ) -> tuple[int, str | None]:
        """Read one source changed since ``watermark_text`` (minus the overlap window), hand
        every item to ``queue``, and return how many, with the watermark to store once they
        are all queued (None: leave it as it is). Storing it is the caller's: the in-process
        round sets it, a poll job sets it in the same script that acknowledges the job."""
        overlap = timedelta(seconds=tenant.poll.overlap_s)
        watermark = calendar.parse(watermark_text) if watermark_text else None
        if watermark is None:
            since = self.clock() - timedelta(seconds=tenant.poll.initial_lookback_s)
        else:
            since = watermark - overlap
        newest = watermark
        count = 0
        async for item in self._changed(
            tenant.tenant_id, f"security/{source}", "lastUpdateDateTime", since, queue
        ):
            updated = calendar.parse(str(item.get("lastUpdateDateTime", "")))
            if updated is not None and (newest is None or updated > newest):
                newest = updated
            count += 1
        self.items.labels(source).inc(count)
        if newest is not None and newest != watermark:
            return count, calendar.graph(newest)
        if watermark is None:
            return count, calendar.graph(self.clock())
        return count, None

    async def _changed(
        self, tenant_id: str, path: str, field: str, since: datetime, queue: Queue | None = None
    ) -> Any:
        """Page through items changed since ``since``, queueing them; yields each queued."""
        queue = queue or self._queue
        size = PAGE_SIZES.get(path, PAGE_SIZE)
        params = {"$filter": f"{field} gt {calendar.graph(since)}", "$top": str(size)}
        if path in EXPAND:
            params["$expand"] = EXPAND[path]
        batch: list[dict[str, Any]] = []
        try:
            async for item in self.graph.pages(tenant_id, path, params):
                if isinstance(item, dict) and item.get("id"):
                    batch.append(item)
                if len(batch) >= size:
                    await queue(tenant_id, path, batch)
                    for queued in batch:
                        yield queued
                    batch = []
        except GraphError:
            # A later page failed (or its link was refused): what was read is queued, and
            # the caller's watermark stays where it was (the error goes on).
            if batch:
                await queue(tenant_id, path, batch)
            raise
        if batch:
            await queue(tenant_id, path, batch)
            for queued in batch:
                yield queued

    async def _queue(self, tenant_id: str, path: str, items: list[dict[str, Any]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for fields in entry_fields(tenant_id, path, items):
                pipe.xadd(self.keys.notifications, fields)  # type: ignore[arg-type]
            await pipe.execute()

    async def backfill(self, request: BackfillRequest) -> int:
        """Re-read a tenant's alerts and incidents changed since the request's time.

        alerts_v2 first (every provider's alerts are there today, whatever the tenant polls),
        then incidents when the tenant polls them, then the legacy alerts API for what a
        legacy subscription may have missed. A legacy error (404 or an empty answer since the
        retirement, 403 without SecurityEvents.*, 400) is logged and counted, never raised.
        An alerts_v2 or incident error is raised once the other sources were read, so the
        request is tried again (the fetch stage's dedup drops what was queued twice)."""
        tenant = self.settings.tenant(request.tenant_id)
        if tenant is None:
            log.warning(
                "backfill for an unknown tenant ignored", extra={"tenant_id": request.tenant_id}
            )
            return 0
        since = calendar.parse(request.since) or (self.clock() - timedelta(hours=1))
        since -= timedelta(seconds=tenant.poll.overlap_s)
        tid = tenant.tenant_id
        count = 0
        failed: Exception | None = None
        for source in ("alerts_v2", *(("incidents",) if tenant.poll.incidents else ())):
            try:
                async for _ in self._changed(
                    tid, f"security/{source}", "lastUpdateDateTime", since
                ):
                    count += 1
            except Exception as exc:
                self.failures.labels(source).inc()
                log.warning("backfill of %s failed: %s", source, exc, extra={"tenant_id": tid})
                failed = failed or exc
        try:
            async for _ in self._changed(tid, "security/alerts", "lastModifiedDateTime", since):
                count += 1
        except GraphError as exc:
            self.legacy_errors.labels(str(exc.status)).inc()
            log.info(
                "backfill: legacy alerts not read (%s); Graph retired that API on "
                "2026-10-15 and alerts_v2 carries its alerts",
                exc,
                extra={"tenant_id": tid},
            )
        self.items.labels("backfill").inc(count)
        log.info(
            "backfill queued %d items (%s)",
            count,
            request.reason,
            extra={"tenant_id": tid, "count": count},
        )
        if failed is not None:
            raise failed
        return count
