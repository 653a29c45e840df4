"""The poller's rounds run tenants and sources at once, against the simulator.

Graph answers in ~150 ms; read one after another, 200 tenants took a minute per round. These
tests put the simulator's ``graph_latency`` fault in front of every call and look at when each
(tenant, source) read was in flight, recorded by a pass-through around the real Graph client
(the same shape as the progress counter of ``receiver backfill``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from receiver.config.settings import Settings
from receiver.graph.client import SECURITY_BUCKET, client_for
from receiver.graph.poller import Poller
from receiver.store.entries import NotificationEntry
from receiver.store.keys import Keys
from tests.fixtures.settings import MakeSettings
from tests.graph.helpers import Recording, sim_settings, tenant_entry

BOTH = {"alerts_v2": True, "incidents": True, "overlap_s": 0}


def _settings(make_settings: MakeSettings, sim: Any, redis_url: str, **overrides: Any) -> Settings:
    tenants = [tenant_entry(t, f"t{i}") | {"poll": BOTH} for i, t in enumerate(sim.tenants)]
    return sim_settings(make_settings, sim, redis_url, tenants=tenants, **overrides)


async def _queued_tenants(redis: aioredis.Redis, keys: Keys) -> list[str]:
    raw = await redis.xrange(keys.notifications)
    return [NotificationEntry.from_fields(f).tenant_id for _, f in raw]


async def test_a_round_reads_sources_at_once_within_the_bound(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> None:
    sim = make_simulator(tenants=6)
    for tenant in sim.tenants:
        await asyncio.to_thread(sim.control.create_alerts, tenant.tenant_id, 1, kind="v2")
    await asyncio.to_thread(sim.control.inject_fault, "graph_latency", ms=200)
    await asyncio.to_thread(sim.control.reset_counters)
    settings = _settings(make_settings, sim, redis_url, scheduler={"poll_concurrency": 4})
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    recording = Recording(graph)
    poller = Poller(redis, Keys(settings.redis.key_prefix), settings, recording)
    try:
        # Each v2 alert comes with its incident: 6 alerts + 6 incidents.
        assert await poller.poll_all() == 12
        for tenant in sim.tenants:
            for source in ("alerts_v2", "incidents"):
                assert await redis.get(poller.keys.watermark(tenant.tenant_id, source))
    finally:
        await graph.aclose()
        await redis.aclose()
    assert len(recording.spans) == 12  # 6 tenants x 2 sources, one page each
    # One after another the peak is 1; unbounded it is 12. Each read lasts at least the
    # injected 200 ms and the first four start in the same turn of the event loop.
    assert recording.peak() == 4
    assert (await asyncio.to_thread(sim.control.counters))["graph.security"] == 12


async def test_a_failing_or_slow_tenant_holds_up_no_other(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> None:
    sim = make_simulator(tenants=4)
    slow, broken, *fine = sim.tenants
    for tenant in sim.tenants:
        await asyncio.to_thread(sim.control.create_alerts, tenant.tenant_id, 1, kind="v2")
    await asyncio.to_thread(sim.control.inject_fault, "graph_latency", ms=100)
    tenants = [tenant_entry(t, f"t{i}") | {"poll": BOTH} for i, t in enumerate(sim.tenants)]
    tenants[1]["client_secret"] = "not-the-secret"  # every token request of it fails
    # Two requests per 3 s per tenant: the slow tenant's window is full before the round.
    settings = sim_settings(
        make_settings,
        sim,
        redis_url,
        tenants=tenants,
        graph={"rate_limit_per_minute": 2, "rate_limit_window_s": 3.0},
        scheduler={"poll_concurrency": 8},
    )
    redis = aioredis.Redis.from_url(redis_url)
    keys = Keys(settings.redis.key_prefix)
    window = keys.rate_limit(slow.tenant_id, SECURITY_BUCKET)
    now_s, now_us = await redis.time()
    now_ms = now_s * 1000 + now_us // 1000
    await redis.zadd(window, {f"{now_ms}-a": now_ms, f"{now_ms}-b": now_ms})
    graph = client_for(settings, redis)
    recording = Recording(graph)
    poller = Poller(redis, keys, settings, recording)
    try:
        total = await poller.poll_all()
    finally:
        await graph.aclose()
    try:
        assert total == 6  # slow and fine: 3 tenants x (1 alert + its incident)
        assert sorted(await _queued_tenants(redis, keys)) == sorted(
            [t.tenant_id for t in (slow, *fine) for _ in range(2)]
        )
        # The slow tenant waited for its window (3 s); the others were done long before it.
        ends = {s.tenant_id: s.end for s in recording.spans}
        assert all(ends[t.tenant_id] < ends[slow.tenant_id] for t in fine)
        # The failing tenant: counted per source, its watermarks untouched, the others moved.
        assert poller.failures.labels("alerts_v2")._value.get() == 1
        assert poller.failures.labels("incidents")._value.get() == 1
        for tenant in sim.tenants:
            for source in ("alerts_v2", "incidents"):
                mark = await redis.get(keys.watermark(tenant.tenant_id, source))
                assert (mark is None) == (tenant is broken)
    finally:
        await redis.aclose()


async def test_the_per_tenant_rate_limit_holds_under_concurrency(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> None:
    sim = make_simulator(tenants=3)
    # One request per second per tenant: each tenant's second source must wait for the first.
    settings = _settings(
        make_settings,
        sim,
        redis_url,
        graph={"rate_limit_per_minute": 1, "rate_limit_window_s": 1.0},
        scheduler={"poll_concurrency": 16},
    )
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    recording = Recording(graph)
    poller = Poller(redis, Keys(settings.redis.key_prefix), settings, recording)
    try:
        assert await poller.poll_all() == 0
    finally:
        await graph.aclose()
        await redis.aclose()
    assert len(recording.spans) == 6
    for tenant in sim.tenants:
        mine = [s for s in recording.spans if s.tenant_id == tenant.tenant_id]
        # The later read was let through a second after the earlier one was counted, which
        # was after the earlier read started.
        assert max(s.end for s in mine) - min(s.start for s in mine) >= 1.0
    assert graph.limiter is not None and graph.limiter.waited_s > 0


async def test_a_source_still_being_read_is_not_started_again(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> None:
    sim = make_simulator(tenants=1)
    await asyncio.to_thread(sim.control.create_alerts, sim.tenant.tenant_id, 1, kind="v2")
    await asyncio.to_thread(sim.control.inject_fault, "graph_latency", ms=300)
    await asyncio.to_thread(sim.control.reset_counters)
    settings = _settings(make_settings, sim, redis_url)
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    recording = Recording(graph)
    poller = Poller(redis, Keys(settings.redis.key_prefix), settings, recording)
    try:
        first = asyncio.create_task(poller.poll_all())
        async with recording.started:  # both sources of the first round are in flight
            await recording.started.wait_for(lambda: len(recording.spans) == 2)
        assert await poller.poll_all() == 0  # a second round beside it reads nothing
        assert await first == 2
    finally:
        await graph.aclose()
        await redis.aclose()
    assert len(recording.spans) == 2
    assert (await asyncio.to_thread(sim.control.counters))["graph.security"] == 2
