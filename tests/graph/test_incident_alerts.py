"""Incidents are polled with their alerts (`$expand=alerts`): an incident's message lists them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from receiver.entries import NotificationEntry
from receiver.envelope import from_incident
from receiver.graph.client import client_for
from receiver.graph.poller import Poller
from receiver.keys import Keys
from tests.fixtures.settings import MakeSettings
from tests.graph.helpers import sim_settings, tenant_entry


@pytest.fixture
async def poller(make_simulator: Callable[..., Any], make_settings: MakeSettings,
                 redis_url: str) -> AsyncIterator[tuple[Any, Poller, aioredis.Redis]]:
    sim = make_simulator()
    entry = tenant_entry(sim.tenant, "contoso") | {"poll": {"alerts_v2": False,
                                                            "incidents": True,
                                                            "overlap_s": 0}}
    settings = sim_settings(make_settings, sim, redis_url, tenants=[entry])
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    yield sim, Poller(redis, Keys(settings.redis.key_prefix), settings, graph), redis
    await graph.aclose()
    await redis.aclose()


async def test_polled_incident_carries_its_alerts(poller: Any) -> None:
    sim, p, redis = poller
    tid = sim.tenant.tenant_id
    answer = await asyncio.to_thread(sim.control.create_incidents, tid, 1, 3, severity="high")
    incident_id = answer["ids"][0]
    assert await p.poll_all() == 1
    [raw] = await redis.xrange(p.keys.notifications)
    note = NotificationEntry.from_fields(raw[1])
    incident = json.loads(note.resource_data)
    assert note.resource == f"security/incidents/{incident_id}"
    assert sorted(a["id"] for a in incident["alerts"]) == sorted(answer["alerts"][incident_id])
    envelope = from_incident(incident, "contoso")
    assert "3 alert(s):" in envelope.description
    assert all(f"] {a['title']} · " in envelope.description for a in incident["alerts"])
