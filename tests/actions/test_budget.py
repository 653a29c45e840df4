"""Issue 15, 4 and 8: what the action endpoint may cost and how it fails.

The real action endpoint (uvicorn, in front of the web app), the simulator over HTTPS, a real
Redis and the real pipeline delivering to a recording webhook: clients looping on one unused
link get a few pages and then 429s, Graph is read once for all of them, and a new alert still
reaches its sink in normal time. Redis lost between claiming a link and releasing it gives the
promised refusal page; forged POSTs are counted but never audited.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from receiver.actions.app import mount
from receiver.actions.audit import recent
from receiver.actions.budget import LINK_VIEWS, TENANT_READS, AlertCache
from receiver.actions.links import LinkSigner
from receiver.config.settings import Settings
from receiver.graph.client import client_for
from receiver.graph.poller import Poller
from receiver.pipeline.worker import build_worker
from receiver.store.keys import Keys
from receiver.web.app import create_app
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.settings import MakeSettings
from tests.fixtures.simulator import SimulatorHandle
from tests.fixtures.web import free_port, served
from tests.graph.helpers import sim_settings, tenant_entry
from tests.pipeline.test_e2e import Recorder

KEY = "budget-signing-key-0123456789abcdefghijklmnop"
KEYS = Keys("{test}")
RATE_LIMIT = 20  # the shared per-tenant Graph limiter: 20 requests a minute, for the test


def _settings(
    make_settings: MakeSettings,
    sim: SimulatorHandle,
    redis_url: str,
    port: int,
    hook_url: str,
    tmp_path: Path,
) -> Settings:
    routes = tmp_path / "routes.yaml"
    routes.write_text("route:\n  receiver: hook\n")
    tenant = tenant_entry(sim.tenant, "contoso")
    tenant["poll"] = {"alerts_v2": True, "incidents": False, "overlap_s": 300}
    return sim_settings(
        make_settings,
        sim,
        redis_url,
        public_url=f"http://127.0.0.1:{port}",
        tenants=[tenant],
        graph={"max_retries": 0, "rate_limit_per_minute": RATE_LIMIT},
        sinks=[{"type": "webhook", "name": "hook", "url": hook_url + "/hook"}],
        routes_file=str(routes),
        actions={"enabled": True, "signing_keys": [{"id": "k1", "key": KEY}]},
    )


def _link(settings: Settings, tenant_id: str, alert_id: str, action: str = "take") -> str:
    token = LinkSigner([("k1", KEY.encode())], 3600).sign(alert_id, tenant_id, "alerts_v2", action)
    return f"{settings.actions.path}/{token}"


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    rec = Recorder()
    async with served(rec.app) as url:
        yield rec, url


async def test_a_looped_link_cannot_starve_the_pipeline(
    simulator: SimulatorHandle,
    make_settings: MakeSettings,
    redis_url: str,
    tmp_path: Path,
    recorder: tuple[Recorder, str],
) -> None:
    rec, hook_url = recorder
    port = free_port()
    settings = _settings(make_settings, simulator, redis_url, port, hook_url, tmp_path)
    tid = simulator.tenant.tenant_id
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    registry = CollectorRegistry()
    looped = simulator.control.create_alert(tid, kind="v2")
    link = _link(settings, tid, looped)
    statuses: list[int] = []
    try:
        async with served(mount(create_app(settings), settings, registry=registry), port) as url:
            simulator.control.reset_counters()

            async def loop(client: httpx.AsyncClient, until: float) -> None:
                while time.monotonic() < until:
                    statuses.append((await client.get(link)).status_code)

            async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=120) as client:
                until = time.monotonic() + 3.0
                loops = [asyncio.create_task(loop(client, until)) for _ in range(4)]
                await asyncio.sleep(1.0)  # the loops are at it: now a new alert comes

                # polled and delivered by the real pipeline, in normal time
                created = time.monotonic()
                [new] = simulator.control.create_alerts(tid, 1, kind="v2")["ids"]
                poller = Poller(redis, KEYS, settings, graph)
                worker = build_worker(settings, redis, graph=graph)
                try:
                    async with asyncio.timeout(120):
                        while new not in [r["id"] for r in rec.received]:
                            await poller.poll_all()
                            await worker.run(burst=True)
                finally:
                    await worker.sinks.aclose()
                to_sink_s = time.monotonic() - created
                try:
                    async with asyncio.timeout(10):
                        await asyncio.gather(*loops)
                finally:
                    for task in loops:
                        task.cancel()
            # every security request minus the pipeline's own (its client counts them)
            page_reads = simulator.control.counters().get("graph.security", 0) - graph.calls
    finally:
        await graph.aclose()
        await redis.aclose()
    print(
        f"link_gets={len(statuses)} graph_reads_for_pages={page_reads} "
        f"time_to_sink_s={to_sink_s:.2f}"
    )
    assert to_sink_s < 10, f"a new alert took {to_sink_s:.1f}s to reach its sink"
    assert statuses.count(200) == LINK_VIEWS and set(statuses) == {200, 429}
    assert page_reads == 1  # one read for every page of the link: the cached one
    assert (
        registry.get_sample_value(
            "receiver_actions_total", {"action": "take", "outcome": "too_many_views"}
        )
        == len(statuses) - LINK_VIEWS
    )


async def test_pages_share_of_graph_is_capped_per_tenant(
    simulator: SimulatorHandle, make_settings: MakeSettings, redis_url: str, tmp_path: Path
) -> None:
    """Many links (each within its own view budget) still cannot take more than the pages'
    share of the tenant's Graph budget."""
    port = free_port()
    settings = _settings(make_settings, simulator, redis_url, port, "http://127.0.0.1:9", tmp_path)
    tid = simulator.tenant.tenant_id
    ids = simulator.control.create_alerts(tid, 20, kind="v2")["ids"]
    simulator.control.reset_counters()
    app = mount(create_app(settings), settings)
    async with served(app, port) as url, httpx.AsyncClient(base_url=url, trust_env=False) as client:
        statuses = [(await client.get(_link(settings, tid, i))).status_code for i in ids]
    assert statuses == [200] * TENANT_READS + [429] * (len(ids) - TENANT_READS)
    assert simulator.control.counters().get("graph.security", 0) == TENANT_READS


