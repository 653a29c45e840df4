from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from receiver import clock
from receiver.config.settings import Settings
from receiver.graph.client import GraphClient, client_for
from receiver.graph.metrics import SupervisorMetrics
from receiver.graph.subscriptions import Supervisor
from receiver.scheduler.lifecycle import consume_lifecycle
from receiver.store import registry
from receiver.store.entries import BackfillRequest, NotificationEntry
from receiver.store.keys import Keys
from receiver.store.lease import Lease, LeaseLost
from receiver.web.app import create_app
from tests.fixtures.settings import MakeSettings
from tests.fixtures.simulator import SimulatorHandle
from tests.fixtures.web import free_port, served
from tests.graph.helpers import RESOURCE, sim_settings, tenant_entry

HIGH = "security/alerts?$filter=severity eq 'high'"


@dataclass
class World:
    sim: SimulatorHandle
    settings: Settings
    redis: Redis
    keys: Keys
    graph: GraphClient
    supervisor: Supervisor
    lease: Lease
    offset: list[float]

    def now(self) -> dt.datetime:
        return clock.now() + dt.timedelta(seconds=self.offset[0])

    async def advance(self, **delta: float) -> None:
        answer = await asyncio.to_thread(self.sim.control.advance_clock, **delta)
        # The simulator's offset counts from real time, and so includes the year-ahead run's
        # RECEIVER_CLOCK_OFFSET_S, which clock.now() has already added.
        self.offset[0] = float(answer["offsetSeconds"]) - clock.offset().total_seconds()

    async def sim_subscriptions(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.sim.control.subscriptions)

    async def backfills(self) -> list[BackfillRequest]:
        rows = cast(
            "list[tuple[bytes, dict[bytes, bytes]]]",
            await self.redis.xrange(self.keys.backfill_requests),
        )
        return [BackfillRequest.from_fields(fields) for _, fields in rows]

    async def call(self, tenant: int, method: str, path: str, **kwargs: Any) -> Any:
        """A plain Graph call as another tool would make it (off the loop: the web app
        answering the simulator's handshakes runs on this loop)."""

        def run() -> Any:
            with self.sim.graph(self.sim.tenants[tenant]) as http:
                answer = http.request(method, path, **kwargs)
                assert answer.status_code < 300, answer.text
                return answer.json() if answer.content else None

        return await asyncio.to_thread(run)

    async def lifecycle(self, subscription_id: str, event: str) -> None:
        """The simulator sends the event to the running web app; wait until it is queued."""
        before = await self.redis.xlen(self.keys.lifecycle)
        await asyncio.to_thread(self.sim.control.lifecycle, subscription_id, event)
        for _ in range(500):
            if await self.redis.xlen(self.keys.lifecycle) > before:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"lifecycle event {event} never reached the stream")


def parsed(text: str) -> dt.datetime:
    moment = clock.parse(text)
    assert moment is not None, text
    return moment


def subscriptions_for(i: int) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = [{"resource": RESOURCE}]
    if i == 0:
        specs.append({"resource": HIGH, "change_types": ["created"], "lifetime_minutes": 4320})
    return specs


@pytest.fixture
async def world(
    make_simulator: Callable[..., SimulatorHandle], make_settings: MakeSettings, redis_url: str
) -> AsyncIterator[World]:
    sim = make_simulator(tenants=3)
    port = free_port()
    settings = sim_settings(
        make_settings,
        sim,
        redis_url,
        public_url=f"http://127.0.0.1:{port}",
        tenants=[
            tenant_entry(t, f"t{i}", subscriptions=subscriptions_for(i))
            for i, t in enumerate(sim.tenants)
        ],
        scheduler={"lifecycle_retry_s": 0, "lifecycle_max_attempts": 2},
        graph={"max_retries": 1, "max_retry_wait_s": 1.0},
    )
    redis = Redis.from_url(redis_url)
    keys = Keys(settings.redis.key_prefix)
    lease = Lease(redis, keys, 3600)
    assert await lease.acquire()
    graph = client_for(settings, redis)
    offset = [0.0]
    world = World(
        sim,
        settings,
        redis,
        keys,
        graph,
        Supervisor(
            settings,
            graph,
            redis,
            guard=lease,
            metrics=SupervisorMetrics(),
            clock=lambda: clock.now() + dt.timedelta(seconds=offset[0]),
        ),
        lease,
        offset,
    )
    async with served(create_app(settings), port):
        try:
            yield world
        finally:
            await graph.aclose()
            await redis.aclose()


