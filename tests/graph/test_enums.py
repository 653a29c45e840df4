"""Evolvable enums: Graph returns members listed after `unknownFutureValue` (serviceSource
microsoftSentinel, incident status awaitingAction) only to a request that asks with
`Prefer: include-unknown-enum-members`; the product asks on every security read, so routes on
`provider="microsoftSentinel"` match what a real tenant's alerts say."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from receiver.envelope import from_v2
from receiver.graph.client import client_for
from tests.fixtures.settings import MakeSettings
from tests.graph.helpers import sim_settings


async def test_security_reads_get_evolvable_enum_members(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> None:
    sim = make_simulator()
    tid = sim.tenant.tenant_id
    alert_id = await asyncio.to_thread(
        sim.control.create_alert, tid, kind="v2", serviceSource="microsoftSentinel"
    )
    # A client that does not ask (any other tool) sees the placeholder.
    with sim.graph(sim.tenant) as http:
        plain = http.get(f"/security/alerts_v2/{alert_id}").json()
    assert plain["serviceSource"] == "unknownFutureValue"
    settings = sim_settings(make_settings, sim, redis_url)
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    try:
        alert = await graph.get(tid, f"security/alerts_v2/{alert_id}")
    finally:
        await graph.aclose()
        await redis.aclose()
    assert from_v2(alert).provider == "microsoftSentinel"
