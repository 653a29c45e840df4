"""A backfill request whose first attempt fails is done on the next (worker's backfill
consumer, simulator, real Redis): it once went to the poison stream instead, and the gap it
was to fill stayed open."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from receiver import clock
from receiver.graph.client import client_for
from receiver.pipeline.worker import poll_consumers
from receiver.store.entries import BackfillRequest, NotificationEntry
from receiver.store.keys import Keys
from tests.fixtures.settings import MakeSettings
from tests.fixtures.waiting import wait_until_async
from tests.graph.helpers import sim_settings, tenant_entry


async def test_a_backfill_that_failed_once_is_done_on_its_retry(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> None:
    sim = make_simulator()
    tid = sim.tenant.tenant_id
    entry = tenant_entry(sim.tenant, "contoso") | {"poll": {"alerts_v2": True}}
    settings = sim_settings(
        make_settings, sim, redis_url, tenants=[entry], graph={"max_retries": 0}
    )
    keys = Keys(settings.redis.key_prefix)
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    created = (await asyncio.to_thread(sim.control.create_alerts, tid, 2, kind="v2"))["ids"]
    since = (clock.now() - timedelta(hours=1)).isoformat()
    request: dict[Any, Any] = BackfillRequest(tid, "missed", since).to_fields()
    await redis.xadd(keys.backfill_requests, request)
    sim.control.inject_fault("graph_5xx", count=1, status=503)  # the first attempt fails
    _, backfills = poll_consumers(settings, redis, keys, graph, registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(backfills.run(stop))
    try:
        await wait_until_async(
            _value_of(lambda: backfills.processed + backfills.poisoned),
            lambda n: n >= 1,
            timeout_s=30,
            what="the backfill done or poisoned",
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        poisoned = await redis.xlen(keys.poison)
        queued: Any = await redis.xrange(keys.notifications)
        await graph.aclose()
        await redis.aclose()
    assert sim.control.counters()["fault.graph_5xx"] == 1
    assert (backfills.processed, backfills.poisoned, poisoned) == (1, 0, 0)
    read = {NotificationEntry.from_fields(fields).resource_id for _, fields in queued}
    assert set(created) <= read  # the alerts of the gap, read on the retry


def _value_of(read: Callable[[], int]) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return read()

    return probe