async def assert_all_alive(w: World, horizon: dt.timedelta) -> dict[tuple[str, str], str]:
    """Every wanted subscription exists once in Graph, outlives ``horizon`` and is registered
    with the clientState Graph holds. Returns (tenant, resource) -> subscription id."""
    subs = await w.sim_subscriptions()
    _, records = await registry.load_all(w.redis, w.keys)
    now = w.now()
    found: dict[tuple[str, str], str] = {}
    for tenant in w.settings.tenants:
        for spec in tenant.subscriptions:
            matches = [
                s
                for s in subs
                if s["tenantId"] == tenant.tenant_id and s["resource"] == spec.resource
            ]
            assert len(matches) == 1, (tenant.name, spec.resource, matches)
            sub = matches[0]
            assert parsed(sub["expirationDateTime"]) > now + horizon, sub
            record = records[sub["id"]]
            assert record.client_state == sub["clientState"]
            assert sub["notificationUrl"] == w.settings.web.notification_url
            assert sub["lifecycleNotificationUrl"] == w.settings.web.lifecycle_url
            found[(tenant.name, spec.resource)] = sub["id"]
    return found


@pytest.mark.slow
async def test_ninety_days_three_tenants_no_lapse_and_every_lifecycle_event(world: World) -> None:
    w = world
    sup = w.supervisor
    first = await sup.reconcile()
    assert (first.created, first.errors) == (4, 0)
    step = dt.timedelta(hours=6)
    ids = await assert_all_alive(w, step)
    t0, t1, t2 = (t.name for t in w.settings.tenants)
    for n in range(1, 361):  # 90 days in 6-hour steps
        await w.advance(hours=6)
        if n == 40:  # day 10: Graph wants a reauthorization
            await w.lifecycle(ids[(t0, RESOURCE)], "reauthorizationRequired")
            assert await consume_lifecycle(sup, "test") == 1
            assert w.sim.control.counters()["subscriptions.reauthorized"] == 1
            # Again at once: within 10 minutes of the last one, nothing is sent.
            await w.lifecycle(ids[(t0, RESOURCE)], "reauthorizationRequired")
            assert await consume_lifecycle(sup, "test") == 1
            assert w.sim.control.counters()["subscriptions.reauthorized"] == 1
        if n == 100:  # day 25: Graph missed notifications for tenant 1
            await w.lifecycle(ids[(t1, RESOURCE)], "missed")
            assert await consume_lifecycle(sup, "test") == 1
            assert [(b.tenant_id, b.reason) for b in await w.backfills()][-1] == (
                w.settings.tenants[1].tenant_id,
                "missed",
            )
        if n == 150:  # day 37.5: Graph removed tenant 2's subscription
            await w.lifecycle(ids[(t2, RESOURCE)], "subscriptionRemoved")
            assert await consume_lifecycle(sup, "test") == 1
            last = (await w.backfills())[-1]
            assert (last.tenant_id, last.reason) == (
                w.settings.tenants[2].tenant_id,
                "subscriptionRemoved",
            )
            assert parsed(last.since) <= w.now()
        if n == 200:  # day 50: somebody deletes tenant 1's subscription behind our back
            await w.call(1, "DELETE", f"/subscriptions/{ids[(t1, RESOURCE)]}")
            before = len(await w.backfills())
            report = await sup.reconcile()
            assert report.recreated == 1
            backfills = await w.backfills()
            assert len(backfills) == before + 1 and backfills[-1].reason == "recreated"
        report = await sup.reconcile()
        assert report.errors == 0, report.failures
        ids = await assert_all_alive(w, step)  # no minute without every wanted subscription
    counters = w.sim.control.counters()
    # ~15-day renewals of three 30-day subscriptions and ~1.5-day ones of a 3-day one
    assert counters["subscriptions.renewed"] >= 3 * 5 + 50
    assert counters.get("subscriptions.expired", 0) == 0
    registered = (await registry.load_all(w.redis, w.keys))[1]
    assert set(registered) == set(ids.values())
    for tenant in w.settings.tenants:
        for spec in tenant.subscriptions:
            left = sup.metrics.value(
                "receiver_subscription_seconds_to_expiry",
                tenant=tenant.name,
                resource=spec.resource,
            )
            assert left > step.total_seconds()
    assert (
        sup.metrics.value(
            "receiver_lifecycle_events_total", event="reauthorizationRequired", outcome="skipped"
        )
        == 1
    )
    assert await w.redis.xpending(w.keys.lifecycle, "supervisor") == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }


