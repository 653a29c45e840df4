"""The subscription planner: what a reconcile of one tenant must do, decided without I/O.

``plan(wanted, existing, records)`` compares the subscriptions the configuration wants with
the ones Graph lists and the ones our registry knows, and answers with a :class:`Plan`:

- each wanted subscription is kept (the first registered Graph subscription with its key;
  renewed when its renewal is due) or created; a creation is a *recreate*, with a backfill of
  what it may have missed, when a registered subscription for the same resource is gone from
  Graph or is being replaced (an orphan or duplicate with its key was deleted, or its
  lifecycle URL changed, which Graph cannot PATCH);
- deleted: an *orphan* (at our notification URL but not in the registry: Graph never returns
  the clientState, so the web could not validate what it sends), a *duplicate* (a second one
  with a kept one's key) and an *unwanted* one (registered, no longer configured).
  Subscriptions pointing elsewhere (another deployment, another tool) are left alone;
- forgotten: registry entries whose subscription Graph no longer lists.

The clock comes in as ``now``; the applier (receiver.graph.subscriptions) executes the plan.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from receiver import clock
from receiver.config.settings import TenantSettings
from receiver.store.registry import SubscriptionRecord

Key = tuple[str, frozenset[str], str, str]
DeleteReason = Literal["orphan", "duplicate", "unwanted"]


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
    def key(self) -> Key:
        # The lifecycle URL belongs to the key: Graph sets lifecycleNotificationUrl only at
        # creation (a PATCH cannot change it), so a subscription whose lifecycle URL is no
        # longer ours is replaced, or Graph would keep calling the old one.
        return (
            norm(self.resource),
            frozenset(self.change_type.split(",")),
            self.notification_url,
            self.lifecycle_url,
        )

    def matches_record(self, record: SubscriptionRecord) -> bool:
        return (
            norm(record.resource) == norm(self.resource)
            and frozenset(record.change_types.split(",")) == self.key[1]
        )


def norm(resource: str) -> str:
    return resource.strip().lstrip("/").lower()


def expiry_of(sub: Mapping[str, Any], fallback: float) -> float:
    """A Graph subscription's ``expirationDateTime`` as a timestamp; ``fallback`` when it is
    missing or not readable (Graph knows best, but a bad answer must not stop a reconcile)."""
    moment = clock.parse(str(sub.get("expirationDateTime", "")))
    return fallback if moment is None else moment.timestamp()


def key_of(sub: Mapping[str, Any]) -> Key:
    """A Graph subscription's key, comparable with :attr:`Wanted.key`."""
    return (
        norm(str(sub.get("resource", ""))),
        frozenset(p.strip() for p in str(sub.get("changeType", "")).split(",")),
        str(sub.get("notificationUrl", "")),
        str(sub.get("lifecycleNotificationUrl") or ""),
    )


@dataclass(frozen=True, slots=True)
class Renewal:
    """When a subscription is renewed: less than a fraction of its lifetime left, give or
    take a stable per-subscription jitter (spreads many renewals), and never less than
    ``floor`` (two reconcile intervals, so a renewal is never missed between two)."""

    fraction: float
    jitter: float
    floor: dt.timedelta

    def margin(self, subscription_id: str, lifetime: dt.timedelta) -> dt.timedelta:
        digest = hashlib.sha256(subscription_id.encode()).digest()
        unit = int.from_bytes(digest[:4], "big") / 0xFFFFFFFF * 2 - 1  # -1 .. 1
        fraction = min(0.9999, max(0.0001, self.fraction + self.jitter * unit))
        return min(lifetime, max(lifetime * fraction, self.floor))

    def due(self, record: SubscriptionRecord, lifetime: dt.timedelta, now: dt.datetime) -> bool:
        left = dt.timedelta(seconds=record.expires_at - now.timestamp())
        return left <= self.margin(record.subscription_id, lifetime)


@dataclass(frozen=True, slots=True)
class Delete:
    subscription_id: str
    reason: DeleteReason
    registered: bool  # its registry entry goes too


