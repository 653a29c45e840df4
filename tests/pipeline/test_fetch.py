"""The fetch stage against the simulator (real MSAL, real httpx) and a real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from receiver import clock
from receiver.config.settings import Settings
from receiver.graph.client import client_for
from receiver.pipeline.consumer import Consumer, ConsumerConfig, Entry, Poison
from receiver.pipeline.fetch import FetchStage, envelope_of
from receiver.store.entries import NotificationEntry
from receiver.store.keys import Keys
from tests.fixtures.settings import MakeSettings
from tests.graph.helpers import sim_settings


@pytest.fixture
async def setup(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> AsyncIterator[tuple[Any, Settings, aioredis.Redis, FetchStage]]:
    sim = make_simulator(legacy_alerts="live")
    settings = sim_settings(make_settings, sim, redis_url)
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    stage = FetchStage(redis, Keys(settings.redis.key_prefix), settings, graph)
    yield sim, settings, redis, stage
    await graph.aclose()
    await redis.aclose()


def push(tenant_id: str, alert_id: str, resource: str | None = None) -> Entry:
    note = NotificationEntry(
        tenant_id=tenant_id,
        subscription_id="s1",
        change_type="updated",
        resource=resource or f"security/alerts/{alert_id}",
        resource_id=alert_id,
        source="push",
    )
    return Entry("1-0", {k.encode(): v.encode() for k, v in note.to_fields().items()}, 1)


async def alerts(redis: aioredis.Redis, settings: Settings) -> list[Entry]:
    raw = await redis.xrange(Keys(settings.redis.key_prefix).alerts)
    return [Entry(i.decode(), f, 1) for i, f in raw]


async def test_fetch_normalise_dedup_and_changes(setup: Any) -> None:
    sim, settings, redis, stage = setup
    tid = sim.tenant.tenant_id
    alert_id = await asyncio.to_thread(
        sim.control.create_alert, tid, provider="IPC", severity="high"
    )
    await stage.handle(push(tid, alert_id))
    await stage.handle(push(tid, alert_id))  # Graph's duplicate notification
    [first] = await alerts(redis, settings)
    env = envelope_of(first)
    assert (env.id, env.tenant_id, env.tenant, env.provider) == (alert_id, tid, "t0", "IPC")
    assert env.severity == "high" and not env.is_update
    await asyncio.to_thread(
        sim.control.update_alert,
        tid,
        alert_id,
        {"status": "inProgress", "assignedTo": "soc@contoso.com"},
    )
    await stage.handle(push(tid, alert_id))
    got = await alerts(redis, settings)
    assert len(got) == 2
    update = envelope_of(got[1])
    assert update.is_update and update.status == "inProgress"
    assert set(update.changes) == {"status", "assigned_to"}


async def test_push_and_poll_overlap_pass_once(setup: Any) -> None:
    sim, settings, redis, stage = setup
    tid = sim.tenant.tenant_id
    alert_id = await asyncio.to_thread(sim.control.create_alert, tid)
    await stage.handle(push(tid, alert_id))
    # The poller read the same version of the alert: it carries the body, no GET needed.
    body = (await asyncio.to_thread(sim.control.alerts, tid))[0]
    note = NotificationEntry(
        tenant_id=tid,
        change_type="updated",
        resource=f"security/alerts/{alert_id}",
        resource_id=alert_id,
        source="poll",
        resource_data=json.dumps(body),
    )
    calls = stage.graph.calls  # type: ignore[attr-defined]
    await stage.handle(Entry("2-0", {b"e": note.to_fields()["e"].encode()}, 1))
    assert stage.graph.calls == calls  # type: ignore[attr-defined]
    assert len(await alerts(redis, settings)) == 1


async def test_an_older_version_after_a_newer_one_is_dropped(setup: Any) -> None:
    sim, settings, redis, stage = setup
    tid = sim.tenant.tenant_id
    alert_id = await asyncio.to_thread(sim.control.create_alert, tid)
    old = (await asyncio.to_thread(sim.control.alerts, tid))[0]
    await asyncio.to_thread(sim.control.update_alert, tid, alert_id, {"status": "resolved"})
    await stage.handle(push(tid, alert_id))  # the new version first
    note = NotificationEntry(
        tenant_id=tid,
        change_type="updated",
        source="poll",
        resource=f"security/alerts/{alert_id}",
        resource_data=json.dumps(old),
    )
    await stage.handle(Entry("3-0", {b"e": note.to_fields()["e"].encode()}, 1))
    [only] = await alerts(redis, settings)
    assert envelope_of(only).status == "resolved"


async def test_gone_alert_recorded_not_retried(setup: Any) -> None:
    sim, settings, redis, stage = setup
    await stage.handle(push(sim.tenant.tenant_id, "0000DEADBEEF0000"))
    assert await alerts(redis, settings) == []
    assert stage.outcomes.labels("gone")._value.get() == 1


async def test_bad_entries_go_to_poison(setup: Any) -> None:
    sim, settings, redis, stage = setup
    keys = Keys(settings.redis.key_prefix)
    await redis.xadd(keys.notifications, {"e": "not json"})
    await redis.xadd(
        keys.notifications, push("99999999-9999-4999-8999-999999999999", "x").fields
    )  # tenant not configured
    await redis.xadd(keys.notifications, push(sim.tenant.tenant_id, "x", resource="users/x").fields)
    consumer = Consumer(
        redis, keys, ConsumerConfig(keys.notifications, "fetch", block_ms=50), stage.handle
    )
    await asyncio.wait_for(consumer.run(burst=True), 20)
    poison = await redis.xrange(keys.poison)
    assert len(poison) == 3
    assert [p[1][b"attempts"] for p in poison] == [b"1", b"1", b"1"]


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("2026-11-30T04:10:33.7221020Z", "2026-11-30T04:10:33.7221020Z"),
        ("2026-11-30T04:10:33.72210Z", "2026-11-30T04:10:33.7221000Z"),
        ("2026-11-30T04:10:33Z", "2026-11-30T04:10:33.0000000Z"),
        ("2026-11-30T05:10:33.5+01:00", "2026-11-30T04:10:33.5000000Z"),
        ("not a time", "not a time"),
    ],
)
def test_canonical_versions_sort(raw: str, canonical: str) -> None:
    assert clock.canonical(raw) == canonical


async def test_the_notification_is_acknowledged_with_the_hand_on(setup: Any) -> None:
    """Handed on or dropped as a duplicate, the notification is acknowledged in the same
    script as the XADD: no separate XACK, and nothing left pending."""
    sim, settings, redis, stage = setup
    keys = Keys(settings.redis.key_prefix)
    tid = sim.tenant.tenant_id
    alert_id = await asyncio.to_thread(sim.control.create_alert, tid)
    await redis.xgroup_create(keys.notifications, "fetch", id="0", mkstream=True)
    for _ in range(2):  # the second is Graph's duplicate
        note = push(tid, alert_id)
        await redis.xadd(keys.notifications, dict(note.fields))
        [[_, [(entry_id, fields)]]] = await redis.xreadgroup(
            "fetch", "c1", {keys.notifications: ">"}
        )
        entry = Entry(entry_id.decode(), fields, 1, (keys.notifications, "fetch"))
        await stage.handle(entry)
        assert entry.acked
        assert (await redis.xpending(keys.notifications, "fetch"))["pending"] == 0
        assert await redis.xlen(keys.notifications) == 0
    assert len(await alerts(redis, settings)) == 1


def _entry(note: NotificationEntry, entry_id: str = "5-0") -> Entry:
    return Entry(entry_id, {b"e": note.to_fields()["e"].encode()}, 1)


async def test_rich_content_is_bound_to_its_notification_and_re_read(setup: Any) -> None:
    """Issue 15, items 3 and 9: a push entry's decrypted content (rich notifications) must be
    the notification's alert (its id is the resource's), else it is refused and counted with
    no Graph call; when it is, the alert is still re-read: Graph's version is routed, never
    the content's."""
    sim, settings, redis, stage = setup
    tid = sim.tenant.tenant_id
    [alert_id] = (
        await asyncio.to_thread(sim.control.create_alerts, tid, 1, kind="v2", severity="low")
    )["ids"]
    forged = {
        "id": alert_id,
        "tenantId": tid,
        "title": "Forged: wire money now",
        "severity": "high",
        "status": "new",
        "lastUpdateDateTime": "2099-01-01T00:00:00.0000000Z",
    }

    def rich(content: Any) -> NotificationEntry:
        return NotificationEntry(
            tenant_id=tid,
            subscription_id="s1",
            change_type="updated",
            resource=f"security/alerts_v2/{alert_id}",
            resource_id=alert_id,
            source="push",
            resource_data=json.dumps(content),
        )

    calls = stage.graph.calls
    for other in ({**forged, "id": "another-alert"}, {**forged, "id": ""}, ["not", "a", "dict"]):
        with pytest.raises(Poison):
            await stage.handle(_entry(rich(other)))
    assert stage.graph.calls == calls
    assert stage.outcomes.labels("refused_content")._value.get() == 3
    await stage.handle(_entry(rich(forged)))
    assert stage.graph.calls == calls + 1
    [only] = await alerts(redis, settings)
    routed = envelope_of(only)
    assert (routed.id, routed.severity) == (alert_id, "low")
    assert routed.title != forged["title"]