async def test_lost_registry_orphans_are_replaced_and_foreign_ones_left_alone(world: World) -> None:
    w = world
    sup = w.supervisor
    await sup.reconcile()
    old = await assert_all_alive(w, dt.timedelta(hours=1))
    foreign = await w.call(
        0,
        "POST",
        "/subscriptions",
        json={
            "changeType": "updated",
            "resource": "security/alerts?$filter=severity eq 'low'",
            "notificationUrl": w.settings.web.lifecycle_url,  # not our notification URL
            "expirationDateTime": (w.now() + dt.timedelta(days=1)).isoformat(),
            "clientState": "someone-else",
        },
    )
    stray = await w.call(
        0,
        "POST",
        "/subscriptions",
        json={
            "changeType": "updated",
            "resource": "security/alerts?$filter=severity eq 'medium'",
            "notificationUrl": w.settings.web.notification_url,
            "expirationDateTime": (w.now() + dt.timedelta(days=1)).isoformat(),
            "clientState": "lost",
        },
    )
    # The registry is lost (a Redis without persistence restarted).
    for sid in old.values():
        await registry.delete(w.redis, w.keys, sid)
    report = await sup.reconcile()
    assert report.errors == 0
    assert report.orphans_deleted == 5  # four wanted ones without clientState, one unwanted
    assert report.recreated == 4
    new = await assert_all_alive(w, dt.timedelta(hours=1))
    assert not set(new.values()) & set(old.values())
    remaining = {s["id"] for s in await w.sim_subscriptions()}
    assert foreign["id"] in remaining and stray["id"] not in remaining
    assert {b.reason for b in await w.backfills()} == {"recreated"}
    # Nothing left to do.
    again = await sup.reconcile()
    assert (again.created, again.deleted, again.orphans_deleted, again.unchanged) == (0, 0, 0, 4)


async def test_unwanted_subscriptions_are_deleted_with_their_registry_entry(
    world: World, make_settings: MakeSettings
) -> None:
    w = world
    await w.supervisor.reconcile()
    ids = await assert_all_alive(w, dt.timedelta(hours=1))
    data = w.settings.model_dump(mode="json")
    data["tenants"][0]["subscriptions"] = data["tenants"][0]["subscriptions"][:1]
    for t, orig in zip(data["tenants"], w.settings.tenants, strict=True):
        t["client_secret"] = orig.client_secret.get_secret_value()  # type: ignore[union-attr]
    fewer = make_settings(**data)
    sup = Supervisor(fewer, w.graph, w.redis, guard=w.lease, clock=w.now)
    report = await sup.reconcile()
    assert (report.deleted, report.errors) == (1, 0)
    gone = ids[("t0", HIGH)]
    assert gone not in {s["id"] for s in await w.sim_subscriptions()}
    assert gone not in (await registry.load_all(w.redis, w.keys))[1]


