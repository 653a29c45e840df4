"""The subscription supervisor: the subscriptions in Graph always match the configuration.

Desired state: every tenant's ``subscriptions`` (resource, change types, lifetime, URLs, which
default to the web's notification and lifecycle URLs). A reconcile per tenant:

- lists what exists in Graph (paged) and matches it to the desired specs by
  (resource, change types, notificationUrl);
- creates what is missing, with a fresh random clientState, and writes the registry the moment
  Graph answers 201 (the web validates notifications against it);
- renews (PATCH expirationDateTime) what expires within the renewal margin: the configured
  fraction of the lifetime, give or take a per-subscription jitter, and never less than two
  reconcile intervals;
- deletes what this deployment owns (in the registry) but no longer wants;
- deletes, then recreates, a subscription that points at our notification URL but is not in
  our registry. Adopting it is impossible: Graph never returns the clientState, so the web
  could not validate a single notification it sends. It is ours from a lost registry (or a
  create whose 201 got lost), so delete + create + backfill is the only way to a working one.
  Subscriptions pointing elsewhere (another deployment, another tool) are left alone;
- requests a backfill from the poller whenever a wanted subscription had gone missing
  (removed by Graph, deleted behind our back, expired): its notifications are lost.

Lifecycle events (from the ``lifecycle`` stream, written by the web) are handled here too:
``reauthorizationRequired`` -> reauthorize (or renew, when a renewal is due anyway; never both
within 10 minutes), ``subscriptionRemoved`` -> recreate + backfill, ``missed`` -> backfill.

Only the scheduler lease holder runs this: every Graph write is claimed through a
:class:`Guard` first, which checks the lease and its fencing token (receiver.store.lease).
The clock is injectable everywhere (tests follow the simulator's virtual clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from receiver import clock
from receiver.config.settings import Settings, SubscriptionSpec, TenantSettings
from receiver.graph.auth import GraphAuthError
from receiver.graph.client import GraphClient, GraphError
from receiver.graph.metrics import SupervisorMetrics
from receiver.store import registry
from receiver.store.entries import BackfillRequest, NotificationEntry
from receiver.store.keys import Keys
from receiver.store.lease import TOUCH_TTL_S, Guard, LeaseLost, Unfenced
from receiver.store.registry import SubscriptionRecord

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
LIFECYCLE_GROUP = "supervisor"
# Graph: do not reauthorize and renew the same subscription within 10 minutes.
REAUTHORIZE_QUIET = dt.timedelta(minutes=10)
BACKFILL_MAXLEN = 100_000
CLIENT_STATE_BYTES = 48  # 64 URL-safe characters; Graph allows 128
_CONFLICT_ID = re.compile(r"Subscription Id ([0-9A-Fa-f-]{36})")
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?$")


def utcnow() -> dt.datetime:
    return clock.now()


def graph_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_graph_time(text: str) -> dt.datetime:
    """Graph's DateTimeOffset (7 fractional digits, ``Z``) as an aware UTC datetime."""
    match = _ISO.match(text.strip())
    if not match:
        raise ValueError(f"not a Graph date-time: {text!r}")
    base, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone in (None, "Z") else zone
    return dt.datetime.fromisoformat(f"{base}.{micro}{zone}").astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class Wanted:
    """One subscription the configuration asks for."""

    tenant: TenantSettings
    resource: str
    change_type: str  # comma-joined, as Graph takes it
    notification_url: str
    lifecycle_url: str
    lifetime: dt.timedelta

    @property
    def key(self) -> tuple[str, frozenset[str], str, str]:
        # The lifecycle URL belongs to the key: Graph sets lifecycleNotificationUrl only at
        # creation (a PATCH cannot change it), so a subscription whose lifecycle URL is no
        # longer ours is replaced, or Graph would keep calling the old one.
        return (_norm(self.resource), frozenset(self.change_type.split(",")),
                self.notification_url, self.lifecycle_url)

    def matches_record(self, record: SubscriptionRecord) -> bool:
        return (_norm(record.resource) == _norm(self.resource)
                and frozenset(record.change_types.split(",")) == self.key[1])


