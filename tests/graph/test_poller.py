"""The poller against the simulator: watermarks, overlap, paging, backfill."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from receiver import clock
from receiver.envelope import from_incident
from receiver.graph.client import GraphError, client_for
from receiver.graph.poller import Poller
from receiver.store.entries import BackfillRequest, NotificationEntry
from receiver.store.keys import Keys
from tests.fixtures.settings import MakeSettings
from tests.graph.helpers import sim_settings, tenant_entry


@pytest.fixture
async def poller(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> AsyncIterator[tuple[Any, Poller, aioredis.Redis]]:
    sim = make_simulator()
    entry = tenant_entry(sim.tenant, "contoso") | {
        "poll": {"alerts_v2": True, "incidents": True, "overlap_s": 0}
    }
    settings = sim_settings(make_settings, sim, redis_url, tenants=[entry])
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    yield sim, Poller(redis, Keys(settings.redis.key_prefix), settings, graph), redis
    await graph.aclose()
    await redis.aclose()


async def queued(redis: aioredis.Redis, poller: Poller) -> list[NotificationEntry]:
    raw = await redis.xrange(poller.keys.notifications)
    return [NotificationEntry.from_fields(f) for _, f in raw]


async def test_polls_v2_and_incidents_then_only_what_changed(poller: Any) -> None:
    sim, p, redis = poller
    tid = sim.tenant.tenant_id
    await asyncio.to_thread(sim.control.create_alerts, tid, 130, kind="v2")  # > one page
    assert await p.poll_all() >= 130
    first = await queued(redis, p)
    v2 = [e for e in first if e.resource.startswith("security/alerts_v2/")]
    assert len({e.resource_id for e in v2}) == 130
    assert all(
        e.source == "poll" and json.loads(e.resource_data)["id"] == e.resource_id for e in v2
    )
    watermark = (await redis.get(p.keys.watermark(tid, "alerts_v2"))).decode()
    assert watermark.startswith(str(clock.now().year))  # the product's calendar clock
    # Nothing changed (and no overlap window here): nothing is read again.
    await redis.delete(p.keys.notifications)
    await asyncio.to_thread(sim.control.advance_clock, seconds=600)
    assert await p.poll_all() == 0
    new_id = (await asyncio.to_thread(sim.control.create_alerts, tid, 1, kind="v2"))["ids"][0]
    await p.poll_all()
    got = await queued(redis, p)
    assert [e.resource_id for e in got if "alerts_v2" in e.resource] == [new_id]
    assert len([e for e in got if "incidents" in e.resource]) == 1  # its new incident


async def test_watermark_moves_only_after_queueing(
    poller: Any, make_settings: MakeSettings, redis_url: str
) -> None:
    sim, p, redis = poller
    tid = sim.tenant.tenant_id
    impatient = sim_settings(
        make_settings,
        sim,
        redis_url,
        graph={"max_retries": 1},
        tenants=[tenant_entry(sim.tenant, "contoso")],
    )
    graph = client_for(impatient, redis)
    p = Poller(redis, p.keys, impatient, graph)
    await asyncio.to_thread(sim.control.create_alerts, tid, 3, kind="v2")
    key = p.keys.watermark(tid, "alerts_v2")
    await redis.set(key, "2020-01-01T00:00:00.000000Z")
    await asyncio.to_thread(sim.control.inject_fault, "graph_5xx", count=50)
    assert await p.poll_all() == 0  # Graph keeps failing: logged and counted, no crash
    assert p.failures.labels("alerts_v2")._value.get() == 1
    assert (await redis.get(key)) == b"2020-01-01T00:00:00.000000Z"
    await asyncio.to_thread(sim.control.clear_faults)
    assert await p.poll_tenant(p.settings.tenants[0]) >= 3
    await graph.aclose()
    assert (await redis.get(key)) != b"2020-01-01T00:00:00.000000Z"


def _backfill_poller(
    make_simulator: Callable[..., Any],
    make_settings: MakeSettings,
    redis_url: str,
    redis: aioredis.Redis,
    **sim_options: Any,
) -> tuple[Any, Poller]:
    sim = make_simulator(**sim_options)
    entry = tenant_entry(sim.tenant, "contoso") | {"poll": {"alerts_v2": True, "incidents": True}}
    settings = sim_settings(make_settings, sim, redis_url, tenants=[entry])
    return sim, Poller(
        redis, Keys(settings.redis.key_prefix), settings, client_for(settings, redis)
    )


def _since() -> str:
    return (clock.now() - timedelta(hours=1)).isoformat()


async def test_backfill_reads_v2_and_incidents_before_legacy(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    sim, p = _backfill_poller(make_simulator, make_settings, redis_url, redis, legacy_alerts="live")
    tid = sim.tenant.tenant_id
    legacy = await asyncio.to_thread(sim.control.create_alerts, tid, 4)
    v2 = await asyncio.to_thread(sim.control.create_alerts, tid, 2, kind="v2")
    try:
        n = await p.backfill(BackfillRequest(tenant_id=tid, reason="missed", since=_since()))
        assert n == 8  # 2 alerts_v2, their 2 incidents, 4 legacy alerts
        got = await queued(redis, p)
        kinds = [e.resource.split("/")[1] for e in got]
        assert kinds == ["alerts_v2"] * 2 + ["incidents"] * 2 + ["alerts"] * 4
        assert {e.resource_id for e in got[:2]} == set(v2["ids"])
        assert {e.resource_id for e in got[4:]} == set(legacy["ids"])
        assert (
            await p.backfill(
                BackfillRequest(
                    tenant_id="00000000-0000-4000-8000-000000000000",
                    reason="missed",
                    since=_since(),
                )
            )
            == 0
        )
    finally:
        await p.graph.aclose()  # type: ignore[attr-defined]
        await redis.aclose()


@pytest.mark.parametrize(
    ("sim_options", "status"),
    [
        # An app granted today's permissions only (no SecurityEvents.*): 403 on legacy alerts.
        (
            {
                "roles": ("SecurityAlert.Read.All", "SecurityIncident.Read.All"),
                "legacy_alerts": "live",
            },
            "403",
        ),
        # Graph since 2026-10-15: the legacy API answers, with nothing.
        ({"legacy_alerts": "retired"}, None),
    ],
)
async def test_backfill_is_never_stopped_by_the_legacy_api(
    make_simulator: Callable[..., Any],
    make_settings: MakeSettings,
    redis_url: str,
    sim_options: dict[str, Any],
    status: str | None,
) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    sim, p = _backfill_poller(make_simulator, make_settings, redis_url, redis, **sim_options)
    tid = sim.tenant.tenant_id
    v2 = await asyncio.to_thread(sim.control.create_alerts, tid, 3, kind="v2")
    try:
        n = await p.backfill(BackfillRequest(tenant_id=tid, reason="recreated", since=_since()))
        assert n == 6  # 3 alerts_v2 and their 3 incidents
        got = await queued(redis, p)
        assert {e.resource_id for e in got if "alerts_v2" in e.resource} == set(v2["ids"])
        assert len([e for e in got if "incidents" in e.resource]) == 3
        assert not [e for e in got if e.resource.startswith("security/alerts/")]
        if status is not None:
            assert p.legacy_errors.labels(status)._value.get() == 1
        assert p.failures.labels("alerts_v2")._value.get() == 0
        assert p.failures.labels("incidents")._value.get() == 0
    finally:
        await p.graph.aclose()  # type: ignore[attr-defined]
        await redis.aclose()


async def test_backfill_reads_the_rest_then_raises_a_v2_side_error(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> None:
    """An incident read that fails is retried (the request stays pending), after alerts_v2
    and legacy were read."""
    redis = aioredis.Redis.from_url(redis_url)
    sim, p = _backfill_poller(
        make_simulator,
        make_settings,
        redis_url,
        redis,
        legacy_alerts="live",
        roles=("SecurityAlert.Read.All", "SecurityEvents.Read.All"),
    )
    tid = sim.tenant.tenant_id
    await asyncio.to_thread(sim.control.create_alerts, tid, 2, kind="both")
    try:
        with pytest.raises(GraphError) as failed:
            await p.backfill(BackfillRequest(tenant_id=tid, reason="missed", since=_since()))
        assert failed.value.status == 403
        got = await queued(redis, p)
        assert sorted(e.resource.split("/")[1] for e in got) == ["alerts"] * 2 + ["alerts_v2"] * 2
        assert p.failures.labels("incidents")._value.get() == 1
    finally:
        await p.graph.aclose()  # type: ignore[attr-defined]
        await redis.aclose()


async def test_overlap_window_rereads_recent_items(
    poller: Any, make_settings: MakeSettings, redis_url: str
) -> None:
    sim, p, redis = poller
    tid = sim.tenant.tenant_id
    await asyncio.to_thread(sim.control.create_alerts, tid, 5, kind="v2")
    entry = tenant_entry(sim.tenant, "contoso") | {"poll": {"overlap_s": 300, "incidents": False}}
    overlapping = Poller(
        redis, p.keys, sim_settings(make_settings, sim, redis_url, tenants=[entry]), p.graph
    )
    assert await overlapping.poll_all() == 5
    # A crash between queueing and the watermark, or an item Graph indexed late: the next
    # run reads the last 5 minutes again; the fetch stage's dedup drops what it has seen.
    assert await overlapping.poll_all() == 5


async def test_polled_incident_carries_its_alerts(poller: Any) -> None:
    sim, p, redis = poller
    tid = sim.tenant.tenant_id
    answer = await asyncio.to_thread(sim.control.create_incidents, tid, 1, 3, severity="high")
    incident_id = answer["ids"][0]
    assert await p.poll_all() == 4  # the incident and its three alerts
    [note] = [e for e in await queued(redis, p) if e.resource.startswith("security/incidents/")]
    incident = json.loads(note.resource_data)
    assert note.resource == f"security/incidents/{incident_id}"
    assert sorted(a["id"] for a in incident["alerts"]) == sorted(answer["alerts"][incident_id])
    envelope = from_incident(incident, "contoso")
    assert "3 alert(s):" in envelope.description
    assert all(f"] {a['title']} · " in envelope.description for a in incident["alerts"])