async def test_changed_lifecycle_url_recreates_the_subscription(
    world: World, make_settings: MakeSettings
) -> None:
    """Graph sets lifecycleNotificationUrl only at creation: a renewal (PATCH) would keep the
    old URL, so a changed one means a new subscription (and a backfill of the gap)."""
    w = world
    await w.supervisor.reconcile()
    old = (await assert_all_alive(w, dt.timedelta(hours=1)))[("t1", RESOURCE)]
    data = w.settings.model_dump(mode="json")
    moved_url = w.settings.web.lifecycle_url + "?moved=1"  # the same app answers it
    data["tenants"][1]["subscriptions"][0]["lifecycle_url"] = moved_url
    for t, orig in zip(data["tenants"], w.settings.tenants, strict=True):
        t["client_secret"] = orig.client_secret.get_secret_value()  # type: ignore[union-attr]
    moved = make_settings(**data)
    sup = Supervisor(moved, w.graph, w.redis, guard=w.lease, clock=w.now)
    report = await sup.reconcile()
    assert (report.recreated, report.deleted, report.created, report.errors) == (1, 1, 0, 0)
    subs = [
        s
        for s in await w.sim_subscriptions()
        if s["tenantId"] == w.settings.tenants[1].tenant_id and s["resource"] == RESOURCE
    ]
    assert [s["lifecycleNotificationUrl"] for s in subs] == [moved_url]
    assert subs[0]["id"] != old
    assert [b.tenant_id for b in await w.backfills()] == [w.settings.tenants[1].tenant_id]
    again = await sup.reconcile()  # settled: nothing more to do
    assert (again.recreated, again.deleted, again.created) == (0, 0, 0)


async def test_renewal_that_finds_it_gone_recreates_with_backfill(world: World) -> None:
    w = world
    await w.supervisor.reconcile()
    ids = await assert_all_alive(w, dt.timedelta(hours=1))
    sid = ids[("t1", RESOURCE)]
    await w.call(1, "DELETE", f"/subscriptions/{sid}")
    _, records = await registry.load_all(w.redis, w.keys)
    wanted = w.supervisor.wanted(w.settings.tenants[1])[0]
    assert (await w.supervisor.renew(wanted, records[sid])).subscription_id != sid
    new = await assert_all_alive(w, dt.timedelta(hours=1))
    assert new[("t1", RESOURCE)] != sid
    assert [b.reason for b in await w.backfills()] == ["recreated"]


async def test_failing_lifecycle_entry_is_given_up_after_max_attempts(world: World) -> None:
    w = world
    await w.supervisor.reconcile()
    ids = await assert_all_alive(w, dt.timedelta(hours=1))
    sid = ids[("t0", RESOURCE)]
    await w.advance(hours=1)  # past the quiet time after the creation
    entry = NotificationEntry(
        tenant_id=w.settings.tenants[0].tenant_id,
        subscription_id=sid,
        lifecycle_event="reauthorizationRequired",
    )
    await w.redis.xadd(w.keys.lifecycle, entry.to_fields())  # type: ignore[arg-type]
    await w.redis.xadd(w.keys.lifecycle, {"e": "not json"})
    w.sim.control.inject_fault("graph_5xx", count=1000, status=500)
    try:
        assert await consume_lifecycle(w.supervisor, "c1") == 2  # bad one dropped, one failed
        pending = await w.redis.xpending(w.keys.lifecycle, "supervisor")
        assert pending["pending"] == 1
        assert await consume_lifecycle(w.supervisor, "c2") == 1  # claimed again: gives up
    finally:
        w.sim.control.clear_faults()
    assert (await w.redis.xpending(w.keys.lifecycle, "supervisor"))["pending"] == 0
    assert await consume_lifecycle(w.supervisor, "c1") == 0
    m = w.supervisor.metrics
    assert (
        m.value(
            "receiver_lifecycle_events_total", event="reauthorizationRequired", outcome="gave_up"
        )
        == 1
    )
    assert m.value("receiver_lifecycle_events_total", event="invalid", outcome="dropped") == 1
    assert await w.redis.hlen(w.keys.attempts("lifecycle")) == 0


