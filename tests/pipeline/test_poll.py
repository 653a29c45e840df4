"""Polling spread over workers (receiver.pipeline.poll), against the simulator and Redis.

The leader's planner queues poll jobs on the ``poll`` stream; worker consumers (the real
consumer loop, two of them with their own consumer names, as two processes would be) read
them through the real Graph client. Reads are recorded as spans around the client's
``pages``, so "never two reads of one tenant's source at once" is asserted from what was in
flight, not from timing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from itertools import pairwise
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from receiver.config.settings import Settings
from receiver.graph.client import client_for
from receiver.graph.poller import Poller
from receiver.pipeline.consumer import Consumer, ConsumerConfig
from receiver.pipeline.poll import POLL_GROUP, Planner, PollJobs, phase
from receiver.store.entries import NotificationEntry
from receiver.store.keys import Keys
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.settings import MakeSettings
from tests.graph.helpers import Recording, sim_settings, tenant_entry

INTERVAL = 5.0
V2_ONLY = {"alerts_v2": True, "incidents": False, "overlap_s": 0, "interval_s": INTERVAL}
BOTH = {"alerts_v2": True, "incidents": True, "overlap_s": 0, "interval_s": INTERVAL}


class Clock:
    """The planner's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def _settings(
    make_settings: MakeSettings, sim: Any, redis_url: str, poll: dict[str, Any]
) -> Settings:
    tenants = [tenant_entry(t, f"t{i}") | {"poll": poll} for i, t in enumerate(sim.tenants)]
    return sim_settings(make_settings, sim, redis_url, tenants=tenants)


def _worker(
    redis: aioredis.Redis,
    settings: Settings,
    graph: Any,
    name: str,
    *,
    visibility_s: float = 1.0,
    keepalive_s: float | None = None,
    concurrency: int = 2,
) -> tuple[Consumer, PollJobs]:
    keys = Keys(settings.redis.key_prefix)
    jobs = PollJobs(
        redis,
        keys,
        settings,
        Poller(redis, keys, settings, graph),
        consumer=name,
        keepalive_s=keepalive_s or visibility_s / 3,
    )
    config = ConsumerConfig(
        keys.poll_jobs,
        POLL_GROUP,
        consumer=name,
        concurrency=concurrency,
        block_ms=50,
        visibility_timeout_s=visibility_s,
        sweep_interval_s=0.1,
        drain_timeout_s=0.05,
    )
    return Consumer(redis, keys, config, jobs.handle), jobs


def _done(*workers: PollJobs, outcome: str = "done") -> int:
    return sum(int(w.outcomes.labels(outcome)._value.get()) for w in workers)


async def _wait(condition: Callable[[], Any], timeout_s: float = 20.0) -> None:
    """Wait until ``condition()`` (a value, or an awaitable of one) is true."""
    async with asyncio.timeout(timeout_s):
        while True:
            value = condition()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            await asyncio.sleep(0.02)


async def _empty(redis: aioredis.Redis, keys: Keys) -> bool:
    return int(await redis.xlen(keys.poll_jobs)) == 0


async def _queued(redis: aioredis.Redis, keys: Keys) -> list[NotificationEntry]:
    return [NotificationEntry.from_fields(f) for _, f in await redis.xrange(keys.notifications)]


