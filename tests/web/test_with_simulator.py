"""Graph's side played by the simulator: handshake at subscription creation, then its
notifier posting to the web endpoint. Every notification must be stored."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from receiver import clock
from receiver.store import registry
from receiver.store.entries import NotificationEntry
from receiver.store.keys import Keys
from receiver.store.registry import SubscriptionRecord
from receiver.web.app import create_app
from tests.fixtures.settings import MakeSettings
from tests.fixtures.web import served


async def test_notifier_gets_every_notification_stored(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> None:
    sim = make_simulator(legacy_alerts="live")
    tenant = sim.tenant
    settings = make_settings(
        redis_url=redis_url,
        tenants=[
            {
                "name": "contoso",
                "tenant_id": tenant.tenant_id,
                "client_id": tenant.app.client_id,
                "client_secret": tenant.app.secret,
            }
        ],
    )
    keys = Keys(settings.redis.key_prefix)
    client_state = "a-random-client-state-0f3c9e"
    resource = "security/alerts?$filter=status eq 'newAlert'"
    async with served(create_app(settings)) as url:
        graph = sim.graph()
        expires = (clock.now() + timedelta(days=2)).isoformat().replace("+00:00", "Z")
        # The simulator performs the validation handshake against the running web app on both
        # URLs before it answers: run the blocking client off this event loop.
        created = await asyncio.to_thread(
            graph.post,
            "/subscriptions",
            json={
                "changeType": "created,updated",
                "resource": resource,
                "clientState": client_state,
                "notificationUrl": url + "/webhooks/graph",
                "lifecycleNotificationUrl": url + "/webhooks/graph/lifecycle",
                "expirationDateTime": expires,
            },
        )
        assert created.status_code == 201, created.text
        sub = created.json()
        redis = aioredis.Redis.from_url(redis_url)
        try:
            await registry.put(
                redis,
                keys,
                SubscriptionRecord(
                    sub["id"],
                    tenant.tenant_id,
                    resource,
                    client_state,
                    datetime.fromisoformat(sub["expirationDateTime"]).timestamp(),
                ),
            )
            made = await asyncio.to_thread(
                sim.control.create_alerts, tenant.tenant_id, 60, status="newAlert"
            )
            ids = set(made["ids"])
            await asyncio.to_thread(sim.control.inject_fault, "duplicate_notifications", count=3)
            await asyncio.to_thread(
                sim.control.update_alert, tenant.tenant_id, sorted(ids)[0], {"severity": "high"}
            )
            await asyncio.to_thread(sim.control.lifecycle, sub["id"], "missed")
            for _ in range(200):
                stored = [
                    NotificationEntry.from_fields(f)
                    for _, f in await redis.xrange(keys.notifications)
                ]
                lifecycle = await redis.xrange(keys.lifecycle)
                if len(stored) >= 62 and lifecycle:
                    break
                await asyncio.sleep(0.05)
        finally:
            await redis.aclose()
        graph.close()
    created_ids = {e.resource_id for e in stored if e.change_type == "created"}
    assert created_ids == ids  # every alert's notification stored
    assert all(e.tenant_id == tenant.tenant_id and e.subscription_id == sub["id"] for e in stored)
    updates = [e for e in stored if e.change_type == "updated"]
    # Graph sent the update twice (the duplicate fault): the web stores what Graph sent, the
    # fetch stage's dedup makes it one alert.
    assert len(updates) == 2 and updates[0].resource_id == sorted(ids)[0]
    deliveries = await asyncio.to_thread(sim.control.deliveries, "notification")
    assert [d["statusCode"] for d in deliveries] == [202] * len(deliveries), deliveries
    assert NotificationEntry.from_fields(lifecycle[0][1]).lifecycle_event == "missed"
