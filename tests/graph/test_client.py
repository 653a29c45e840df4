from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Callable

import httpx
import pytest
from redis.asyncio import Redis

from receiver.config.settings import Settings
from receiver.config.values import parse_retry_after
from receiver.graph.auth import TokenProvider
from receiver.graph.client import GraphClient, GraphError, GraphUnavailable
from receiver.graph.ratelimit import RateLimiter
from receiver.store.keys import Keys
from tests.fixtures.settings import MakeSettings
from tests.fixtures.simulator import SimulatorHandle
from tests.graph.helpers import sim_settings


class RecordingTransport(httpx.AsyncHTTPTransport):
    """A real transport that notes when each request leaves, and the path of each request a
    JSON batch carries (``batched``)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.sent: list[tuple[float, str]] = []
        self.batched: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.sent.append((time.monotonic(), path))
        if path.endswith("/$batch"):
            root = path.removesuffix("/$batch")
            items = json.loads(request.content)["requests"]
            self.batched += [root + item["url"].split("?", 1)[0] for item in items]
        return await super().handle_async_request(request)

    def reads(self) -> list[str]:
        """The paths read, on their own or inside a batch."""
        return [p for _, p in self.sent if not p.endswith("/$batch")] + self.batched


class Sleeps:
    """The testing switch: record every wait, and really wait (waits are small here)."""

    def __init__(self, scale: float = 1.0) -> None:
        self.waits: list[float] = []
        self.scale = scale

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(seconds * self.scale)


def make_client(
    settings: Settings, redis: Redis | None, sim: SimulatorHandle, sleeps: Sleeps
) -> tuple[GraphClient, RecordingTransport]:
    transport = RecordingTransport(verify=sim.ssl_context())
    limiter = None
    if redis is not None:
        limiter = RateLimiter(
            redis,
            Keys(settings.redis.key_prefix),
            {
                "security": (
                    settings.graph.rate_limit_per_minute,
                    settings.graph.rate_limit_window_s,
                )
            },
        )
    client = GraphClient(
        settings.graph,
        TokenProvider(settings.graph, settings.tenants),
        limiter,
        sleep=sleeps,
        transport=transport,
    )
    return client, transport


def test_retry_after_forms() -> None:
    assert parse_retry_after("2.128") == pytest.approx(2.128)
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(7, abs=1)


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_429_storm_waits_as_told_and_stays_under_the_limiter(
    make_simulator: Callable[..., SimulatorHandle], make_settings: MakeSettings, redis_url: str
) -> None:
    sim = make_simulator(throttle=True, legacy_alerts="live")
    sim.control.create_alerts(sim.tenant.tenant_id, 3)
    settings = sim_settings(
        make_settings,
        sim,
        redis_url,
        graph={"rate_limit_per_minute": 12, "rate_limit_window_s": 1.0},
    )
    redis = Redis.from_url(redis_url)
    sleeps = Sleeps()
    client, transport = make_client(settings, redis, sim, sleeps)
    sim.control.inject_fault("graph_429", count=6, retryAfter=0.25)
    started = time.monotonic()
    try:
        results = await asyncio.gather(
            *(client.get(sim.tenant.tenant_id, "security/alerts") for _ in range(24))
        )
    finally:
        await client.aclose()
        await redis.aclose()
    elapsed = time.monotonic() - started
    assert all(len(r["value"]) == 3 for r in results)  # no crash, every call answered
    counters = sim.control.counters()
    assert counters["fault.graph_429"] == 6
    assert counters.get("graph.429", 0) == 0  # Graph's own throttle never had to act
    # Retry-After honoured: each of the six 429s made its caller wait exactly 0.25 s.
    assert sleeps.waits.count(0.25) == 6
    sends = [t for t, path in transport.sent if path.endswith("/security/alerts")]
    assert len(sends) == 30
    assert max_in_window(sends, 0.95) <= 12
    assert elapsed >= 1.5  # 30 requests at 12 per second


async def test_5xx_is_retried_with_backoff_then_gives_up_with_graph_details(
    simulator: SimulatorHandle, make_settings: MakeSettings
) -> None:
    settings = sim_settings(
        make_settings, simulator, "redis://127.0.0.1:1/0", graph={"max_retries": 2}
    )
    sleeps = Sleeps(scale=0.0)
    client, _ = make_client(settings, None, simulator, sleeps)
    tid = simulator.tenant.tenant_id
    try:
        simulator.control.inject_fault("graph_5xx", count=2, status=503)
        assert (await client.get(tid, "subscriptions"))["value"] == []
        assert len(sleeps.waits) == 2 and all(0 <= w <= 1.0 for w in sleeps.waits)
        simulator.control.inject_fault("graph_5xx", count=5, status=502)
        with pytest.raises(GraphUnavailable) as caught:
            await client.get(tid, "subscriptions")
        assert caught.value.status == 502 and caught.value.code == "generalException"
        assert caught.value.request_id
        with pytest.raises(GraphError) as missing:
            await client.get(tid, "subscriptions/00000000-0000-4000-8000-000000000000")
        error = missing.value
        assert not isinstance(error, GraphUnavailable)
        assert (error.status, error.code) == (404, "ResourceNotFound")
        assert error.request_id and error.request_id in str(error)
        token = await client.tokens.token(tid)
        assert token not in str(error)
    finally:
        await client.aclose()


async def test_total_wait_is_capped(
    simulator: SimulatorHandle, make_settings: MakeSettings
) -> None:
    settings = sim_settings(
        make_settings,
        simulator,
        "redis://127.0.0.1:1/0",
        graph={"max_retries": 10, "max_retry_wait_s": 1.0},
    )
    sleeps = Sleeps(scale=0.0)
    client, _ = make_client(settings, None, simulator, sleeps)
    simulator.control.inject_fault("graph_429", count=10, retryAfter=0.4)
    try:
        with pytest.raises(GraphUnavailable) as caught:
            await client.get(simulator.tenant.tenant_id, "subscriptions")
    finally:
        await client.aclose()
    assert caught.value.status == 429
    assert sleeps.waits == [0.4, 0.4]  # a third wait would pass the 1 s budget


async def test_pages_follow_next_link(
    make_simulator: Callable[..., SimulatorHandle], make_settings: MakeSettings
) -> None:
    sim = make_simulator(alert_page_size=10, legacy_alerts="live")
    created = sim.control.create_alerts(sim.tenant.tenant_id, 25)["ids"]
    settings = sim_settings(make_settings, sim, "redis://127.0.0.1:1/0")
    client, transport = make_client(settings, None, sim, Sleeps())
    try:
        ids = [a["id"] async for a in client.pages(sim.tenant.tenant_id, "security/alerts")]
    finally:
        await client.aclose()
    assert sorted(ids) == sorted(created)
    assert len(transport.sent) == 3


async def test_limiter_is_shared_between_connections(redis_url: str) -> None:
    keys = Keys("{test}")
    granted: list[float] = []
    a, b = Redis.from_url(redis_url), Redis.from_url(redis_url)
    limiters = [RateLimiter(r, keys, {"security": (4, 0.5)}) for r in (a, b)]

    async def take(limiter: RateLimiter) -> None:
        await limiter.acquire("tenant-1", "security")
        granted.append(time.monotonic())

    started = time.monotonic()
    try:
        await asyncio.gather(*(take(limiters[i % 2]) for i in range(12)))
        await limiters[0].acquire("tenant-2", "security")  # another tenant: not held up
        await limiters[0].acquire("tenant-1", "subscriptions")  # unlimited bucket
    finally:
        await a.aclose()
        await b.aclose()
    assert len(granted) == 12
    assert max_in_window(granted, 0.45) <= 4
    assert time.monotonic() - started >= 1.0


async def test_requests_asking_together_share_one_round_trip(redis_url: str) -> None:
    """Ten requests at once: one script call counts them all; with room for 4 in the window,
    4 go at once and the rest wait for the window to move, as before."""
    keys = Keys("{test-batch}")
    redis = Redis.from_url(redis_url)
    roomy = RateLimiter(redis, keys, {"security": (100, 60.0)})
    tight = RateLimiter(redis, keys, {"security": (4, 0.5)})
    granted: list[float] = []

    async def take(limiter: RateLimiter, tenant: str) -> None:
        await limiter.acquire(tenant, "security")
        granted.append(time.monotonic())

    try:
        await asyncio.gather(*(take(roomy, "tenant-a") for _ in range(10)))
        assert roomy.round_trips == 1
        assert await redis.zcard(keys.rate_limit("tenant-a", "security")) == 10
        granted.clear()
        started = time.monotonic()
        await asyncio.gather(*(take(tight, "tenant-b") for _ in range(10)))
    finally:
        await redis.aclose()
    assert len(granted) == 10
    assert max_in_window(granted, 0.45) <= 4
    assert sum(t - started < 0.2 for t in granted) == 4
    assert time.monotonic() - started >= 1.0


async def test_a_token_graph_refuses_is_replaced_once_per_call(
    simulator: SimulatorHandle, make_settings: MakeSettings
) -> None:
    """The httpx Auth layer: a cached token Graph answers 401 to (revoked, rotated: here one
    the simulator minted already expired) is forgotten, a fresh one comes from Entra through
    MSAL, and the request is sent again, through the rate-limiting transport, once."""
    settings = sim_settings(make_settings, simulator, "redis://127.0.0.1:1/0")
    client, transport = make_client(settings, None, simulator, Sleeps(scale=0.0))
    tid = simulator.tenant.tenant_id
    stale = await asyncio.to_thread(
        simulator.control.mint_token, tid, simulator.tenant.app.client_id, expires_in=0
    )
    try:
        good = await client.tokens.token(tid)
        client.tokens._hot[tid] = (stale, float("inf"))  # the token the cache still serves
        before = simulator.control.counters()
        assert (await client.get(tid, "subscriptions"))["value"] == []
        after = simulator.control.counters()
        assert after.get("graph.401", 0) - before.get("graph.401", 0) == 1
        assert after["entra.token.issued"] - before["entra.token.issued"] == 1
        assert client.calls == 2 and len(transport.sent) == 2
        fresh = await client.tokens.token(tid)
        assert fresh not in (stale, good)
        # The fresh token serves the next call without another refresh.
        await client.get(tid, "subscriptions")
        assert client.calls == 3
        assert simulator.control.counters()["entra.token.issued"] == after["entra.token.issued"]
    finally:
        await client.aclose()
