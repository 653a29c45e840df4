"""End to end: the simulator's alerts reach a recording HTTP sink once per change, by push
(subscription -> notifier -> web -> fetch -> route -> deliver) and by poll."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.config.settings import Settings
from receiver.graph.client import client_for
from receiver.graph.poller import Poller
from receiver.graph.subscriptions import Supervisor
from receiver.pipeline import records
from receiver.pipeline.worker import build_worker
from receiver.store.keys import Keys
from receiver.web.app import create_app
from tests.fixtures.settings import MakeSettings
from tests.fixtures.waiting import drained, notifier_settled
from tests.fixtures.web import free_port, served
from tests.graph.helpers import sim_settings, tenant_entry

RESOURCE = "security/alerts?$filter=vendorInformation/vendor eq 'Microsoft'"


class Recorder:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        self.received.append(json.loads(await request.body()))
        return Response(status_code=204)

    async def wait_for(self, n: int, timeout_s: float = 20) -> None:
        for _ in range(int(timeout_s * 20)):
            if len(self.received) >= n:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{len(self.received)} of {n} deliveries arrived")


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    rec = Recorder()
    async with served(rec.app) as url:
        yield rec, url


def pipeline_settings(
    make_settings: MakeSettings,
    sim: Any,
    redis_url: str,
    tmp_path: Path,
    hook_url: str,
    web_url: str,
    subscriptions: list[dict[str, Any]],
) -> Settings:
    routes = tmp_path / "routes.yaml"
    routes.write_text("route:\n  receiver: hook\n")
    tenant = tenant_entry(sim.tenant, "contoso", subscriptions=subscriptions)
    tenant["poll"] = {"alerts_v2": True, "incidents": False, "overlap_s": 300}
    return sim_settings(
        make_settings,
        sim,
        redis_url,
        public_url=web_url,
        tenants=[tenant],
        sinks=[{"type": "webhook", "name": "hook", "url": hook_url + "/hook"}],
        routes_file=str(routes),
    )


async def test_push_end_to_end_once_per_change(
    make_simulator: Callable[..., Any],
    make_settings: MakeSettings,
    redis_url: str,
    tmp_path: Path,
    recorder: tuple[Recorder, str],
) -> None:
    rec, hook_url = recorder
    sim = make_simulator(legacy_alerts="live")  # the push path exists only on the legacy API
    port = free_port()
    settings = pipeline_settings(
        make_settings,
        sim,
        redis_url,
        tmp_path,
        hook_url,
        f"http://127.0.0.1:{port}",
        [{"resource": RESOURCE}],
    )
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    tid = sim.tenant.tenant_id
    try:
        async with served(create_app(settings), port):
            report = await Supervisor(settings, graph, redis).reconcile()
            assert report.created == 1, report
            worker = build_worker(settings, redis, graph=graph, visibility_timeout_s=2)
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop))
            # Graph sends some notifications twice; the update must still come once.
            await asyncio.to_thread(sim.control.inject_fault, "duplicate_notifications", count=5)
            made = await asyncio.to_thread(sim.control.create_alerts, tid, 20)
            ids = made["ids"]
            await rec.wait_for(20)
            await asyncio.to_thread(sim.control.inject_fault, "duplicate_notifications", count=2)
            await asyncio.to_thread(sim.control.update_alert, tid, ids[0], {"status": "inProgress"})
            await rec.wait_for(21)
            # Nothing can deliver any more: Graph (the simulator) has posted everything it
            # queued, and every stage has read, handled and acknowledged every entry. A
            # duplicate that the dedup step let through would be in `rec.received` now.
            counters = await asyncio.to_thread(notifier_settled, sim.control)
            keys = Keys(settings.redis.key_prefix)
            await drained(
                redis,
                settings.redis.key_prefix,
                streams=(keys.notifications, keys.alerts, keys.sink("hook")),
            )
            stop.set()
            await asyncio.wait_for(task, 30)
            await worker.sinks.aclose()
    finally:
        await graph.aclose()
    assert len(rec.received) == 21
    firsts = [r["id"] for r in rec.received if r["first_seen"]]
    assert sorted(firsts) == sorted(ids)
    updates = [r for r in rec.received if not r["first_seen"]]
    assert [(u["id"], u["status"], u["changes"]) for u in updates] == [
        (ids[0], "inProgress", ["status"])
    ]
    # There were duplicates to drop, and the web took every copy: 5 of the 20 creations
    # and the one update were sent twice (the second fault's other copy is left unused).
    assert counters["notifications.duplicated"] == 6
    assert counters["notifications.items"] == 20 + 1 + 6
    timeline = await records.timeline(redis, keys, tid, ids[0])
    assert [e["event"] for e in timeline] == ["routed", "delivered", "routed", "delivered"]
    await redis.aclose()


async def test_poll_end_to_end_once_per_change(
    make_simulator: Callable[..., Any],
    make_settings: MakeSettings,
    redis_url: str,
    tmp_path: Path,
    recorder: tuple[Recorder, str],
) -> None:
    rec, hook_url = recorder
    sim = make_simulator()
    settings = pipeline_settings(
        make_settings, sim, redis_url, tmp_path, hook_url, "http://127.0.0.1:9", []
    )
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    tid = sim.tenant.tenant_id
    try:
        made = await asyncio.to_thread(sim.control.create_alerts, tid, 12, kind="v2")
        poller = Poller(redis, Keys(settings.redis.key_prefix), settings, graph)
        worker = build_worker(settings, redis, graph=graph)
        assert await poller.poll_all() == 12
        await worker.run(burst=True)
        assert sorted(r["id"] for r in rec.received) == sorted(made["ids"])
        # The next poll re-reads the overlap window: nothing is delivered twice.
        assert await poller.poll_all() == 12
        await worker.run(burst=True)
        assert len(rec.received) == 12
        await worker.sinks.aclose()
    finally:
        await graph.aclose()
        await redis.aclose()