async def test_a_stale_lease_holder_cannot_write(world: World) -> None:
    w = world
    await w.supervisor.reconcile()
    ids = await assert_all_alive(w, dt.timedelta(hours=1))
    # The holder stalls; its lease runs out and another process takes over.
    await w.redis.delete(w.keys.leader)
    other = Lease(w.redis, w.keys, 60)
    assert await other.acquire() and other.fence == w.lease.fence + 1
    renewed = w.sim.control.counters().get("subscriptions.renewed", 0)
    _, records = await registry.load_all(w.redis, w.keys)
    wanted = w.supervisor.wanted(w.settings.tenants[0])[0]
    from receiver.store.lease import LeaseLost

    with pytest.raises(LeaseLost):
        await w.supervisor.renew(wanted, records[ids[("t0", RESOURCE)]])
    assert w.sim.control.counters().get("subscriptions.renewed", 0) == renewed


async def test_redis_lost_everything_lifecycle_and_registry_come_back(world: World) -> None:
    """Redis restarted empty: the lifecycle group is made again (no endless NOGROUP), and
    the next reconcile replaces the subscription it no longer knows and asks for a backfill
    of the gap, so nothing Graph notified meanwhile is lost."""
    w = world
    await w.supervisor.reconcile()
    assert await consume_lifecycle(w.supervisor, "c1") == 0
    await w.redis.flushall()
    assert await consume_lifecycle(w.supervisor, "c1") == 0  # NOGROUP -> group made again
    await w.redis.xadd(w.keys.lifecycle, {"e": "not json"})
    assert await consume_lifecycle(w.supervisor, "c1") == 1  # read through the new group
    with pytest.raises(LeaseLost):  # the lease went with the data: no write without it
        await w.supervisor.reconcile()
    assert await w.lease.acquire()
    report = await w.supervisor.reconcile()
    assert report.orphans_deleted == 4 and report.recreated == 4, report.summary()
    backfills = await w.backfills()
    assert len(backfills) == 4 and {b.reason for b in backfills} == {"recreated"}, backfills


async def test_a_lost_lease_leaves_lifecycle_entries_to_the_next_leader(world: World) -> None:
    """The lease runs out mid-pass: the entry that met it and the ones after it stay pending
    (nothing done, nothing counted as an attempt's give-up); the next leader handles both."""
    w = world
    await w.supervisor.reconcile()
    ids = await assert_all_alive(w, dt.timedelta(hours=1))
    await w.advance(hours=1)  # past the quiet time after the creation
    t0, t1 = w.settings.tenants[0], w.settings.tenants[1]
    for entry in (
        NotificationEntry(
            tenant_id=t0.tenant_id,
            subscription_id=ids[("t0", RESOURCE)],
            lifecycle_event="reauthorizationRequired",
        ),
        NotificationEntry(
            tenant_id=t1.tenant_id, subscription_id=ids[("t1", RESOURCE)], lifecycle_event="missed"
        ),
    ):
        await w.redis.xadd(w.keys.lifecycle, entry.to_fields())  # type: ignore[arg-type]
    await w.redis.delete(w.keys.leader)
    other = Lease(w.redis, w.keys, 60)
    assert await other.acquire()
    with pytest.raises(LeaseLost):
        await consume_lifecycle(w.supervisor, "old")
    assert (await w.redis.xpending(w.keys.lifecycle, "supervisor"))["pending"] == 2
    assert w.sim.control.counters().get("subscriptions.reauthorized", 0) == 0
    assert await w.backfills() == []
    successor = Supervisor(
        w.settings, w.graph, w.redis, guard=other, clock=w.now, metrics=SupervisorMetrics()
    )
    assert await consume_lifecycle(successor, "new") == 2
    assert w.sim.control.counters()["subscriptions.reauthorized"] == 1
    assert [(b.tenant_id, b.reason) for b in await w.backfills()] == [(t1.tenant_id, "missed")]
    assert (await w.redis.xpending(w.keys.lifecycle, "supervisor"))["pending"] == 0
    outcomes = {
        (e, o): successor.metrics.value("receiver_lifecycle_events_total", event=e, outcome=o)
        for e, o in (("reauthorizationRequired", "reauthorized"), ("missed", "backfill"))
    }
    assert outcomes == {("reauthorizationRequired", "reauthorized"): 1, ("missed", "backfill"): 1}
