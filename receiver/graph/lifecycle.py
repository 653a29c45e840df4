"""What the supervisor does with Graph's lifecycle events (the web queues them on the
``lifecycle`` stream; receiver.scheduler.lifecycle reads it on the pipeline's Consumer).

``reauthorizationRequired`` -> reauthorize (or renew, when a renewal is due anyway; never both
within 10 minutes), ``subscriptionRemoved`` -> recreate + backfill, ``missed`` -> backfill.
A failure is retried until the ``scheduler.lifecycle_max_attempts``-th attempt, then given up
(logged and counted); an unreadable entry is dropped (logged and counted). A lost lease is
never a failure: it reaches the caller, and the entry waits for the next leader.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from receiver.graph.client import GraphError
from receiver.graph.plan import Wanted
from receiver.graph.writes import REAUTHORIZE_QUIET
from receiver.store.entries import NotificationEntry
from receiver.store.lease import LeaseLost
from receiver.store.registry import SubscriptionRecord

if TYPE_CHECKING:
    from receiver.graph.subscriptions import Supervisor

log = logging.getLogger("receiver.graph.subscriptions")


async def handle_entry(
    sup: Supervisor, entry_id: str, fields: Mapping[bytes, bytes], attempt: int
) -> None:
    """Handle one stream entry on its ``attempt``-th delivery; raise to leave it pending
    for another attempt (a failure before the last one, or a lost lease). Returning means
    done: handled, unreadable (dropped) or given up."""
    try:
        note = NotificationEntry.from_fields(fields)
    except ValueError as exc:
        log.error(
            "lifecycle entry not readable, dropped: %s",
            exc,
            extra={"stream_id": entry_id, "reason": "invalid"},
        )
        sup.metrics.lifecycle.labels("invalid", "dropped").inc()
        return
    event = note.lifecycle_event or "none"
    try:
        outcome = await handle(sup, note)
    except LeaseLost:
        raise
    except Exception as exc:
        limit = sup.settings.scheduler.lifecycle_max_attempts
        extra = {
            "tenant_id": note.tenant_id,
            "subscription_id": note.subscription_id,
            "stream_id": entry_id,
            "attempt": attempt,
        }
        if attempt >= limit:
            log.error(
                "lifecycle event %s given up after %d attempts: %s",
                event,
                attempt,
                exc,
                extra={**extra, "reason": "gave_up"},
            )
            sup.metrics.lifecycle.labels(event, "gave_up").inc()
            return
        log.warning(
            "lifecycle event %s failed (attempt %d of %d): %s",
            event,
            attempt,
            limit,
            exc,
            extra=extra,
        )
        sup.metrics.lifecycle.labels(event, "retry").inc()
        raise
    sup.metrics.lifecycle.labels(event, outcome).inc()


async def handle(sup: Supervisor, entry: NotificationEntry) -> str:
    """Act on one lifecycle event; the outcome for the counter."""
    sid = entry.subscription_id
    raw = cast("dict[bytes, bytes]", await sup.redis.hgetall(sup.keys.subscription(sid)))
    record = SubscriptionRecord.from_hash(sid, raw) if raw else None
    tenant = sup.settings.tenant(record.tenant_id) if record is not None else None
    extra = {"tenant_id": entry.tenant_id, "subscription_id": sid, "reason": entry.lifecycle_event}
    if record is None or tenant is None:
        log.warning("lifecycle event for a subscription we do not own: ignored", extra=extra)
        return "unknown"
    event = entry.lifecycle_event
    now = sup.clock()
    if event == "missed":
        since = now - dt.timedelta(seconds=sup.settings.scheduler.backfill_lookback_s)
        await sup.backfill(tenant.tenant_id, "missed", since, sid, record.resource)
        return "backfill"
    if event == "subscriptionRemoved":
        log.warning("Graph removed the subscription: recreating it", extra=extra)
        with contextlib.suppress(GraphError):  # usually gone already
            await sup.guard.claim(sid, "delete", now)
            await sup.graph.delete(tenant.tenant_id, f"subscriptions/{sid}")
        report = await sup.reconcile_tenant(tenant, reason="subscriptionRemoved")
        if report.errors:
            raise RuntimeError("; ".join(report.failures) or "reconcile failed")
        return "recreated"
    if event == "reauthorizationRequired":
        wanted = next((w for w in sup.wanted(tenant) if w.matches_record(record)), None)
        if wanted is None:
            return "unwanted"
        async with sup.lock(tenant.tenant_id):
            return await _reauthorize(sup, wanted, record, now)
    log.warning("unknown lifecycle event %r: ignored", event, extra=extra)
    return "ignored"


async def _reauthorize(
    sup: Supervisor, w: Wanted, record: SubscriptionRecord, now: dt.datetime
) -> str:
    sid = record.subscription_id
    if sup.due(record, w.lifetime):  # a renewal reauthorizes too: one call, not two
        renewed = await sup.renew(w, record)
        return "renewed" if renewed.subscription_id == sid else "recreated"
    kind, at = await sup.last_touch(sid)
    if (
        kind in ("renew", "reauthorize", "create")
        and at is not None
        and now - at < REAUTHORIZE_QUIET
    ):
        log.info(
            "reauthorization skipped: renewed or reauthorized %s ago",
            now - at,
            extra={"tenant_id": record.tenant_id, "subscription_id": sid},
        )
        return "skipped"
    await sup.guard.claim(sid, "reauthorize", now)
    try:
        await sup.graph.post(record.tenant_id, f"subscriptions/{sid}/reauthorize")
    except GraphError as exc:
        if exc.status != 404:
            sup.metrics.op("reauthorize", "error")
            raise
        await sup.replace_gone(w, record, now)
        return "recreated"
    await sup.record_touch(sid, "reauthorize", now)
    sup.metrics.op("reauthorize")
    log.info(
        "subscription reauthorized", extra={"tenant_id": record.tenant_id, "subscription_id": sid}
    )
    return "reauthorized"
