"""A push subscription that stays silent while the poller finds changes is reported: the
retired legacy alerts API (2026-10-15) fails exactly this way, with no error anywhere."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from receiver.admin.health import gather
from receiver.graph.client import client_for
from receiver.graph.metrics import SupervisorMetrics
from receiver.graph.subscriptions import Supervisor
from receiver.pipeline.consumer import Entry
from receiver.pipeline.fetch import FetchStage
from receiver.store import registry
from receiver.store.entries import NotificationEntry
from receiver.store.keys import Keys
from receiver.store.registry import SubscriptionRecord
from tests.fixtures.settings import MakeSettings
from tests.graph.helpers import sim_settings, tenant_entry

RESOURCE = "security/alerts?$filter=status eq 'newAlert'"


def record(sid: str = "s1", tenant: str = "t", created_at: float = 1000.0) -> SubscriptionRecord:
    return SubscriptionRecord(sid, tenant, RESOURCE, "state", 5000.0, created_at=created_at)


@pytest.mark.parametrize(
    ("push", "poll", "created", "silent_s"),
    [
        (None, 4600.0, 1000.0, 3600.0),  # never pushed, polling found changes an hour on
        (None, 4599.0, 1000.0, None),  # a second short of the limit
        (4000.0, 7700.0, 1000.0, 3700.0),  # pushed once, then nothing for 3,700 s of changes
        (4000.0, 4100.0, 1000.0, None),  # pushes keep coming
        (None, None, 1000.0, None),  # the poller found nothing: nothing to compare
        (None, 9000.0, 0.0, None),  # no creation time, never pushed: no evidence
    ],
)
def test_silence_is_polled_changes_past_the_last_push(
    push: float | None, poll: float | None, created: float, silent_s: float | None
) -> None:
    rec = record(created_at=created)
    found = registry.silent(
        {"s1": rec},
        {"s1": push} if push is not None else {},
        {"t": poll} if poll is not None else {},
        lambda r: 3600.0,
    )
    assert [s.silent_s for s in found] == ([silent_s] if silent_s is not None else [])
    assert all(s.record is rec and s.last_push_s == push for s in found)


def entry(note: NotificationEntry) -> Entry:
    return Entry("1-0", {k.encode(): v.encode() for k, v in note.to_fields().items()}, 1)


async def test_status_reports_a_silent_subscription_until_it_pushes(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> None:
    sim = make_simulator()
    tenant = tenant_entry(
        sim.tenant, "contoso", subscriptions=[{"resource": RESOURCE, "silent_after_s": 600}]
    )
    settings = sim_settings(make_settings, sim, redis_url, tenants=[tenant])
    redis = aioredis.Redis.from_url(redis_url)
    keys = Keys(settings.redis.key_prefix)
    graph = client_for(settings, redis)
    tid = sim.tenant.tenant_id
    try:
        # Registered 20 minutes ago; no notification since.
        await registry.put(
            redis,
            keys,
            SubscriptionRecord(
                "s1", tid, RESOURCE, "state", time.time() + 86_400, created_at=time.time() - 1200
            ),
        )
        stage = FetchStage(redis, keys, settings, graph)
        alert_id = await asyncio.to_thread(sim.control.create_alert, tid, kind="v2")
        body = (await asyncio.to_thread(sim.control.alerts, tid, kind="v2"))[0]
        await stage.handle(
            entry(
                NotificationEntry(
                    tenant_id=tid,
                    change_type="updated",
                    resource=f"security/alerts_v2/{alert_id}",
                    resource_id=alert_id,
                    source="poll",
                    resource_data=json.dumps(body),
                )
            )
        )
        health = await gather(settings, redis)
        assert [(s.tenant, s.subscription_id) for s in health.silent] == [("contoso", "s1")]
        assert 1190 <= health.silent[0].silent_s <= 1300
        assert health.silent[0].last_push_s_ago is None
        assert any(
            "delivered nothing for 20 min while polling found changes" in p for p in health.problems
        )
        assert health.to_dict()["silent"][0]["subscription_id"] == "s1"
        metrics = SupervisorMetrics()
        await Supervisor(settings, graph, redis, metrics=metrics)._export_silence()
        silent_s = metrics.value(
            "receiver_subscription_silent_seconds", tenant="contoso", resource=RESOURCE
        )
        assert 1190 <= silent_s <= 1300
        # A pushed notification of it (whatever its fetch finds) ends the silence.
        await stage.handle(
            entry(
                NotificationEntry(
                    tenant_id=tid,
                    subscription_id="s1",
                    change_type="updated",
                    resource=f"security/alerts_v2/{alert_id}",
                    resource_id=alert_id,
                    source="push",
                )
            )
        )
        health = await gather(settings, redis)
        assert health.silent == []
        await Supervisor(settings, graph, redis, metrics=metrics)._export_silence()
        assert (
            metrics.value(
                "receiver_subscription_silent_seconds", tenant="contoso", resource=RESOURCE
            )
            == 0.0
        )
        assert not any("delivered nothing" in p for p in health.problems)
        await registry.delete(redis, keys, "s1")  # its push time goes with it
        assert await redis.hget(keys.push_seen, "s1") is None
    finally:
        await graph.aclose()
        await redis.aclose()
