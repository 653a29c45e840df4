"""The Graph writes of the subscription supervisor, each claimed through the lease guard.

Create (with a fresh random clientState, registered the moment Graph answers 201), renew
(PATCH expirationDateTime; a 404 recreates it with a backfill), delete, the backfill request,
and the record of the last create, renew or reauthorize (Graph wants 10 minutes between a
reauthorization and a renewal). The desired state lives here too, as a conflict (409) on
create is cleared only when the other subscription points at one of our URLs.

:class:`receiver.graph.subscriptions.Supervisor` builds the reconcile on these; the lifecycle
handler (receiver.graph.lifecycle) and the operator's commands (receiver.graph.listing) use
them as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from redis.asyncio import Redis

from receiver import clock
from receiver.config.settings import Settings, SubscriptionSpec, TenantSettings
from receiver.graph.client import GraphClient, GraphError
from receiver.graph.metrics import SupervisorMetrics
from receiver.graph.plan import Renewal, Wanted, expiry_of
from receiver.store import registry
from receiver.store.entries import BackfillRequest
from receiver.store.keys import Keys
from receiver.store.lease import TOUCH_TTL_S, Guard, Unfenced
from receiver.store.registry import SubscriptionRecord

log = logging.getLogger("receiver.graph.subscriptions")

Clock = Callable[[], dt.datetime]
# Graph: do not reauthorize and renew the same subscription within 10 minutes.
REAUTHORIZE_QUIET = dt.timedelta(minutes=10)
BACKFILL_MAXLEN = 100_000
CLIENT_STATE_BYTES = 48  # 64 URL-safe characters; Graph allows 128
_CONFLICT_ID = re.compile(r"Subscription Id ([0-9A-Fa-f-]{36})")


def utcnow() -> dt.datetime:
    return clock.now()


@dataclass
class Report:
    """What a reconcile did."""

    created: int = 0
    renewed: int = 0
    deleted: int = 0
    recreated: int = 0
    orphans_deleted: int = 0
    unchanged: int = 0
    errors: int = 0
    backfills: int = 0
    tenants: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, other: Report) -> None:
        for name in (
            "created",
            "renewed",
            "deleted",
            "recreated",
            "orphans_deleted",
            "unchanged",
            "errors",
            "backfills",
            "tenants",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures.extend(other.failures)

    def fail(self, exc: Exception) -> None:
        self.errors += 1
        self.failures.append(str(exc))

    def summary(self) -> str:
        return (
            f"{self.tenants} tenant(s): {self.created} created, {self.renewed} renewed, "
            f"{self.recreated} recreated, {self.deleted} deleted, "
            f"{self.orphans_deleted} orphan(s) deleted, {self.unchanged} unchanged, "
            f"{self.errors} error(s)"
        )


class SubscriptionWrites:
    """Desired state and Graph writes; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        graph: GraphClient,
        redis: Redis,
        *,
        guard: Guard | None = None,
        clock: Clock = utcnow,
        metrics: SupervisorMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.graph = graph
        self.redis = redis
        self.keys = Keys(settings.redis.key_prefix)
        self.guard: Guard = guard if guard is not None else Unfenced(redis, self.keys)
        self.clock = clock
        self.metrics = metrics if metrics is not None else SupervisorMetrics()
        sched = settings.scheduler
        self.renewal = Renewal(
            sched.renewal_fraction,
            sched.renewal_jitter,
            dt.timedelta(seconds=2 * sched.reconcile_interval_s),
        )
        self._locks: dict[str, asyncio.Lock] = {}

    # --- desired state ---------------------------------------------------------------------

    def wanted(self, tenant: TenantSettings) -> list[Wanted]:
        web = self.settings.web
        return [
            self._wanted(tenant, spec, web.notification_url, web.lifecycle_url)
            for spec in tenant.subscriptions
        ]

    @staticmethod
    def _wanted(
        tenant: TenantSettings, spec: SubscriptionSpec, notification_url: str, lifecycle_url: str
    ) -> Wanted:
        return Wanted(
            tenant=tenant,
            resource=spec.resource,
            change_type=",".join(spec.change_types),
            notification_url=spec.notification_url or notification_url,
            lifecycle_url=spec.lifecycle_url or lifecycle_url,
            lifetime=dt.timedelta(minutes=spec.lifetime_minutes),
        )

    def our_urls(self) -> set[str]:
        urls = {self.settings.web.notification_url}
        for tenant in self.settings.tenants:
            urls.update(w.notification_url for w in self.wanted(tenant))
        return urls

    def renewal_margin(self, subscription_id: str, lifetime: dt.timedelta) -> dt.timedelta:
        """Renew when less than this is left (see :class:`receiver.graph.plan.Renewal`)."""
        return self.renewal.margin(subscription_id, lifetime)

    def due(self, record: SubscriptionRecord, lifetime: dt.timedelta) -> bool:
        return self.renewal.due(record, lifetime, self.clock())

    def lock(self, tenant_id: str) -> asyncio.Lock:
        """One reconcile or lifecycle action per tenant at a time."""
        return self._locks.setdefault(tenant_id, asyncio.Lock())

    async def gap_start(self, tenant_id: str, now: dt.datetime) -> dt.datetime:
        """Since when notifications may be missing: the last healthy reconcile, or the
        configured look-back when there was none."""
        lookback = now - dt.timedelta(seconds=self.settings.scheduler.backfill_lookback_s)
        raw = cast("bytes | None", await self.redis.get(self.keys.reconciled(tenant_id)))
        if raw:
            with contextlib.suppress(ValueError):
                return max(lookback, dt.datetime.fromisoformat(raw.decode()))
        return lookback

    # --- Graph operations (each claimed through the guard) ---------------------------------

    async def delete_one(
        self, tenant: TenantSettings, sid: str, why: str, report: Report, *, registered: bool
    ) -> None:
        tid = tenant.tenant_id
        try:
            await self.guard.claim(sid, "delete", self.clock())
            await self.graph.delete(tid, f"subscriptions/{sid}")
        except GraphError as exc:
            if exc.status != 404:
                report.fail(exc)
                self.metrics.op("delete" if why != "orphan" else "orphan_delete", "error")
                log.error(
                    "deleting subscription failed: %s",
                    exc,
                    extra={"tenant_id": tid, "subscription_id": sid, "request_id": exc.request_id},
                )
                return
        if registered:
            await registry.delete(self.redis, self.keys, sid)
        if why == "orphan":
            report.orphans_deleted += 1
            self.metrics.op("orphan_delete")
            log.warning(
                "subscription at our notification URL but not in the registry (lost "
                "registry?): deleted, it will be recreated with a known clientState",
                extra={"tenant_id": tid, "subscription_id": sid, "reason": why},
            )
        else:
            report.deleted += 1
            self.metrics.op("delete")
            log.info(
                "subscription deleted (%s)",
                why,
                extra={"tenant_id": tid, "subscription_id": sid, "reason": why},
            )

    async def create(self, w: Wanted, *, retry_conflict: bool = True) -> SubscriptionRecord:
        tid = w.tenant.tenant_id
        now = self.clock()
        client_state = secrets.token_urlsafe(CLIENT_STATE_BYTES)
        body = {
            "changeType": w.change_type,
            "notificationUrl": w.notification_url,
            "lifecycleNotificationUrl": w.lifecycle_url,
            "resource": w.resource,
            "expirationDateTime": clock.graph(now + w.lifetime),
            "clientState": client_state,
            "latestSupportedTlsVersion": "v1_2",
        }
        await self.guard.check()
        try:
            sub = await self.graph.post(tid, "subscriptions", body)
        except GraphError as exc:
            if exc.status == 409 and retry_conflict and await self._clear_conflict(w, exc):
                return await self.create(w, retry_conflict=False)
            self.metrics.op("create", "conflict" if exc.status == 409 else "error")
            raise
        sid = str(sub["id"])
        record = SubscriptionRecord(
            subscription_id=sid,
            tenant_id=tid,
            resource=w.resource,
            client_state=client_state,
            expires_at=expiry_of(sub, (now + w.lifetime).timestamp()),
            change_types=w.change_type,
            created_at=time.time(),
        )
        # Written at once, lease or not: it is a fact about Graph, and the clientState exists
        # nowhere else. A notification may arrive any moment now.
        await registry.put(self.redis, self.keys, record)
        await self.record_touch(sid, "create", now)
        self.metrics.op("create")
        log.info(
            "subscription created on %s",
            w.resource,
            extra={"tenant_id": tid, "subscription_id": sid},
        )
        return record

    async def record_touch(self, sid: str, kind: str, at: dt.datetime) -> None:
        """Remember the last create, renew or reauthorize (Graph's 10-minute rule)."""
        key = self.keys.subscription_touch(sid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"kind": kind, "at": at.isoformat(), "fence": self.guard.fence})
            pipe.expire(key, TOUCH_TTL_S)
            await pipe.execute()

    async def last_touch(self, sid: str) -> tuple[str, dt.datetime | None]:
        raw = cast(
            "dict[bytes, bytes]", await self.redis.hgetall(self.keys.subscription_touch(sid))
        )
        kind = raw.get(b"kind", b"").decode()
        try:
            return kind, dt.datetime.fromisoformat(raw[b"at"].decode())
        except (KeyError, ValueError):
            return kind, None

    async def _clear_conflict(self, w: Wanted, exc: GraphError) -> bool:
        """Graph has a subscription on this resource already (409): delete it if it points
        at one of our URLs (a create whose answer got lost, or a lost registry)."""
        match = _CONFLICT_ID.search(exc.message)
        if not match:
            return False
        sid = match.group(1)
        tid = w.tenant.tenant_id
        try:
            sub = await self.graph.get(tid, f"subscriptions/{sid}")
        except GraphError:
            return False
        if str(sub.get("notificationUrl", "")) not in self.our_urls():
            log.error(
                "Graph already has a subscription on %s for this app, pointing "
                "elsewhere: left alone, ours not created",
                w.resource,
                extra={"tenant_id": tid, "subscription_id": sid, "reason": "conflict"},
            )
            return False
        await self.guard.claim(sid, "delete", self.clock())
        with contextlib.suppress(GraphError):
            await self.graph.delete(tid, f"subscriptions/{sid}")
        await registry.delete(self.redis, self.keys, sid)
        self.metrics.op("orphan_delete")
        return True

    async def renew(self, w: Wanted, record: SubscriptionRecord) -> SubscriptionRecord:
        """PATCH a new expiry; the record as it is now (another id when Graph no longer had
        the subscription and it was recreated)."""
        tid = record.tenant_id
        sid = record.subscription_id
        now = self.clock()
        await self.guard.claim(sid, "renew", now)
        try:
            sub = await self.graph.patch(
                tid, f"subscriptions/{sid}", {"expirationDateTime": clock.graph(now + w.lifetime)}
            )
        except GraphError as exc:
            if exc.status != 404:
                self.metrics.op("renew", "error")
                raise
            log.warning(
                "renewal found the subscription gone: recreating it",
                extra={"tenant_id": tid, "subscription_id": sid},
            )
            self.metrics.op("renew", "gone")
            new = await self.replace_gone(w, record, now)
            self.metrics.op("recreate")
            return new
        renewed = dataclasses.replace(
            record, expires_at=expiry_of(sub, (now + w.lifetime).timestamp())
        )
        await registry.put(self.redis, self.keys, renewed)
        await self.record_touch(sid, "renew", now)
        self.metrics.op("renew")
        log.info(
            "subscription renewed (fence %d)",
            self.guard.fence,
            extra={"tenant_id": tid, "subscription_id": sid},
        )
        return renewed

    async def replace_gone(
        self, w: Wanted, record: SubscriptionRecord, now: dt.datetime
    ) -> SubscriptionRecord:
        """Graph answered 404 for a registered subscription: forget it, create it again and
        ask for a backfill of the gap since the last healthy reconcile."""
        since = await self.gap_start(record.tenant_id, now)
        await registry.delete(self.redis, self.keys, record.subscription_id)
        new = await self.create(w)
        await self.backfill(record.tenant_id, "recreated", since, new.subscription_id, w.resource)
        return new

    async def backfill(
        self,
        tenant_id: str,
        reason: str,
        since: dt.datetime,
        subscription_id: str = "",
        resource: str = "",
    ) -> None:
        request = BackfillRequest(
            tenant_id=tenant_id,
            reason=reason,
            since=clock.graph(since),
            subscription_id=subscription_id,
            resource=resource,
            requested_at=clock.graph(self.clock()),
        )
        await self.redis.xadd(
            self.keys.backfill_requests,
            request.to_fields(),  # type: ignore[arg-type]
            maxlen=BACKFILL_MAXLEN,
            approximate=True,
        )
        self.metrics.backfills.labels(reason).inc()
        log.info(
            "backfill requested (%s) since %s",
            reason,
            request.since,
            extra={
                "tenant_id": tenant_id,
                "subscription_id": subscription_id or None,
                "reason": reason,
            },
        )
