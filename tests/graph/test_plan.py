"""The subscription planner, case by case: every branch of a tenant's reconcile decided on
small literal inputs (Graph's list, the registry, the wanted specs), no Graph and no Redis."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from receiver import clock
from receiver.config.settings import TenantSettings
from receiver.graph.plan import (
    Create,
    Delete,
    Forget,
    Keep,
    Plan,
    Renewal,
    Wanted,
    plan,
)
from receiver.store.registry import SubscriptionRecord

NOW = dt.datetime(2031, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
URL = "https://receiver.example/graph/notifications"
LIFECYCLE = "https://receiver.example/graph/lifecycle"
ELSEWHERE = "https://other-tool.example/hook"
ALERTS = "security/alerts?$filter=severity eq 'high'"
LOW = "security/alerts?$filter=severity eq 'low'"
DAY = dt.timedelta(days=1)
LIFETIME = 3 * DAY
# Renew with half the lifetime left (no jitter, so the cases stay exact).
RENEWAL = Renewal(fraction=0.5, jitter=0.0, floor=dt.timedelta(minutes=10))
TENANT = TenantSettings(
    name="t0",
    tenant_id="11111111-1111-1111-1111-111111111111",
    client_id="22222222-2222-2222-2222-222222222222",
    client_secret="not-a-real-secret",
)


def want(resource: str = ALERTS, change: str = "updated", lifecycle: str = LIFECYCLE) -> Wanted:
    return Wanted(TENANT, resource, change, URL, lifecycle, LIFETIME)


def sub(
    sid: str,
    resource: str = ALERTS,
    change: str = "updated",
    url: str = URL,
    lifecycle: str | None = LIFECYCLE,
    left: dt.timedelta | None = 2 * DAY,
) -> dict[str, Any]:
    """A subscription as Graph lists it (``left=None``: an unreadable expiry)."""
    out: dict[str, Any] = {
        "id": sid,
        "resource": resource,
        "changeType": change,
        "notificationUrl": url,
        "expirationDateTime": clock.graph(NOW + left) if left is not None else "soon",
    }
    if lifecycle is not None:
        out["lifecycleNotificationUrl"] = lifecycle
    return out


def rec(
    sid: str, resource: str = ALERTS, change: str = "updated", left: dt.timedelta = 2 * DAY
) -> SubscriptionRecord:
    return SubscriptionRecord(
        subscription_id=sid,
        tenant_id=TENANT.tenant_id,
        resource=resource,
        client_state="s",
        change_types=change,
        expires_at=(NOW + left).timestamp(),
    )


def keep(
    sid: str, *, left: dt.timedelta = 2 * DAY, refreshed: bool = False, due: bool = False
) -> Keep:
    return Keep(sid, rec(sid, left=left), refreshed, due)


CASES: list[tuple[str, list[Wanted], list[dict[str, Any]], list[SubscriptionRecord], Plan]] = [
    ("nothing anywhere: create", [want()], [], [], Plan(actions=(Create(recreate=False),))),
    (
        "registered and in Graph, not due: keep",
        [want()],
        [sub("a")],
        [rec("a")],
        Plan(actions=(keep("a"),)),
    ),
    (
        "registered and in Graph, less than half the lifetime left: renew",
        [want()],
        [sub("a", left=DAY)],
        [rec("a", left=DAY)],
        Plan(actions=(keep("a", left=DAY, due=True),)),
    ),
    (
        "registry's expiry off by more than a second: Graph's is taken (and decides the renewal)",
        [want()],
        [sub("a", left=DAY)],
        [rec("a", left=2 * DAY)],
        Plan(actions=(keep("a", left=DAY, refreshed=True, due=True),)),
    ),
    (
        "registry's expiry within a second of Graph's: kept as it is",
        [want()],
        [sub("a")],
        [rec("a", left=2 * DAY + dt.timedelta(milliseconds=900))],
        Plan(actions=(keep("a", left=2 * DAY + dt.timedelta(milliseconds=900)),)),
    ),
    (
        "Graph's expiry unreadable: the registry's stands",
        [want()],
        [sub("a", left=None)],
        [rec("a")],
        Plan(actions=(keep("a"),)),
    ),
    (
        "resource case, slashes and change-type order do not matter",
        [want(resource="/Security/Alerts?$filter=severity eq 'high' ", change="created,updated")],
        [sub("a", change="updated,created")],
        [rec("a", change="created,updated")],
        Plan(actions=(Keep("a", rec("a", change="created,updated"), False, False),)),
    ),
    (
        "at our URL with the wanted key but not registered: orphan deleted, recreated",
        [want()],
        [sub("o")],
        [],
        Plan(deletes=(Delete("o", "orphan", registered=False),), actions=(Create(recreate=True),)),
    ),
    (
        "two registered with the wanted key: the first kept, the second a duplicate",
        [want()],
        [sub("a"), sub("b")],
        [rec("a"), rec("b")],
        Plan(deletes=(Delete("b", "duplicate", registered=True),), actions=(keep("a"),)),
    ),
    (
        "an orphan listed before the registered one: the orphan goes, nothing recreated",
        [want()],
        [sub("o"), sub("a")],
        [rec("a")],
        Plan(deletes=(Delete("o", "orphan", registered=False),), actions=(keep("a"),)),
    ),
    (
        "registered but gone from Graph: forgotten and recreated (backfill)",
        [want()],
        [],
        [rec("a")],
        Plan(forget=(Forget("a", stale=False),), actions=(Create(recreate=True),)),
    ),
    (
        "lifecycle URL changed (Graph cannot PATCH it): the old one deleted, recreated",
        [want(lifecycle=LIFECYCLE + "?moved=1")],
        [sub("a")],
        [rec("a")],
        Plan(deletes=(Delete("a", "unwanted", registered=True),), actions=(Create(recreate=True),)),
    ),
    (
        "created without a lifecycle URL, one wanted now: replaced",
        [want()],
        [sub("a", lifecycle=None)],
        [rec("a")],
        Plan(deletes=(Delete("a", "unwanted", registered=True),), actions=(Create(recreate=True),)),
    ),
    (
        "registered, no longer wanted: deleted",
        [],
        [sub("a")],
        [rec("a")],
        Plan(deletes=(Delete("a", "unwanted", registered=True),)),
    ),
    (
        "registered, no longer wanted, gone from Graph: a stale registry entry",
        [],
        [],
        [rec("a")],
        Plan(forget=(Forget("a", stale=True),)),
    ),
    (
        "not registered, at our URL, not wanted: orphan deleted",
        [],
        [sub("o", resource=LOW)],
        [],
        Plan(deletes=(Delete("o", "orphan", registered=False),)),
    ),
    (
        "someone else's (another URL, not registered): left alone",
        [want()],
        [sub("f", url=ELSEWHERE), sub("g", resource=LOW, url=ELSEWHERE)],
        [],
        Plan(actions=(Create(recreate=False),)),
    ),
    (
        "the same key at another URL is someone else's, ours created beside it",
        [want()],
        [sub("f", url=ELSEWHERE)],
        [rec("a")],
        Plan(forget=(Forget("a", stale=False),), actions=(Create(recreate=True),)),
    ),
    (
        "two wanted: actions in their order, each claims only its own",
        [want(resource=LOW), want()],
        [sub("a"), sub("b", resource=LOW, left=DAY / 2)],
        [rec("a"), rec("b", resource=LOW, left=DAY / 2)],
        Plan(actions=(Keep("b", rec("b", resource=LOW, left=DAY / 2), False, True), keep("a"))),
    ),
    (
        "another change type is another subscription: created, the old one unwanted",
        [want(change="created")],
        [sub("a")],
        [rec("a")],
        Plan(
            deletes=(Delete("a", "unwanted", registered=True),), actions=(Create(recreate=False),)
        ),
    ),
    (
        "deletes in order: the wanted key's first, then the unclaimed",
        [want()],
        [sub("x", resource=LOW), sub("o")],
        [rec("x", resource=LOW)],
        Plan(
            deletes=(
                Delete("o", "orphan", registered=False),
                Delete("x", "unwanted", registered=True),
            ),
            actions=(Create(recreate=True),),
        ),
    ),
]


@pytest.mark.parametrize(
    ("wanted", "existing", "records", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_plan(
    wanted: list[Wanted],
    existing: list[dict[str, Any]],
    records: list[SubscriptionRecord],
    expected: Plan,
) -> None:
    got = plan(
        wanted,
        existing,
        {r.subscription_id: r for r in records},
        ours={URL},
        now=NOW,
        renewal=RENEWAL,
    )
    assert got == expected


@pytest.mark.parametrize(
    ("fraction", "jitter", "floor", "lifetime", "margin"),
    [
        (0.5, 0.0, dt.timedelta(minutes=10), LIFETIME, LIFETIME / 2),
        # never less than the floor (two reconcile intervals) ...
        (0.5, 0.0, dt.timedelta(days=2), LIFETIME, dt.timedelta(days=2)),
        # ... nor more than the whole lifetime
        (0.5, 0.0, dt.timedelta(days=4), LIFETIME, LIFETIME),
    ],
)
def test_renewal_margin(
    fraction: float,
    jitter: float,
    floor: dt.timedelta,
    lifetime: dt.timedelta,
    margin: dt.timedelta,
) -> None:
    assert Renewal(fraction, jitter, floor).margin("a", lifetime) == margin


def test_renewal_jitter_is_stable_per_subscription_and_bounded() -> None:
    renewal = Renewal(0.5, 0.1, dt.timedelta(0))
    margins = {sid: renewal.margin(sid, LIFETIME) for sid in ("a", "b", "c", "d", "e")}
    assert margins == {sid: renewal.margin(sid, LIFETIME) for sid in margins}
    assert all(LIFETIME * 0.4 <= m <= LIFETIME * 0.6 for m in margins.values())
    assert len(set(margins.values())) > 1  # spread, not one moment for all


def test_due_exactly_at_the_margin() -> None:
    record = rec("a", left=LIFETIME / 2)
    assert RENEWAL.due(record, LIFETIME, NOW)
    assert not RENEWAL.due(record, LIFETIME, NOW - dt.timedelta(seconds=1))
