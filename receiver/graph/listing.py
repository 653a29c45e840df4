"""The operator's view of the subscriptions (``receiver subscriptions list``) and deletes
(``receiver subscriptions delete``): what Graph holds, beside what we want and own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from receiver import clock
from receiver.graph.plan import Wanted, key_of
from receiver.graph.writes import Report
from receiver.store import registry
from receiver.store.registry import SubscriptionRecord

if TYPE_CHECKING:
    from receiver.graph.subscriptions import Supervisor


@dataclass(frozen=True, slots=True)
class Row:
    """One line of ``receiver subscriptions list``."""

    tenant: str
    resource: str
    subscription_id: str
    expires_in_s: float | None
    state: str  # ok | renew-due | missing | orphan | unwanted | foreign | unregistered


async def rows(sup: Supervisor) -> list[Row]:
    _, records = await registry.load_all(sup.redis, sup.keys)
    ours = sup.our_urls()
    now = sup.clock().timestamp()
    out: list[Row] = []
    for tenant in sup.settings.tenants:
        wanted = sup.wanted(tenant)
        existing = [s async for s in sup.graph.pages(tenant.tenant_id, "subscriptions")]
        seen: set[int] = set()
        for sub in existing:
            sid = str(sub.get("id"))
            left = _left(sub, now)
            index = next((i for i, w in enumerate(wanted) if w.key == key_of(sub)), None)
            if index is not None and sid in records:
                seen.add(index)
            state = _state(sup, sub, index, wanted, records, ours)
            out.append(Row(tenant.name, str(sub.get("resource", "")), sid, left, state))
        out += [
            Row(tenant.name, w.resource, "-", None, "missing")
            for i, w in enumerate(wanted)
            if i not in seen
        ]
    return out


def _left(sub: Mapping[str, Any], now: float) -> float | None:
    moment = clock.parse(str(sub.get("expirationDateTime", "")))
    return None if moment is None else moment.timestamp() - now


def _state(
    sup: Supervisor,
    sub: Mapping[str, Any],
    index: int | None,
    wanted: Sequence[Wanted],
    records: Mapping[str, SubscriptionRecord],
    ours: set[str],
) -> str:
    sid = str(sub.get("id"))
    if sid in records and index is not None:
        return "renew-due" if sup.due(records[sid], wanted[index].lifetime) else "ok"
    if sid in records:
        return "unwanted"
    return "orphan" if str(sub.get("notificationUrl", "")) in ours else "foreign"


async def delete(sup: Supervisor, subscription_id: str | None = None) -> int:
    """Delete one subscription (by id) or, with None, every one this deployment owns or
    that points at our notification URL. Returns how many were deleted."""
    _, records = await registry.load_all(sup.redis, sup.keys)
    ours = sup.our_urls()
    deleted = 0
    report = Report()
    for tenant in sup.settings.tenants:
        existing = [s async for s in sup.graph.pages(tenant.tenant_id, "subscriptions")]
        for sub in existing:
            sid = str(sub.get("id"))
            mine = sid in records or str(sub.get("notificationUrl", "")) in ours
            if sid != subscription_id and (subscription_id is not None or not mine):
                continue
            await sup.delete_one(tenant, sid, "operator", report, registered=sid in records)
            deleted += 1
    for sid in records:
        if subscription_id in (None, sid):
            await registry.delete(sup.redis, sup.keys, sid)
    if report.errors:
        raise RuntimeError("; ".join(report.failures))
    return deleted