@contextlib.asynccontextmanager
async def _running(*consumers: Consumer) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(c.run(stop)) for c in consumers]
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_two_workers_share_the_jobs_and_never_read_one_source_twice_at_once(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> None:
    sim = make_simulator(tenants=6)
    for tenant in sim.tenants:
        await asyncio.to_thread(sim.control.create_alerts, tenant.tenant_id, 1, kind="v2")
    await asyncio.to_thread(sim.control.inject_fault, "graph_latency", ms=200)
    settings = _settings(make_settings, sim, redis_url, BOTH)
    keys = Keys(settings.redis.key_prefix)
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    recording = Recording(graph)
    clock = Clock()
    planner = Planner(redis, keys, settings, now=clock)
    a, jobs_a = _worker(redis, settings, recording, "worker-a")
    b, jobs_b = _worker(redis, settings, recording, "worker-b")
    try:
        assert await planner.tick() == 0  # the first tick only sets each unit's next slot
        clock.t += INTERVAL
        assert await planner.tick() == 12  # 6 tenants x 2 sources, each at its slot
        clock.t += INTERVAL
        assert await planner.tick() == 0  # all due again, but their jobs are still queued
        assert sum(planner.skipped.labels(s)._value.get() for s in ("alerts_v2", "incidents")) == 12
        async with _running(a, b):
            await _wait(lambda: _done(jobs_a, jobs_b) == 12)
            # Both workers took jobs: each holds at most 2 of the 12 (200 ms reads).
            assert jobs_a.outcomes.labels("done")._value.get() >= 2
            assert jobs_b.outcomes.labels("done")._value.get() >= 2
            first = await _queued(redis, keys)
            assert len(first) == 12 and {e.tenant_id for e in first} == {
                t.tenant_id for t in sim.tenants
            }
            # The leader now wants every source every tick; only finished ones are queued.
            async with asyncio.timeout(60):
                while min(Counter((s.tenant_id, s.path) for s in recording.spans).values()) < 3:
                    clock.t += INTERVAL
                    await planner.tick()
                    await asyncio.sleep(0.05)
            await _wait(lambda: _empty(redis, keys))  # every queued job done
    finally:
        await graph.aclose()
    try:
        per_unit = Counter((s.tenant_id, s.path) for s in recording.spans)
        assert len(per_unit) == 12 and min(per_unit.values()) >= 3
        for unit in per_unit:  # one after another, never side by side, across both workers
            spans = sorted(
                (s for s in recording.spans if (s.tenant_id, s.path) == unit), key=lambda s: s.start
            )
            assert all(later.start >= earlier.end for earlier, later in pairwise(spans))
        assert recording.peak() <= 4  # two workers, two jobs each
        assert sum(planner.skipped.labels(s)._value.get() for s in ("alerts_v2", "incidents")) > 12
        assert _done(jobs_a, jobs_b) == len(recording.spans)
        for tenant in sim.tenants:
            for source in ("alerts_v2", "incidents"):
                assert await redis.get(keys.watermark(tenant.tenant_id, source))
        assert (await asyncio.to_thread(sim.control.counters))["graph.security"] == len(
            recording.spans
        )
    finally:
        await redis.aclose()


class Stuck:
    """A Graph client that hangs after ``after`` items (the first page is queued by then),
    until ``go`` is set: a worker caught between queueing and acknowledging."""

    def __init__(self, graph: Any, after: int) -> None:
        self.graph = graph
        self.after = after
        self.go = asyncio.Event()
        self.reached = asyncio.Event()

    async def pages(
        self, tenant_id: str, path: str, params: dict[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        n = 0
        async for item in self.graph.pages(tenant_id, path, params):
            if n == self.after:
                self.reached.set()
                await self.go.wait()
            n += 1
            yield item


async def _one_job(redis: aioredis.Redis, settings: Settings) -> Planner:
    clock = Clock()
    planner = Planner(redis, Keys(settings.redis.key_prefix), settings, now=clock)
    await planner.tick()
    clock.t += INTERVAL
    assert await planner.tick() == 1
    return planner


@pytest.fixture
async def one_tenant(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> AsyncIterator[tuple[Any, Settings, aioredis.Redis, Any]]:
    sim = make_simulator()
    # 130 alerts: the first page (100) is queued before the second is read.
    await asyncio.to_thread(sim.control.create_alerts, sim.tenant.tenant_id, 130, kind="v2")
    settings = _settings(make_settings, sim, redis_url, V2_ONLY)
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    yield sim, settings, redis, graph
    await graph.aclose()
    await redis.aclose()


async def test_a_worker_that_dies_mid_poll_has_its_job_taken_over_and_nothing_lost(
    one_tenant: tuple[Any, Settings, aioredis.Redis, Any],
) -> None:
    sim, settings, redis, graph = one_tenant
    keys = Keys(settings.redis.key_prefix)
    tid = sim.tenant.tenant_id
    planner = await _one_job(redis, settings)
    stuck = Stuck(graph, after=100)
    a, jobs_a = _worker(redis, settings, stuck, "worker-a")
    stop_a = asyncio.Event()
    task_a = asyncio.create_task(a.run(stop_a))
    await asyncio.wait_for(stuck.reached.wait(), 20)
    assert await redis.xlen(keys.notifications) == 100  # queued; not acknowledged
    assert await redis.get(keys.watermark(tid, "alerts_v2")) is None
    # The worker dies: its loop and its keep-alive end, the job stays pending to it.
    task_a.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task_a
    pending = await redis.xpending(keys.poll_jobs, POLL_GROUP)
    assert pending["pending"] == 1 and pending["consumers"][0]["name"] == b"worker-a"
    # Meanwhile the leader does not queue the tenant's source again.
    planner.now.t += INTERVAL  # type: ignore[attr-defined]
    assert await planner.tick() == 0
    b, jobs_b = _worker(redis, settings, graph, "worker-b")
    async with _running(b):
        await _wait(lambda: _done(jobs_b) == 1)
    got = await _queued(redis, keys)
    alerts = {a["id"] for a in await asyncio.to_thread(sim.control.alerts, tid, "v2")}
    assert {e.resource_id for e in got} == alerts  # nothing lost
    # Re-read from the watermark that had not moved: what the dead worker queued, once more.
    assert len(got) == 100 + 130
    assert await redis.get(keys.watermark(tid, "alerts_v2")) is not None
    assert await redis.xlen(keys.poll_jobs) == 0
    assert await redis.get(keys.poll_job(tid, "alerts_v2")) is None
    assert _done(jobs_a) == 0
    # The next slot queues a job again.
    planner.now.t += INTERVAL  # type: ignore[attr-defined]
    assert await planner.tick() == 1


async def test_a_stalled_worker_writes_nothing_after_its_job_was_taken_over(
    one_tenant: tuple[Any, Settings, aioredis.Redis, Any],
) -> None:
    sim, settings, redis, graph = one_tenant
    keys = Keys(settings.redis.key_prefix)
    tid = sim.tenant.tenant_id
    await _one_job(redis, settings)
    stuck = Stuck(graph, after=100)
    # Worker a stalls: no keep-alive within b's visibility timeout (as in a long GC pause).
    a, jobs_a = _worker(redis, settings, stuck, "worker-a", visibility_s=60, keepalive_s=60)
    b, jobs_b = _worker(redis, settings, graph, "worker-b", visibility_s=0.5)
    async with _running(a):
        await asyncio.wait_for(stuck.reached.wait(), 20)
        async with _running(b):
            await _wait(lambda: _done(jobs_b) == 1)
        mark = await redis.get(keys.watermark(tid, "alerts_v2"))
        assert mark is not None
        stuck.go.set()  # a wakes up and goes on with its read
        await _wait(lambda: _done(jobs_a, outcome="lost") == 1)
    got = await _queued(redis, keys)
    assert len(got) == 100 + 130  # a's first page, b's whole read; nothing of a's after
    assert await redis.get(keys.watermark(tid, "alerts_v2")) == mark
    assert _done(jobs_a) == 0
    assert await redis.xlen(keys.poll_jobs) == 0
    assert (await redis.xpending(keys.poll_jobs, POLL_GROUP))["pending"] == 0


async def test_a_job_lost_from_the_stream_does_not_block_its_tenant(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> None:
    """The marker names a job that is gone (poisoned, or a Redis that lost the stream): the
    leader queues a new one at the next slot instead of waiting for it forever."""
    sim = make_simulator()
    settings = _settings(make_settings, sim, redis_url, V2_ONLY)
    keys = Keys(settings.redis.key_prefix)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        planner = await _one_job(redis, settings)
        marker = keys.poll_job(sim.tenant.tenant_id, "alerts_v2")
        job_id = await redis.get(marker)
        assert job_id and await redis.xrange(keys.poll_jobs, job_id, job_id)
        planner.now.t += INTERVAL  # type: ignore[attr-defined]
        assert await planner.tick() == 0  # still queued
        await redis.xdel(keys.poll_jobs, job_id)
        planner.now.t += 1.0  # a waiting unit is asked again a second later
        assert await planner.tick() == 1
        assert await redis.get(marker) != job_id
        assert await redis.xlen(keys.poll_jobs) == 1
        assert planner.overdue._value.get() == 0
    finally:
        await redis.aclose()


async def test_a_malformed_job_goes_to_the_poison_stream(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> None:
    sim = make_simulator()
    settings = _settings(make_settings, sim, redis_url, V2_ONLY)
    keys = Keys(settings.redis.key_prefix)
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    try:
        await redis.xadd(
            keys.poll_jobs,
            {
                "v": "1",
                "tenant_id": sim.tenant.tenant_id,
                "source": "security/../x",
                "watermark": "",
            },
        )
        consumer, _ = _worker(redis, settings, graph, "worker-a")
        await consumer.run(burst=True)
        poisoned = await redis.xrange(keys.poison)
        assert len(poisoned) == 1 and b"unknown poll source" in poisoned[0][1][b"error"]
        assert await redis.xlen(keys.notifications) == 0
        assert (await asyncio.to_thread(sim.control.counters)).get("graph.security", 0) == 0
    finally:
        await graph.aclose()
        await redis.aclose()


def test_phases_spread_a_thousand_tenants_over_the_interval() -> None:
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(1000)]
    slots = Counter(int(phase(t, s, 10.0)) for t in ids for s in ("alerts_v2", "incidents"))
    assert sorted(slots) == list(range(10))
    assert min(slots.values()) >= 150 and max(slots.values()) <= 250  # 200 a second
    assert phase(ids[0], "alerts_v2", 10.0) == phase(ids[0], "alerts_v2", 10.0)


async def test_a_tick_that_meets_redis_down_keeps_its_units_due(
    make_simulator: Callable[..., Any],
    make_settings: MakeSettings,
    make_redis_server: type[RedisServer],
) -> None:
    sim = make_simulator(tenants=3)
    server = make_redis_server(appendonly=True)
    server.start()
    settings = _settings(make_settings, sim, server.url, BOTH)
    keys = Keys(settings.redis.key_prefix)
    redis = aioredis.Redis.from_url(server.url, socket_timeout=0.5)
    clock = Clock()
    planner = Planner(redis, keys, settings, now=clock)
    try:
        assert await planner.tick() == 0
        server.stop()
        clock.t += INTERVAL
        with pytest.raises((RedisError, OSError)):
            await planner.tick()
        server.start()
        clock.t += 0.5  # the next tick, soon after: every unit is still due
        assert await planner.tick() == 6
        assert await redis.xlen(keys.poll_jobs) == 6
    finally:
        await redis.aclose()
