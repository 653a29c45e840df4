"""The subscription supervisor: the subscriptions in Graph always match the configuration.

Desired state: every tenant's ``subscriptions`` (resource, change types, lifetime, URLs, which
default to the web's notification and lifecycle URLs). A reconcile per tenant lists what
exists in Graph (paged), asks the pure planner (receiver.graph.plan) what to do, and applies
the plan here, in its order:

- deletes first (orphans, duplicates, unwanted ones: Graph refuses a second subscription on
  the same resource with 409); an orphan points at our notification URL but is not in our
  registry, and adopting it is impossible (Graph never returns the clientState, so the web
  could not validate a single notification it sends): delete + create + backfill is the only
  way to a working one. Subscriptions pointing elsewhere are left alone;
- registry entries Graph no longer lists are forgotten;
- renews (PATCH expirationDateTime) what expires within the renewal margin (unless it was
  reauthorized a moment ago: Graph wants 10 minutes between the two);
- creates what is missing, with a fresh random clientState, and writes the registry the moment
  Graph answers 201 (the web validates notifications against it); a recreate (ours had gone
  missing or is being replaced) also requests a backfill from the poller: its notifications
  are lost.

Lifecycle events are handled in receiver.graph.lifecycle (read from their stream by
receiver.scheduler.lifecycle), the operator's listing and deletes
in receiver.graph.listing; the Graph writes all three use (create, renew, delete, backfill)
in receiver.graph.writes.

Only the scheduler lease holder runs this: every Graph write is claimed through a
:class:`Guard` first, which checks the lease and its fencing token (receiver.store.lease).
The clock is injectable everywhere (tests follow the simulator's virtual clock).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping, Sequence

from receiver.config.settings import TenantSettings
from receiver.graph import lifecycle, listing
from receiver.graph.auth import GraphAuthError
from receiver.graph.client import GraphError
from receiver.graph.listing import Row
from receiver.graph.plan import Create, Keep, Plan, Wanted, plan
from receiver.graph.writes import REAUTHORIZE_QUIET, Report, SubscriptionWrites, utcnow
from receiver.store import registry
from receiver.store.entries import NotificationEntry
from receiver.store.registry import SubscriptionRecord

__all__ = ["Report", "Row", "Supervisor", "Wanted", "utcnow"]

log = logging.getLogger(__name__)


class Supervisor(SubscriptionWrites):
    """Reconciles every tenant's subscriptions: plan, then apply (see the module docstring)."""

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
        found = {
            s.record.subscription_id: s
            for s in registry.silent(
                records, push, poll, lambda r: self.settings.silent_after_s(r.tenant_id, r.resource)
            )
        }
        names = {t.tenant_id: t.name for t in self.settings.tenants}
        for record in records.values():
            silence = found.get(record.subscription_id)
            tenant = names.get(record.tenant_id, record.tenant_id)
            self.metrics.silent_seconds.labels(tenant, record.resource).set(
                silence.silent_s if silence else 0.0
            )
            if silence:
                log.warning(
                    "subscription on %s has delivered nothing for %.0f min while "
                    "polling found changes in the tenant",
                    record.resource,
                    silence.silent_s / 60,
                    extra={
                        "tenant_id": record.tenant_id,
                        "subscription_id": record.subscription_id,
                    },
                )

    async def _forget_unknown_tenants(
        self, by_tenant: dict[str, dict[str, SubscriptionRecord]]
    ) -> None:
        known = self.settings.allowed_tenant_ids
        for tenant_id, records in by_tenant.items():
            if tenant_id in known:
                continue
            for sid in records:  # no credential for it any more: it stops being ours
                await self.guard.check()
                await registry.delete(self.redis, self.keys, sid)
                log.warning(
                    "tenant no longer configured: subscription dropped from the "
                    "registry (delete it in Graph by hand)",
                    extra={"tenant_id": tenant_id, "subscription_id": sid},
                )

    async def _tenant_records(self, tenant_id: str) -> dict[str, SubscriptionRecord]:
        _, records = await registry.load_all(self.redis, self.keys)
        return {sid: r for sid, r in records.items() if r.tenant_id == tenant_id}

    async def reconcile_tenant(
        self,
        tenant: TenantSettings,
        records: dict[str, SubscriptionRecord] | None = None,
        *,
        reason: str = "recreated",
    ) -> Report:
        async with self.lock(tenant.tenant_id):
            if records is None:
                records = await self._tenant_records(tenant.tenant_id)
            report = Report(tenants=1)
            try:
                existing = [s async for s in self.graph.pages(tenant.tenant_id, "subscriptions")]
                wanted = self.wanted(tenant)
                todo = plan(
                    wanted,
                    existing,
                    records,
                    ours=self.our_urls(),
                    now=self.clock(),
                    renewal=self.renewal,
                )
                await self.apply(tenant, wanted, todo, report, reason)
            except (GraphError, GraphAuthError) as exc:  # listing failed: nothing decided
                report.fail(exc)
                log.error(
                    "reconcile failed: %s",
                    exc,
                    extra={
                        "tenant_id": tenant.tenant_id,
                        "request_id": exc.request_id if isinstance(exc, GraphError) else None,
                    },
                )
            self.metrics.reconciles.labels("error" if report.errors else "ok").inc()
            if not report.errors:
                await self.redis.set(
                    self.keys.reconciled(tenant.tenant_id), self.clock().isoformat()
                )
            return report

    # --- the applier -----------------------------------------------------------------------

    async def apply(
        self,
        tenant: TenantSettings,
        wanted: Sequence[Wanted],
        todo: Plan,
        report: Report,
        reason: str,
    ) -> None:
        """Carry out one tenant's plan in its order: deletes, forgets, then each wanted
        subscription (a failed one is counted and the next one still tried). ``reason``
        goes with the backfill of a recreate."""
        tid = tenant.tenant_id
        for gone in todo.deletes:
            await self.delete_one(
                tenant, gone.subscription_id, gone.reason, report, registered=gone.registered
            )
        for entry in todo.forget:  # registered, gone from Graph
            await self.guard.check()
            await registry.delete(self.redis, self.keys, entry.subscription_id)
            if entry.stale:
                log.info(
                    "stale registry entry removed",
                    extra={"tenant_id": tid, "subscription_id": entry.subscription_id},
                )
        since = await self.gap_start(tid, self.clock())
        current: dict[int, SubscriptionRecord] = {}
        for i, (w, action) in enumerate(zip(wanted, todo.actions, strict=True)):
            try:
                current[i] = await self._carry_out(w, action, report, reason, since)
            except GraphError as exc:
                report.fail(exc)
                kept = action.subscription_id if isinstance(action, Keep) else None
                log.error(
                    "subscription %s on %s failed: %s",
                    "creation" if kept is None else "renewal",
                    w.resource,
                    exc,
                    extra={"tenant_id": tid, "request_id": exc.request_id, "subscription_id": kept},
                )
        self._export_expiry(tenant, wanted, current)

    async def _carry_out(
        self, w: Wanted, action: Keep | Create, report: Report, reason: str, since: dt.datetime
    ) -> SubscriptionRecord:
        if isinstance(action, Keep):
            return await self._maybe_renew(w, action, report)
        record = await self.create(w)
        if not action.recreate:
            report.created += 1
            return record
        report.recreated += 1
        self.metrics.op("recreate")
        await self.backfill(w.tenant.tenant_id, reason, since, record.subscription_id, w.resource)
        report.backfills += 1
        return record

    def _export_expiry(
        self,
        tenant: TenantSettings,
        wanted: Sequence[Wanted],
        current: Mapping[int, SubscriptionRecord],
    ) -> None:
        now = self.clock().timestamp()
        for i, w in enumerate(wanted):
            gauge = self.metrics.seconds_to_expiry.labels(tenant.name, w.resource)
            record = current.get(i)
            gauge.set(record.expires_at - now if record is not None else -1.0)

    async def _maybe_renew(self, w: Wanted, keep: Keep, report: Report) -> SubscriptionRecord:
        record = keep.record
        if keep.refreshed:  # Graph knows best
            await registry.put(self.redis, self.keys, record)
        if not keep.renew_due:
            report.unchanged += 1
            return record
        kind, at = await self.last_touch(record.subscription_id)
        now = self.clock()
        left = dt.timedelta(seconds=record.expires_at - now.timestamp())
        if (
            kind == "reauthorize"
            and at is not None
            and now - at < REAUTHORIZE_QUIET
            and left > REAUTHORIZE_QUIET * 2
        ):
            report.unchanged += 1  # reauthorized a moment ago: renew on a later round
            return record
        renewed = await self.renew(w, record)
        if renewed.subscription_id == record.subscription_id:
            report.renewed += 1
        else:
            report.recreated += 1
        return renewed

    # --- lifecycle events and operator commands (their own modules) ------------------------

    async def handle_lifecycle(self, entry: NotificationEntry) -> str:
        """Act on one lifecycle event; the outcome for the counter."""
        return await lifecycle.handle(self, entry)

    async def rows(self) -> list[Row]:
        return await listing.rows(self)

    async def delete(self, subscription_id: str | None = None) -> int:
        """Delete one subscription (by id) or, with None, every one this deployment owns or
        that points at our notification URL. Returns how many were deleted."""
        return await listing.delete(self, subscription_id)