@dataclass(frozen=True, slots=True)
class Forget:
    """A registry entry whose subscription Graph no longer lists."""

    subscription_id: str
    stale: bool  # no wanted subscription matches it any more (logged)


@dataclass(frozen=True, slots=True)
class Keep:
    subscription_id: str
    record: SubscriptionRecord  # with Graph's expiry
    refreshed: bool  # the registry's expiry differed from Graph's by over a second: write it
    renew_due: bool


@dataclass(frozen=True, slots=True)
class Create:
    recreate: bool  # ours went missing or is being replaced: backfill the gap


@dataclass(frozen=True, slots=True)
class Plan:
    """In the applier's order: deletes first (Graph refuses a second subscription on the same
    resource with 409), then forgets, then one action per wanted subscription, in its order."""

    deletes: tuple[Delete, ...] = ()
    forget: tuple[Forget, ...] = ()
    actions: tuple[Keep | Create, ...] = ()


def plan(
    wanted: Sequence[Wanted],
    existing: Sequence[Mapping[str, Any]],
    records: Mapping[str, SubscriptionRecord],
    *,
    ours: Collection[str],
    now: dt.datetime,
    renewal: Renewal,
) -> Plan:
    """What one tenant's reconcile does. ``existing``: Graph's subscriptions of the tenant;
    ``records``: the registry's; ``ours``: our notification URLs (what is not at one of
    them and not registered belongs to somebody else)."""
    claimed: set[str] = set()
    deletes: list[Delete] = []
    actions: list[Keep | Create] = []
    for w in wanted:
        kept, dropped = _match(w, existing, records, claimed)
        deletes += dropped
        if kept is not None:
            actions.append(_keep(w, kept, records[str(kept.get("id"))], now, renewal))
        else:
            gone = bool(dropped) or any(w.matches_record(r) for r in records.values())
            actions.append(Create(recreate=gone))
    deletes += _leftovers(existing, claimed, records, ours)
    listed = {str(s.get("id")) for s in existing}
    forget = [
        Forget(sid, stale=not any(w.matches_record(r) for w in wanted))
        for sid, r in records.items()
        if sid not in listed
    ]
    return Plan(tuple(deletes), tuple(forget), tuple(actions))


def _match(
    w: Wanted,
    existing: Sequence[Mapping[str, Any]],
    records: Mapping[str, SubscriptionRecord],
    claimed: set[str],
) -> tuple[Mapping[str, Any] | None, list[Delete]]:
    """The Graph subscription kept for ``w`` (the first registered one with its key) and the
    others with its key, to delete. Claims every one it looked at."""
    kept: Mapping[str, Any] | None = None
    dropped: list[Delete] = []
    for sub in existing:
        sid = str(sub.get("id"))
        if sid in claimed or key_of(sub) != w.key:
            continue
        claimed.add(sid)
        if sid in records and kept is None:
            kept = sub
        else:
            dropped.append(
                Delete(sid, "duplicate" if sid in records else "orphan", registered=sid in records)
            )
    return kept, dropped


def _leftovers(
    existing: Sequence[Mapping[str, Any]],
    claimed: set[str],
    records: Mapping[str, SubscriptionRecord],
    ours: Collection[str],
) -> list[Delete]:
    """Graph subscriptions no wanted one claimed: ours are deleted, foreign ones left."""
    out: list[Delete] = []
    for sub in existing:
        sid = str(sub.get("id"))
        if sid in claimed:
            continue
        if sid in records:
            out.append(Delete(sid, "unwanted", registered=True))
        elif str(sub.get("notificationUrl", "")) in ours:
            out.append(Delete(sid, "orphan", registered=False))
    return out


def _keep(
    w: Wanted,
    sub: Mapping[str, Any],
    record: SubscriptionRecord,
    now: dt.datetime,
    renewal: Renewal,
) -> Keep:
    expires = expiry_of(sub, record.expires_at)
    refreshed = abs(expires - record.expires_at) > 1  # Graph knows best
    if refreshed:
        record = replace(record, expires_at=expires)
    return Keep(record.subscription_id, record, refreshed, renewal.due(record, w.lifetime, now))
