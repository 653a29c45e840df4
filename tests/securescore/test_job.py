"""The Secure Score job against the simulator (HTTPS, real MSAL) and a real Redis: a 30-day
history with a drop on day 20 makes one drop event and one weekly digest, however often and
by however many runners the job runs, and they travel the routing tree like alerts."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from receiver.config.settings import Settings
from receiver.envelope import Envelope
from receiver.graph.client import GraphClient, client_for
from receiver.pipeline import records
from receiver.pipeline.worker import build_worker
from receiver.securescore.job import SecureScoreJob
from receiver.securescore.watch import iso_week
from receiver.store.keys import Keys
from tests.fixtures.settings import MakeSettings
from tests.fixtures.simulator import SimulatorHandle
from tests.fixtures.web import served
from tests.graph.helpers import sim_settings, tenant_entry
from tests.pipeline.test_e2e import Recorder


def _settings(
    make_settings: MakeSettings,
    sim: SimulatorHandle,
    redis_url: str,
    tmp_path: Path,
    hook_url: str = "http://127.0.0.1:9",
    **secure_score: Any,
) -> Settings:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "route:\n  receiver: console\n  routes:\n"
        "    - matchers: ['kind=\"secure_score\"']\n      receiver: hook\n"
    )
    tenant = tenant_entry(sim.tenant, "contoso")
    tenant["poll"] = {"alerts_v2": False}
    tenant["secure_score"] = {"enabled": True, "initial_lookback_days": 30, **secure_score}
    return sim_settings(
        make_settings,
        sim,
        redis_url,
        tenants=[tenant],
        graph={"max_retries": 0},
        sinks=[
            {"type": "console", "name": "console"},
            {"type": "webhook", "name": "hook", "url": hook_url + "/hook"},
        ],
        routes_file=str(routes),
    )


def _today(sim: SimulatorHandle) -> dt.date:
    return dt.date.fromisoformat(str(sim.control.clock()["now"])[:10])


async def _queued(redis: aioredis.Redis, keys: Keys) -> list[Envelope]:
    entries = await redis.xrange(keys.alerts)
    return [Envelope.from_json(fields[b"e"]) for _, fields in entries]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    rec = Recorder()
    async with served(rec.app) as url:
        yield rec, url


def _job(redis: aioredis.Redis, settings: Settings, graph: GraphClient) -> SecureScoreJob:
    return SecureScoreJob(
        redis, Keys(settings.redis.key_prefix), settings, graph, registry=CollectorRegistry()
    )


async def test_drop_on_day_20_makes_one_drop_and_one_digest_once(
    make_simulator: Callable[..., SimulatorHandle],
    make_settings: MakeSettings,
    redis: aioredis.Redis,
    redis_url: str,
    tmp_path: Path,
    recorder: tuple[Recorder, str],
) -> None:
    rec, hook_url = recorder
    sim = make_simulator()
    tid = sim.tenant.tenant_id
    # 30 days, day 0 today: days 10..0 ago are 15 points lower, so day 20 of 30 drops.
    await asyncio.to_thread(sim.control.seed_secure_scores, tid, 30, 10, 15.0)
    today = _today(sim)
    settings = _settings(make_settings, sim, redis_url, tmp_path, hook_url)
    keys = Keys(settings.redis.key_prefix)
    graph = client_for(settings, redis)
    try:
        # Two leaders at once (a lease handover), then a re-run and a restarted process.
        first, second = _job(redis, settings, graph), _job(redis, settings, graph)
        counts = await asyncio.gather(first.run_all(), second.run_all())
        assert sorted(counts) == [0, 2]
        assert await first.run_all() == 0
        assert await _job(redis, settings, graph).run_all() == 0

        drop, digest = await _queued(redis, keys)
        drop_day = today - dt.timedelta(days=10)
        assert drop.id == f"securescore:contoso:{drop_day}:drop"
        assert (drop.kind, drop.severity, drop.tenant_id) == ("secure_score", "medium", tid)
        assert drop.raw["change"] <= -13  # 15 points, less a day's drift of at most 2
        assert drop.raw["controls"][0]["controlName"] == "AdminMFAV2"
        assert drop.raw["controls"][0]["score"] == 0
        assert drop.raw["trend"][-1]["date"] == drop_day.isoformat()
        assert len(drop.raw["trend"]) == 20  # the days up to the drop
        assert digest.id == f"securescore:contoso:{iso_week(today)}:digest"
        assert digest.severity == "informational"
        trend = digest.raw["trend"]
        assert len(trend) == 30 and trend[-1]["date"] == today.isoformat()
        assert [a["id"] for a in digest.raw["actions"]][:1] == ["AdminMFAV2"]  # 10 points off
        assert digest.raw["actions"][0]["gain"] == 10
        state = await redis.hgetall(keys.secure_score(tid))
        assert state == {
            b"evaluated": today.isoformat().encode(),
            b"digest_week": iso_week(today).encode(),
        }

        # The same routing tree: kind = secure_score goes to the webhook, with its timeline.
        worker = build_worker(settings, redis, graph=graph)
        await worker.run(burst=True)
        await worker.sinks.aclose()
        assert sorted(r["id"] for r in rec.received) == sorted([drop.id, digest.id])
        assert {r["kind"] for r in rec.received} == {"secure_score"}
        timeline = await records.timeline(redis, keys, tid, drop.id)
        assert [e["event"] for e in timeline] == ["routed", "delivered"]
        assert timeline[0]["sink"] == "hook"

        # A week later: a new drop today and the new week's digest, nothing of the old days.
        await asyncio.to_thread(sim.control.advance_clock, days=7)
        await asyncio.to_thread(sim.control.seed_secure_scores, tid, 30, 0, 15.0)
        later = today + dt.timedelta(days=7)
        new = await first.run_tenant(settings.tenants[0])
        assert [e.id for e in new] == [
            f"securescore:contoso:{later}:drop",
            f"securescore:contoso:{iso_week(later)}:digest",
        ]
        assert [e.id for e in await _queued(redis, keys)][-2:] == [e.id for e in new]
        assert await second.run_all() == 0
    finally:
        await graph.aclose()


async def test_first_run_looks_back_only_as_configured(
    make_simulator: Callable[..., SimulatorHandle],
    make_settings: MakeSettings,
    redis: aioredis.Redis,
    redis_url: str,
    tmp_path: Path,
) -> None:
    sim = make_simulator()
    tid = sim.tenant.tenant_id
    await asyncio.to_thread(sim.control.seed_secure_scores, tid, 30, 10, 15.0)
    settings = _settings(
        make_settings, sim, redis_url, tmp_path, initial_lookback_days=1, digest_weekday=None
    )
    graph = client_for(settings, redis)
    try:
        # The drop was 10 days ago: a first start does not dig it up, nor send a digest.
        assert await _job(redis, settings, graph).run_all() == 0
        state = await redis.hgetall(Keys("{test}").secure_score(tid))
        assert state[b"evaluated"] == _today(sim).isoformat().encode()
        assert state[b"digest_week"] == b""
    finally:
        await graph.aclose()


async def test_graph_failure_loses_nothing(
    make_simulator: Callable[..., SimulatorHandle],
    make_settings: MakeSettings,
    redis: aioredis.Redis,
    redis_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = make_simulator()
    tid = sim.tenant.tenant_id
    await asyncio.to_thread(sim.control.seed_secure_scores, tid, 30, 10, 15.0)
    settings = _settings(make_settings, sim, redis_url, tmp_path)
    keys = Keys(settings.redis.key_prefix)
    graph = client_for(settings, redis)
    try:
        job = _job(redis, settings, graph)
        await asyncio.to_thread(sim.control.inject_fault, "graph_5xx", count=1, status=503)
        assert await job.run_all() == 0
        assert "secure score check failed" in caplog.text and "503" in caplog.text
        assert await redis.exists(keys.secure_score(tid)) == 0  # nothing marked as done
        assert await redis.xlen(keys.alerts) == 0
        assert job.registry is not None
        assert job.registry.get_sample_value("receiver_securescore_failures_total") == 1
        # The next run does it all.
        assert await job.run_all() == 2
        assert (
            job.registry.get_sample_value(
                "receiver_securescore_points", {"tenant": "contoso", "kind": "max"}
            )
            == 350
        )
        assert (
            job.registry.get_sample_value("receiver_securescore_events_total", {"reason": "drop"})
            == 1
        )
    finally:
        await graph.aclose()


def test_the_scheduler_runs_it_only_when_enabled(
    make_simulator: Callable[..., SimulatorHandle],
    make_settings: MakeSettings,
    redis_url: str,
    tmp_path: Path,
) -> None:
    from receiver.scheduler.jobs import build_runner

    sim = make_simulator()
    on = _settings(make_settings, sim, redis_url, tmp_path, interval_s=3600)
    off = _settings(make_settings, sim, redis_url, tmp_path, enabled=False)

    async def jobs(settings: Settings) -> dict[str, float]:
        redis = aioredis.Redis.from_url(redis_url)
        graph = client_for(settings, redis)
        try:
            runner = build_runner(settings, redis, graph)
            return {j.name: j.interval_s for j in runner.jobs}
        finally:
            await graph.aclose()
            await redis.aclose()

    assert asyncio.run(jobs(on))["secure_score"] == 3600
    assert "secure_score" not in asyncio.run(jobs(off))
    assert off.tenants[0].secure_score.interval_s == 86_400  # the default: daily
