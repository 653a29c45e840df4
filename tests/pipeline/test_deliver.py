"""The deliver stage with real webhook sinks against loopback servers that fail on demand."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.envelope import Envelope
from receiver.pipeline import records
from receiver.pipeline.consumer import Consumer, ConsumerConfig
from receiver.pipeline.deliver import DeliverPolicy, DeliverStage, replay
from receiver.sinks.registry import Sinks, build_sinks
from receiver.store.keys import Keys
from tests.fixtures.settings import TENANT_ID, MakeSettings
from tests.fixtures.web import served

FAST = DeliverPolicy(
    schedule_s=(0.05, 0.05, 0.05), max_attempts=4, jitter=0.0, breaker_threshold=100
)


class Endpoint:
    """A sink's far end: answers `status` (changeable), records what it got."""

    def __init__(self) -> None:
        self.status = 204
        self.retry_after: str | None = None
        self.got: list[dict[str, Any]] = []
        self.calls = 0
        self.app = Starlette(routes=[Route("/in", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        self.calls += 1
        body = json.loads(await request.body())
        headers = {"Retry-After": self.retry_after} if self.retry_after else {}
        if self.status < 300:
            self.got.append(body)
        return Response(status_code=self.status, headers=headers)


@pytest.fixture
async def endpoints() -> AsyncIterator[tuple[Endpoint, Endpoint, str, str]]:
    a, b = Endpoint(), Endpoint()
    async with served(a.app) as url_a, served(b.app) as url_b:
        yield a, b, url_a + "/in", url_b + "/in"


def envelope(n: int) -> Envelope:
    return Envelope(
        id=f"alert-{n}",
        tenant_id=TENANT_ID,
        source_api="alerts_v2",
        title=f"Alert {n}",
        severity="high",
        status="new",
        tenant="contoso",
        updated_at=f"2026-11-30T10:00:{n:02d}.0000000Z",
    )


async def queue(redis: aioredis.Redis, keys: Keys, sink: str, *envs: Envelope) -> None:
    for env in envs:
        await redis.xadd(keys.sink(sink), {"e": env.to_json(), "first": "1", "route": "route"})


@dataclass
class Rig:
    """Two webhook sinks, ``a`` and ``b``, pointed at two recording endpoints."""

    a: Endpoint
    b: Endpoint
    url_a: str
    keys: Keys
    redis: aioredis.Redis
    sinks: Sinks

    def stage(self, sink: str) -> DeliverStage:
        return DeliverStage(self.redis, self.keys, self.sinks[sink], FAST)


@pytest.fixture
async def rig(make_settings: MakeSettings, redis_url: str, endpoints: Any) -> AsyncIterator[Rig]:
    a, b, url_a, url_b = endpoints
    settings = make_settings(
        redis_url=redis_url,
        sinks=[
            {"type": "webhook", "name": "a", "url": url_a},
            {"type": "webhook", "name": "b", "url": url_b},
        ],
    )
    redis = aioredis.Redis.from_url(redis_url)
    sinks = build_sinks(settings.sinks)
    yield Rig(a, b, url_a, Keys(settings.redis.key_prefix), redis, sinks)
    await sinks.aclose()
    await redis.aclose()


async def run_stage(redis: aioredis.Redis, keys: Keys, stage: DeliverStage, seconds: float) -> None:
    consumer = Consumer(
        redis,
        keys,
        ConsumerConfig(
            stage.stream, "deliver", block_ms=20, visibility_timeout_s=5, sweep_interval_s=0.02
        ),
        stage.handle,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_sink_down_then_back_others_unaffected(rig: Rig) -> None:
    a, b, keys, redis = rig.a, rig.b, rig.keys, rig.redis
    envs = [envelope(i) for i in range(5)]
    await queue(redis, keys, "a", *envs)
    await queue(redis, keys, "b", *envs)
    a.status = 503  # sink a is down
    # Enough attempts that the outage cannot exhaust them however fast retries come round.
    stage_a = DeliverStage(
        redis,
        keys,
        rig.sinks["a"],
        DeliverPolicy(
            schedule_s=(0.05,) * 1000, max_attempts=10_000, jitter=0.0, breaker_threshold=100
        ),
    )
    stage_b = rig.stage("b")
    await asyncio.gather(run_stage(redis, keys, stage_a, 0.3), run_stage(redis, keys, stage_b, 0.3))
    assert len(b.got) == 5  # b got everything while a was failing
    assert a.got == [] and a.calls >= 5
    a.status = 204  # a is back: everything waiting is delivered, once
    await run_stage(redis, keys, stage_a, 0.5)
    assert sorted(x["id"] for x in a.got) == [f"alert-{i}" for i in range(5)]
    assert await redis.xlen(keys.dlq("a")) == 0
    timeline = await records.timeline(redis, keys, TENANT_ID, "alert-0")
    kinds = [e["event"] for e in timeline]
    assert "retrying" in kinds and kinds.count("delivered") == 2


async def test_permanent_error_dead_letters_at_once_and_replay_delivers(rig: Rig) -> None:
    a, keys, redis = rig.a, rig.keys, rig.redis
    await queue(redis, keys, "a", envelope(1), envelope(2))
    a.status = 400
    stage = rig.stage("a")
    await run_stage(redis, keys, stage, 0.3)
    assert a.calls == 2  # one attempt each: a 400 is not worth retrying
    dlq = await redis.xrange(keys.dlq("a"))
    assert len(dlq) == 2
    assert dlq[0][1][b"reason"] == b"permanent error"
    assert b"400" in dlq[0][1][b"error"]
    assert rig.url_a.encode() not in dlq[0][1][b"error"]  # no URL in the stored error
    a.status = 204
    first = next(i for i, f in dlq if json.loads(f[b"e"])["id"] == "alert-1")
    assert await replay(redis, keys, "a", entry_ids=[first.decode()]) == 1
    await run_stage(redis, keys, stage, 0.3)
    assert [x["id"] for x in a.got] == ["alert-1"]
    assert await replay(redis, keys, "a") == 1
    await run_stage(redis, keys, stage, 0.3)
    assert [x["id"] for x in a.got] == ["alert-1", "alert-2"]
    assert await redis.xlen(keys.dlq("a")) == 0


async def test_retries_exhausted_go_to_the_dlq(rig: Rig) -> None:
    a, keys, redis = rig.a, rig.keys, rig.redis
    await queue(redis, keys, "a", envelope(1))
    a.status = 502
    await run_stage(redis, keys, rig.stage("a"), 1.0)
    assert a.calls == FAST.max_attempts
    [(_, fields)] = await redis.xrange(keys.dlq("a"))
    assert fields[b"reason"] == b"retries exhausted"
    assert fields[b"attempts"] == str(FAST.max_attempts).encode()


async def test_retry_after_is_honoured(rig: Rig) -> None:
    a, keys, redis = rig.a, rig.keys, rig.redis
    await queue(redis, keys, "a", envelope(1))
    a.status, a.retry_after = 429, "0.8"
    task = asyncio.create_task(run_stage(redis, keys, rig.stage("a"), 1.5))
    await asyncio.sleep(0.5)
    assert a.calls == 1  # the schedule says 0.05 s, the server said 0.8 s
    a.status, a.retry_after = 204, None
    await task
    assert a.calls == 2 and len(a.got) == 1


def test_circuit_breaker_opens_and_schedule_grows() -> None:
    from receiver.pipeline.deliver import CircuitBreaker

    breaker = CircuitBreaker(threshold=3, cooldown_s=30)
    for _ in range(2):
        breaker.failure()
    assert breaker.open_for() == 0
    breaker.failure()
    assert 29 < breaker.open_for() <= 30
    breaker.success()
    assert breaker.open_for() == 0
    policy = DeliverPolicy(jitter=0.0)
    assert [policy.delay(n, None) for n in range(1, 9)] == [5, 30, 120, 600, 1800, 3600, 3600, 3600]
    assert policy.delay(1, 12.5) == 12.5