async def test_poll_content_is_bound_to_its_resource(setup: Any) -> None:
    """Content this deployment read itself (poll) is used as read, once its id is the
    resource's; a mismatch is refused like a push entry's."""
    sim, settings, redis, stage = setup
    tid = sim.tenant.tenant_id
    [alert_id] = (await asyncio.to_thread(sim.control.create_alerts, tid, 1, kind="v2"))["ids"]
    body = (await asyncio.to_thread(sim.control.alerts, tid, "v2"))[0]
    calls = stage.graph.calls
    mismatched = NotificationEntry(
        tenant_id=tid,
        change_type="updated",
        source="poll",
        resource="security/alerts_v2/some-other-id",
        resource_data=json.dumps(body),
    )
    with pytest.raises(Poison):
        await stage.handle(_entry(mismatched))
    note = NotificationEntry(
        tenant_id=tid,
        change_type="updated",
        source="poll",
        resource=f"security/alerts_v2/{alert_id}",
        resource_id=alert_id,
        resource_data=json.dumps(body),
    )
    await stage.handle(_entry(note, "6-0"))
    assert stage.graph.calls == calls
    assert [envelope_of(e).id for e in await alerts(redis, settings)] == [alert_id]
    assert stage.outcomes.labels("refused_content")._value.get() == 1