def _norm(resource: str) -> str:
    return resource.strip().lstrip("/").lower()


def _key_of(sub: Mapping[str, Any]) -> tuple[str, frozenset[str], str, str]:
    return (_norm(str(sub.get("resource", ""))),
            frozenset(p.strip() for p in str(sub.get("changeType", "")).split(",")),
            str(sub.get("notificationUrl", "")), str(sub.get("lifecycleNotificationUrl") or ""))


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
        for name in ("created", "renewed", "deleted", "recreated", "orphans_deleted",
                     "unchanged", "errors", "backfills", "tenants"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures.extend(other.failures)

    def summary(self) -> str:
        return (f"{self.tenants} tenant(s): {self.created} created, {self.renewed} renewed, "
                f"{self.recreated} recreated, {self.deleted} deleted, "
                f"{self.orphans_deleted} orphan(s) deleted, {self.unchanged} unchanged, "
                f"{self.errors} error(s)")


@dataclass(frozen=True, slots=True)
class Row:
    """One line of ``receiver subscriptions list``."""

    tenant: str
    resource: str
    subscription_id: str
    expires_in_s: float | None
    state: str  # ok | renew-due | missing | orphan | unwanted | foreign | unregistered


class Supervisor:
    def __init__(self, settings: Settings, graph: GraphClient, redis: Redis, *,
                 guard: Guard | None = None, clock: Clock = utcnow,
                 metrics: SupervisorMetrics | None = None) -> None:
        self.settings = settings
        self.graph = graph
        self.redis = redis
        self.keys = Keys(settings.redis.key_prefix)
        self.guard: Guard = guard if guard is not None else Unfenced(redis, self.keys)
        self.clock = clock
        self.metrics = metrics if metrics is not None else SupervisorMetrics()
        self._locks: dict[str, asyncio.Lock] = {}
        self._group_ready = False

    # --- desired state ---------------------------------------------------------------------

    def wanted(self, tenant: TenantSettings) -> list[Wanted]:
        web = self.settings.web
        return [self._wanted(tenant, spec, web.notification_url, web.lifecycle_url)
                for spec in tenant.subscriptions]

    @staticmethod
    def _wanted(tenant: TenantSettings, spec: SubscriptionSpec, notification_url: str,
                lifecycle_url: str) -> Wanted:
        return Wanted(tenant=tenant, resource=spec.resource,
                      change_type=",".join(spec.change_types),
                      notification_url=spec.notification_url or notification_url,
                      lifecycle_url=spec.lifecycle_url or lifecycle_url,
                      lifetime=dt.timedelta(minutes=spec.lifetime_minutes))

    def our_urls(self) -> set[str]:
        urls = {self.settings.web.notification_url}
        for tenant in self.settings.tenants:
            urls.update(w.notification_url for w in self.wanted(tenant))
        return urls

    def renewal_margin(self, subscription_id: str, lifetime: dt.timedelta) -> dt.timedelta:
        """Renew when less than this is left: a fraction of the lifetime, with a stable
        per-subscription jitter (spreads many renewals), at least two reconcile intervals."""
        sched = self.settings.scheduler
        digest = hashlib.sha256(subscription_id.encode()).digest()
        unit = int.from_bytes(digest[:4], "big") / 0xFFFFFFFF * 2 - 1  # -1 .. 1
        fraction = min(0.9999, max(0.0001, sched.renewal_fraction + sched.renewal_jitter * unit))
        floor = dt.timedelta(seconds=2 * sched.reconcile_interval_s)
        return min(lifetime, max(lifetime * fraction, floor))

    # --- reconcile -------------------------------------------------------------------------

    def _lock(self, tenant_id: str) -> asyncio.Lock:
        return self._locks.setdefault(tenant_id, asyncio.Lock())

    async def reconcile(self, tenants: Sequence[TenantSettings] | None = None) -> Report:
        """One reconcile of every tenant (at most ``graph.tenant_concurrency`` at once)."""
        chosen = list(self.settings.tenants if tenants is None else tenants)
        _, records = await registry.load_all(self.redis, self.keys)
        by_tenant: dict[str, dict[str, SubscriptionRecord]] = {}
        for record in records.values():
            by_tenant.setdefault(record.tenant_id, {})[record.subscription_id] = record
        gate = asyncio.Semaphore(self.settings.graph.tenant_concurrency)
        report = Report()

        async def one(tenant: TenantSettings) -> Report:
            async with gate:
                return await self.reconcile_tenant(tenant, by_tenant.get(tenant.tenant_id, {}))

        # A task group, not gather: the first failure (a lost lease, Redis gone) cancels the
        # other tenants' work at once. Left running, it went on writing -- with the next lease
        # this process took -- beside the next reconcile, and subscriptions were made twice.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(t)) for t in chosen]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        for task in tasks:
            report.add(task.result())
        if tenants is None:
            await self._forget_unknown_tenants(by_tenant)
        await self._export_silence()
        return report

    async def _export_silence(self) -> None:
        """Report subscriptions that stay silent while the poller finds changes (a metric
        and a warning; `receiver status` and /status say it too)."""
        _, records = await registry.load_all(self.redis, self.keys)
        push, poll = await registry.seen(self.redis, self.keys)
        found = {s.record.subscription_id: s for s in registry.silent(
            records, push, poll,
            lambda r: self.settings.silent_after_s(r.tenant_id, r.resource))}
        names = {t.tenant_id: t.name for t in self.settings.tenants}
        for record in records.values():
            silence = found.get(record.subscription_id)
            tenant = names.get(record.tenant_id, record.tenant_id)
            self.metrics.silent_seconds.labels(tenant, record.resource).set(
                silence.silent_s if silence else 0.0)
            if silence:
                log.warning("subscription on %s has delivered nothing for %.0f min while "
                            "polling found changes in the tenant", record.resource,
                            silence.silent_s / 60,
                            extra={"tenant_id": record.tenant_id,
                                   "subscription_id": record.subscription_id})

    async def _forget_unknown_tenants(self, by_tenant: dict[str, dict[str, SubscriptionRecord]]
                                      ) -> None:
        known = self.settings.allowed_tenant_ids
        for tenant_id, records in by_tenant.items():
            if tenant_id in known:
                continue
            for sid in records:  # no credential for it any more: it stops being ours
                await self.guard.check()
                await registry.delete(self.redis, self.keys, sid)
                log.warning("tenant no longer configured: subscription dropped from the "
                            "registry (delete it in Graph by hand)",
                            extra={"tenant_id": tenant_id, "subscription_id": sid})

    async def _tenant_records(self, tenant_id: str) -> dict[str, SubscriptionRecord]:
        _, records = await registry.load_all(self.redis, self.keys)
        return {sid: r for sid, r in records.items() if r.tenant_id == tenant_id}

    async def reconcile_tenant(self, tenant: TenantSettings,
                               records: dict[str, SubscriptionRecord] | None = None, *,
                               reason: str = "recreated") -> Report:
        async with self._lock(tenant.tenant_id):
            if records is None:
                records = await self._tenant_records(tenant.tenant_id)
            report = Report(tenants=1)
            try:
                await self._reconcile(tenant, dict(records), report, reason)
            except GraphError as exc:  # listing failed: nothing else can be decided
                report.errors += 1
                report.failures.append(str(exc))
                log.error("reconcile failed: %s", exc, extra={"tenant_id": tenant.tenant_id,
                                                              "request_id": exc.request_id})
            except GraphAuthError as exc:
                report.errors += 1
                report.failures.append(str(exc))
                log.error("reconcile failed: %s", exc, extra={"tenant_id": tenant.tenant_id})
            self.metrics.reconciles.labels("error" if report.errors else "ok").inc()
            if not report.errors:
                await self.redis.set(self.keys.reconciled(tenant.tenant_id),
                                     self.clock().isoformat())
            return report

    async def _reconcile(self, tenant: TenantSettings, records: dict[str, SubscriptionRecord],
                         report: Report, reason: str) -> None:
        tid = tenant.tenant_id
        existing = [s async for s in self.graph.pages(tid, "subscriptions")]
        existing_ids = {str(s.get("id")) for s in existing}
        wanted = self.wanted(tenant)
        ours = self.our_urls()
        keep: dict[int, dict[str, Any]] = {}  # index of wanted -> its Graph subscription
        to_delete: list[tuple[dict[str, Any], str]] = []  # (subscription, why)
        gap: set[int] = set()  # wanted indexes whose subscription had gone missing
        claimed: set[str] = set()
        for i, w in enumerate(wanted):
            for sub in existing:
                sid = str(sub.get("id"))
                if sid in claimed or _key_of(sub) != w.key:
                    continue
                claimed.add(sid)
                if sid in records and i not in keep:
                    keep[i] = sub
                else:
                    to_delete.append((sub, "orphan" if sid not in records else "duplicate"))
                    gap.add(i)
            # Ours for this resource, but gone from Graph or about to be replaced (its URLs
            # changed): a recreate, with a backfill of what it may have missed.
            if i not in keep and any(w.matches_record(r) for r in records.values()):
                gap.add(i)
        for sub in existing:
            sid = str(sub.get("id"))
            if sid in claimed:
                continue
            if sid in records:
                to_delete.append((sub, "unwanted"))
            elif str(sub.get("notificationUrl", "")) in ours:
                to_delete.append((sub, "orphan"))
        # Deletes first: Graph refuses a second subscription on the same resource (409).
        for sub, why in to_delete:
            await self._delete_one(tenant, str(sub["id"]), why, report,
                                   registered=str(sub["id"]) in records)
        for sid, record in records.items():  # registered, gone from Graph, or unwanted
            if sid not in existing_ids:
                await self.guard.check()
                await registry.delete(self.redis, self.keys, sid)
                if not any(w.matches_record(record) for w in wanted):
                    log.info("stale registry entry removed",
                             extra={"tenant_id": tid, "subscription_id": sid})
        now = self.clock()
        since = await self._gap_start(tid, now)
        current: dict[int, SubscriptionRecord] = {}
        for i, w in enumerate(wanted):
            try:
                if i in keep:
                    current[i] = await self._maybe_renew(w, keep[i], records[str(keep[i]["id"])],
                                                         report)
                else:
                    record = current[i] = await self._create(w)
                    if i in gap:
                        report.recreated += 1
                        self.metrics.op("recreate")
                        await self.backfill(tid, reason, since, record.subscription_id,
                                            w.resource)
                        report.backfills += 1
                    else:
                        report.created += 1
            except GraphError as exc:
                report.errors += 1
                report.failures.append(str(exc))
                log.error("subscription %s on %s failed: %s", "renewal" if i in keep
                          else "creation", w.resource, exc,
                          extra={"tenant_id": tid, "request_id": exc.request_id,
                                 "subscription_id": str(keep[i]["id"]) if i in keep else None})
        self._export_expiry(tenant, wanted, current)

    async def _gap_start(self, tenant_id: str, now: dt.datetime) -> dt.datetime:
        """Since when notifications may be missing: the last healthy reconcile, or the
        configured look-back when there was none."""
        lookback = now - dt.timedelta(seconds=self.settings.scheduler.backfill_lookback_s)
        raw = cast("bytes | None", await self.redis.get(self.keys.reconciled(tenant_id)))
        if raw:
            with contextlib.suppress(ValueError):
                return max(lookback, dt.datetime.fromisoformat(raw.decode()))
        return lookback

    def _export_expiry(self, tenant: TenantSettings, wanted: Sequence[Wanted],
                       current: Mapping[int, SubscriptionRecord]) -> None:
        now = self.clock().timestamp()
        for i, w in enumerate(wanted):
            gauge = self.metrics.seconds_to_expiry.labels(tenant.name, w.resource)
            record = current.get(i)
            gauge.set(record.expires_at - now if record is not None else -1.0)

    async def _delete_one(self, tenant: TenantSettings, sid: str, why: str, report: Report, *,
                          registered: bool) -> None:
        tid = tenant.tenant_id
        try:
            await self.guard.claim(sid, "delete", self.clock())
            await self.graph.delete(tid, f"subscriptions/{sid}")
        except GraphError as exc:
            if exc.status != 404:
                report.errors += 1
                report.failures.append(str(exc))
                self.metrics.op("delete" if why != "orphan" else "orphan_delete", "error")
                log.error("deleting subscription failed: %s", exc,
                          extra={"tenant_id": tid, "subscription_id": sid,
                                 "request_id": exc.request_id})
                return
        if registered:
            await registry.delete(self.redis, self.keys, sid)
        if why == "orphan":
            report.orphans_deleted += 1
            self.metrics.op("orphan_delete")
            log.warning("subscription at our notification URL but not in the registry (lost "
                        "registry?): deleted, it will be recreated with a known clientState",
                        extra={"tenant_id": tid, "subscription_id": sid, "reason": why})
        else:
            report.deleted += 1
            self.metrics.op("delete")
            log.info("subscription deleted (%s)", why,
                     extra={"tenant_id": tid, "subscription_id": sid, "reason": why})

    async def _create(self, w: Wanted, *, retry_conflict: bool = True) -> SubscriptionRecord:
        tid = w.tenant.tenant_id
        now = self.clock()
        client_state = secrets.token_urlsafe(CLIENT_STATE_BYTES)
        body = {
            "changeType": w.change_type,
            "notificationUrl": w.notification_url,
            "lifecycleNotificationUrl": w.lifecycle_url,
            "resource": w.resource,
            "expirationDateTime": graph_time(now + w.lifetime),
            "clientState": client_state,
            "latestSupportedTlsVersion": "v1_2",
        }
        await self.guard.check()
        try:
            sub = await self.graph.post(tid, "subscriptions", body)
        except GraphError as exc:
            if exc.status == 409 and retry_conflict and await self._clear_conflict(w, exc):
                return await self._create(w, retry_conflict=False)
            self.metrics.op("create", "conflict" if exc.status == 409 else "error")
            raise
        sid = str(sub["id"])
        try:
            expires = parse_graph_time(str(sub.get("expirationDateTime", ""))).timestamp()
        except ValueError:
            expires = (now + w.lifetime).timestamp()
        record = SubscriptionRecord(subscription_id=sid, tenant_id=tid, resource=w.resource,
                                    client_state=client_state, expires_at=expires,
                                    change_types=w.change_type, created_at=time.time())
        # Written at once, lease or not: it is a fact about Graph, and the clientState exists
        # nowhere else. A notification may arrive any moment now.
        await registry.put(self.redis, self.keys, record)
        await self._record_touch(sid, "create", now)
        self.metrics.op("create")
        log.info("subscription created on %s", w.resource,
                 extra={"tenant_id": tid, "subscription_id": sid})
        return record

    async def _record_touch(self, sid: str, kind: str, at: dt.datetime) -> None:
        key = self.keys.subscription_touch(sid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"kind": kind, "at": at.isoformat(),
                                    "fence": self.guard.fence})
            pipe.expire(key, TOUCH_TTL_S)
            await pipe.execute()

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
            log.error("Graph already has a subscription on %s for this app, pointing "
                      "elsewhere: left alone, ours not created", w.resource,
                      extra={"tenant_id": tid, "subscription_id": sid, "reason": "conflict"})
            return False
        await self.guard.claim(sid, "delete", self.clock())
        with contextlib.suppress(GraphError):
            await self.graph.delete(tid, f"subscriptions/{sid}")
        await registry.delete(self.redis, self.keys, sid)
        self.metrics.op("orphan_delete")
        return True

    async def _touch(self, sid: str) -> tuple[str, dt.datetime | None]:
        raw = cast("dict[bytes, bytes]",
                   await self.redis.hgetall(self.keys.subscription_touch(sid)))
        kind = raw.get(b"kind", b"").decode()
        try:
            return kind, dt.datetime.fromisoformat(raw[b"at"].decode())
        except (KeyError, ValueError):
            return kind, None

    def _due(self, record: SubscriptionRecord, lifetime: dt.timedelta) -> bool:
        left = dt.timedelta(seconds=record.expires_at - self.clock().timestamp())
        return left <= self.renewal_margin(record.subscription_id, lifetime)

    async def _maybe_renew(self, w: Wanted, sub: Mapping[str, Any], record: SubscriptionRecord,
                           report: Report) -> SubscriptionRecord:
        try:
            graph_expiry = parse_graph_time(str(sub.get("expirationDateTime", ""))).timestamp()
        except ValueError:
            graph_expiry = record.expires_at
        if abs(graph_expiry - record.expires_at) > 1:  # Graph knows best
            record = dataclasses.replace(record, expires_at=graph_expiry)
            await registry.put(self.redis, self.keys, record)
        if not self._due(record, w.lifetime):
            report.unchanged += 1
            return record
        kind, at = await self._touch(record.subscription_id)
        now = self.clock()
        left = dt.timedelta(seconds=record.expires_at - now.timestamp())
        if (kind == "reauthorize" and at is not None and now - at < REAUTHORIZE_QUIET
                and left > REAUTHORIZE_QUIET * 2):
            report.unchanged += 1  # reauthorized a moment ago: renew on a later round
            return record
        renewed = await self.renew(w, record)
        if renewed.subscription_id == record.subscription_id:
            report.renewed += 1
        else:
            report.recreated += 1
        return renewed

    async def renew(self, w: Wanted, record: SubscriptionRecord) -> SubscriptionRecord:
        """PATCH a new expiry; the record as it is now (another id when Graph no longer had
        the subscription and it was recreated)."""
        tid = record.tenant_id
        sid = record.subscription_id
        now = self.clock()
        await self.guard.claim(sid, "renew", now)
        try:
            sub = await self.graph.patch(tid, f"subscriptions/{sid}",
                                         {"expirationDateTime": graph_time(now + w.lifetime)})
        except GraphError as exc:
            if exc.status != 404:
                self.metrics.op("renew", "error")
                raise
            log.warning("renewal found the subscription gone: recreating it",
                        extra={"tenant_id": tid, "subscription_id": sid})
            self.metrics.op("renew", "gone")
            since = await self._gap_start(tid, now)
            await registry.delete(self.redis, self.keys, sid)
            new = await self._create(w)
            self.metrics.op("recreate")
            await self.backfill(tid, "recreated", since, new.subscription_id, w.resource)
            return new
        try:
            expires = parse_graph_time(str(sub.get("expirationDateTime", ""))).timestamp()
        except ValueError:
            expires = (now + w.lifetime).timestamp()
        renewed = dataclasses.replace(record, expires_at=expires)
        await registry.put(self.redis, self.keys, renewed)
        await self._record_touch(sid, "renew", now)
        self.metrics.op("renew")
        log.info("subscription renewed (fence %d)", self.guard.fence,
                 extra={"tenant_id": tid, "subscription_id": sid})
        return renewed

    async def backfill(self, tenant_id: str, reason: str, since: dt.datetime,
                       subscription_id: str = "", resource: str = "") -> None:
        request = BackfillRequest(tenant_id=tenant_id, reason=reason, since=graph_time(since),
                                  subscription_id=subscription_id, resource=resource,
                                  requested_at=graph_time(self.clock()))
        await self.redis.xadd(self.keys.backfill_requests, request.to_fields(),  # type: ignore[arg-type]
                              maxlen=BACKFILL_MAXLEN, approximate=True)
        self.metrics.backfills.labels(reason).inc()
        log.info("backfill requested (%s) since %s", reason, request.since,
                 extra={"tenant_id": tenant_id, "subscription_id": subscription_id or None,
                        "reason": reason})

    # --- lifecycle events ------------------------------------------------------------------

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self.redis.xgroup_create(self.keys.lifecycle, LIFECYCLE_GROUP, id="0",
                                           mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def consume_lifecycle(self, consumer: str, *, block_ms: int | None = None,
                                count: int = 100) -> int:
        """Handle what the lifecycle stream holds for the supervisor: entries that failed
        before (or that a dead leader left pending) after ``lifecycle_retry_s``, then new
        ones (waiting up to ``block_ms`` for them). Returns how many were handled."""
        await self._ensure_group()
        stream = self.keys.lifecycle
        retry_ms = int(self.settings.scheduler.lifecycle_retry_s * 1000)
        try:
            claimed = await self.redis.xautoclaim(stream, LIFECYCLE_GROUP, consumer,
                                                  min_idle_time=retry_ms, start_id="0-0",
                                                  count=count)
            entries: list[tuple[bytes, dict[bytes, bytes] | None]] = list(claimed[1])
            fresh = await self.redis.xreadgroup(LIFECYCLE_GROUP, consumer, {stream: ">"},
                                                count=count, block=block_ms or None)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis came back empty (restarted without persistence): make the group again.
            self._group_ready = False
            await self._ensure_group()
            return 0
        streams = cast("list[Any]", fresh or [])
        for _, items in streams:
            entries.extend(items)
        for entry_id, fields in entries:
            await self._handle_entry(entry_id, fields)
        return len(entries)

    async def _ack(self, entry_id: bytes) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.lifecycle, LIFECYCLE_GROUP, entry_id)
            pipe.hdel(self.keys.attempts("lifecycle"), entry_id)
            await pipe.execute()

    async def _handle_entry(self, entry_id: bytes, fields: dict[bytes, bytes] | None) -> None:
        if not fields:  # trimmed away while pending
            await self._ack(entry_id)
            return
        try:
            entry = NotificationEntry.from_fields(fields)
        except ValueError as exc:
            log.error("lifecycle entry not readable, dropped: %s", exc,
                      extra={"stream_id": entry_id.decode(), "reason": "invalid"})
            self.metrics.lifecycle.labels("invalid", "dropped").inc()
            await self._ack(entry_id)
            return
        event = entry.lifecycle_event or "none"
        try:
            outcome = await self.handle_lifecycle(entry)
        except LeaseLost:
            raise  # left pending: the next leader claims it
        except Exception as exc:
            attempts = int(await self.redis.hincrby(self.keys.attempts("lifecycle"),
                                                    entry_id.decode(), 1))
            limit = self.settings.scheduler.lifecycle_max_attempts
            extra = {"tenant_id": entry.tenant_id, "subscription_id": entry.subscription_id,
                     "stream_id": entry_id.decode(), "attempt": attempts}
            if attempts >= limit:
                log.error("lifecycle event %s given up after %d attempts: %s", event,
                          attempts, exc, extra={**extra, "reason": "gave_up"})
                self.metrics.lifecycle.labels(event, "gave_up").inc()
                await self._ack(entry_id)
            else:
                log.warning("lifecycle event %s failed (attempt %d of %d): %s", event,
                            attempts, limit, exc, extra=extra)
                self.metrics.lifecycle.labels(event, "retry").inc()
            return
        self.metrics.lifecycle.labels(event, outcome).inc()
        await self._ack(entry_id)

    async def handle_lifecycle(self, entry: NotificationEntry) -> str:
        """Act on one lifecycle event; the outcome for the counter."""
        sid = entry.subscription_id
        raw = cast("dict[bytes, bytes]", await self.redis.hgetall(self.keys.subscription(sid)))
        record = SubscriptionRecord.from_hash(sid, raw) if raw else None
        tenant = self.settings.tenant(record.tenant_id) if record is not None else None
        extra = {"tenant_id": entry.tenant_id, "subscription_id": sid,
                 "reason": entry.lifecycle_event}
        if record is None or tenant is None:
            log.warning("lifecycle event for a subscription we do not own: ignored", extra=extra)
            return "unknown"
        event = entry.lifecycle_event
        now = self.clock()
        wanted = next((w for w in self.wanted(tenant) if w.matches_record(record)), None)
        if event == "missed":
            since = now - dt.timedelta(seconds=self.settings.scheduler.backfill_lookback_s)
            await self.backfill(tenant.tenant_id, "missed", since, sid, record.resource)
            return "backfill"
        if event == "subscriptionRemoved":
            log.warning("Graph removed the subscription: recreating it", extra=extra)
            with contextlib.suppress(GraphError):  # usually gone already
                await self.guard.claim(sid, "delete", now)
                await self.graph.delete(tenant.tenant_id, f"subscriptions/{sid}")
            report = await self.reconcile_tenant(tenant, reason="subscriptionRemoved")
            if report.errors:
                raise RuntimeError("; ".join(report.failures) or "reconcile failed")
            return "recreated"
        if event == "reauthorizationRequired":
            if wanted is None:
                return "unwanted"
            async with self._lock(tenant.tenant_id):
                return await self._reauthorize(wanted, record, now)
        log.warning("unknown lifecycle event %r: ignored", event, extra=extra)
        return "ignored"

    async def _reauthorize(self, w: Wanted, record: SubscriptionRecord, now: dt.datetime) -> str:
        sid = record.subscription_id
        if self._due(record, w.lifetime):  # a renewal reauthorizes too: one call, not two
            renewed = await self.renew(w, record)
            return "renewed" if renewed.subscription_id == sid else "recreated"
        kind, at = await self._touch(sid)
        if kind in ("renew", "reauthorize", "create") and at is not None \
                and now - at < REAUTHORIZE_QUIET:
            log.info("reauthorization skipped: renewed or reauthorized %s ago", now - at,
                     extra={"tenant_id": record.tenant_id, "subscription_id": sid})
            return "skipped"
        await self.guard.claim(sid, "reauthorize", now)
        try:
            await self.graph.post(record.tenant_id, f"subscriptions/{sid}/reauthorize")
        except GraphError as exc:
            if exc.status != 404:
                self.metrics.op("reauthorize", "error")
                raise
            since = await self._gap_start(record.tenant_id, now)
            await registry.delete(self.redis, self.keys, sid)
            new = await self._create(w)
            await self.backfill(record.tenant_id, "recreated", since, new.subscription_id,
                                w.resource)
            return "recreated"
        await self._record_touch(sid, "reauthorize", now)
        self.metrics.op("reauthorize")
        log.info("subscription reauthorized",
                 extra={"tenant_id": record.tenant_id, "subscription_id": sid})
        return "reauthorized"

    # --- operator commands -----------------------------------------------------------------

    async def rows(self) -> list[Row]:
        _, records = await registry.load_all(self.redis, self.keys)
        ours = self.our_urls()
        now = self.clock().timestamp()
        out: list[Row] = []
        for tenant in self.settings.tenants:
            wanted = self.wanted(tenant)
            existing = [s async for s in self.graph.pages(tenant.tenant_id, "subscriptions")]
            seen: set[int] = set()
            for sub in existing:
                sid = str(sub.get("id"))
                try:
                    left: float | None = parse_graph_time(
                        str(sub.get("expirationDateTime", ""))).timestamp() - now
                except ValueError:
                    left = None
                index = next((i for i, w in enumerate(wanted) if w.key == _key_of(sub)), None)
                if sid in records and index is not None:
                    seen.add(index)
                    due = self._due(records[sid], wanted[index].lifetime)
                    state = "renew-due" if due else "ok"
                elif sid in records:
                    state = "unwanted"
                elif str(sub.get("notificationUrl", "")) in ours:
                    state = "orphan"
                else:
                    state = "foreign"
                out.append(Row(tenant.name, str(sub.get("resource", "")), sid, left, state))
            for i, w in enumerate(wanted):
                if i not in seen:
                    out.append(Row(tenant.name, w.resource, "-", None, "missing"))
        return out

    async def delete(self, subscription_id: str | None = None) -> int:
        """Delete one subscription (by id) or, with None, every one this deployment owns or
        that points at our notification URL. Returns how many were deleted."""
        _, records = await registry.load_all(self.redis, self.keys)
        ours = self.our_urls()
        deleted = 0
        report = Report()
        for tenant in self.settings.tenants:
            existing = [s async for s in self.graph.pages(tenant.tenant_id, "subscriptions")]
            for sub in existing:
                sid = str(sub.get("id"))
                if subscription_id is not None and sid != subscription_id:
                    continue
                if subscription_id is None and sid not in records \
                        and str(sub.get("notificationUrl", "")) not in ours:
                    continue
                await self._delete_one(tenant, sid, "operator", report,
                                       registered=sid in records)
                deleted += 1
        for sid in records:
            if subscription_id in (None, sid):
                await registry.delete(self.redis, self.keys, sid)
        if report.errors:
            raise RuntimeError("; ".join(report.failures))
        return deleted