def test_alert_cache_expires_and_is_bounded() -> None:
    now = [0.0]
    cache = AlertCache(ttl_s=15, max_entries=2, clock=lambda: now[0])
    cache.put(("t", "alerts_v2", "a"), {"id": "a"})
    cache.put(("t", "alerts_v2", "b"), {"id": "b"})
    cache.put(("t", "alerts_v2", "c"), {"id": "c"})
    assert cache.get(("t", "alerts_v2", "a")) is None  # the oldest went first
    assert cache.get(("t", "alerts_v2", "c")) == {"id": "c"}
    now[0] += 15
    assert cache.get(("t", "alerts_v2", "c")) is None


async def test_redis_lost_while_graph_fails_gives_the_refusal_page(
    simulator: SimulatorHandle,
    make_settings: MakeSettings,
    redis_url: str,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    """The link is claimed in Redis, Graph then fails, and releasing the claim finds Redis
    gone: the page says so (503), not a 500."""
    port = free_port()
    settings = _settings(make_settings, simulator, redis_url, port, "http://127.0.0.1:9", tmp_path)
    tid = simulator.tenant.tenant_id
    alert_id = simulator.control.create_alert(tid, kind="v2")
    async with (
        served(mount(create_app(settings), settings), port) as url,
        httpx.AsyncClient(base_url=url, trust_env=False, timeout=30) as client,
    ):
        simulator.control.inject_fault("graph_latency", ms=1500)
        simulator.control.inject_fault("graph_5xx", count=5, status=503)
        try:
            task = asyncio.create_task(
                client.post(_link(settings, tid, alert_id), data={"name": "Adele"})
            )
            await asyncio.sleep(0.7)  # the link is claimed; Graph is still answering
            redis_server.kill()
            page = await task
        finally:
            simulator.control.clear_faults()
    assert page.status_code == 503, page.text
    assert "store is unavailable" in page.text and "Nothing was changed" in page.text


async def test_forged_posts_are_counted_not_audited(
    simulator: SimulatorHandle, make_settings: MakeSettings, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = _settings(make_settings, simulator, redis_url, port, "http://127.0.0.1:9", tmp_path)
    tid = simulator.tenant.tenant_id
    registry = CollectorRegistry()
    expired = LinkSigner([("k1", KEY.encode())], 60, clock=lambda: time.time() - 3600).sign(
        "x", tid, "alerts_v2", "take"
    )
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with (
            served(mount(create_app(settings), settings, registry=registry), port) as url,
            httpx.AsyncClient(base_url=url, trust_env=False) as client,
        ):
            for i in range(50):
                forged = await client.post(
                    f"{settings.actions.path}/forged-{i}", data={"name": "x"}
                )
                assert forged.status_code == 400
            old = await client.post(f"{settings.actions.path}/{expired}", data={"name": "x"})
            assert old.status_code == 410
        records: list[Any] = await recent(redis, KEYS)
    finally:
        await redis.aclose()
    assert [r.outcome for r in records] == ["expired"]  # a genuine signature: audited
    assert (
        registry.get_sample_value(
            "receiver_actions_total", {"action": "unknown", "outcome": "invalid"}
        )
        == 50
    )
