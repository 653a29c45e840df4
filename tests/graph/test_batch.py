"""Graph JSON batching of the fetch stage's reads (receiver.graph.batch), against the
simulator's ``$batch`` over HTTPS with real MSAL tokens and a real Redis for the limiter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from receiver.envelope import from_v2
from receiver.graph.batch import Answer, BatchedReads, answers_of
from receiver.graph.client import GraphError, GraphUnavailable
from tests.fixtures.settings import MakeSettings
from tests.fixtures.simulator import SimulatorHandle
from tests.graph.helpers import sim_settings
from tests.graph.test_client import Sleeps, make_client

MISSING = "00000000-0000-4000-8000-0000000000aa"


def v2(alert_id: str) -> str:
    return f"security/alerts_v2/{alert_id}"


class Setup:
    def __init__(
        self,
        make_simulator: Callable[..., SimulatorHandle],
        make_settings: MakeSettings,
        redis_url: str,
        *,
        max_items: int = 20,
        **graph: Any,
    ) -> None:
        self.sim = make_simulator()
        self.tid = self.sim.tenant.tenant_id
        settings = sim_settings(
            make_settings,
            self.sim,
            redis_url,
            graph={"rate_limit_per_minute": 10_000, **graph},
        )
        self.redis = Redis.from_url(redis_url)
        self.sleeps = Sleeps()
        self.client, self.transport = make_client(settings, self.redis, self.sim, self.sleeps)
        self.registry = CollectorRegistry()
        self.reads = BatchedReads(self.client, max_items=max_items, registry=self.registry)

    def alerts(self, count: int, **options: Any) -> list[str]:
        return list(self.sim.control.create_alerts(self.tid, count, "v2", **options)["ids"])

    def sent(self, method_path: str) -> int:
        return sum(1 for _, path in self.transport.sent if path.endswith(method_path))

    def metric(self, name: str) -> float:
        return self.registry.get_sample_value(name) or 0.0

    async def close(self) -> None:
        await self.client.aclose()
        await self.redis.aclose()


@pytest.fixture
def setup(
    make_simulator: Callable[..., SimulatorHandle], make_settings: MakeSettings, redis_url: str
) -> Callable[..., Setup]:
    return lambda **kw: Setup(make_simulator, make_settings, redis_url, **kw)


async def test_reads_asked_together_go_as_batches_of_twenty(
    setup: Callable[..., Setup],
) -> None:
    s = setup()
    ids = s.alerts(25)
    try:
        got = await asyncio.gather(
            *(s.reads.get(s.tid, v2(i)) for i in [*ids, MISSING]), return_exceptions=True
        )
    finally:
        await s.close()
    assert [a["id"] for a in got[:25] if isinstance(a, dict)] == ids  # each its own alert
    missing = got[25]
    assert isinstance(missing, GraphError) and not isinstance(missing, GraphUnavailable)
    assert (missing.status, missing.tenant_id) == (404, s.tid) and missing.request_id
    assert s.sent("/$batch") == 2 and len(s.transport.sent) == 2  # 20 + 6, nothing else
    counters = s.sim.control.counters()
    assert (counters["graph.batch"], counters["graph.batch_items"]) == (2, 26)
    assert s.metric("receiver_graph_batches_total") == 2
    assert s.metric("receiver_graph_batch_items_total") == 26
    assert s.metric("receiver_graph_batch_fallbacks_total") == 0


async def test_items_ask_for_evolvable_enum_members(setup: Callable[..., Setup]) -> None:
    s = setup()
    [sentinel] = s.alerts(1, serviceSource="microsoftSentinel")
    [other] = s.alerts(1)
    try:
        alerts = await asyncio.gather(
            s.reads.get(s.tid, v2(sentinel)), s.reads.get(s.tid, v2(other))
        )
    finally:
        await s.close()
    assert s.sent("/$batch") == 1
    assert from_v2(alerts[0]).provider == "microsoftSentinel"


async def test_throttled_items_wait_their_retry_after_and_go_again(
    setup: Callable[..., Setup],
) -> None:
    s = setup()
    ids = s.alerts(6)
    s.sim.control.inject_fault("graph_429", count=3, retryAfter=0.2)
    try:
        got = await asyncio.gather(*(s.reads.get(s.tid, v2(i)) for i in ids))
    finally:
        await s.close()
    assert [a["id"] for a in got] == ids
    assert s.sleeps.waits == [0.2, 0.2, 0.2]  # each throttled item waited what it was told
    assert s.sim.control.counters()["fault.graph_429"] == 3
    assert s.metric("receiver_graph_batch_items_total") == 9  # 6, then the 3 again
    assert 2 <= s.metric("receiver_graph_batches_total") <= 4


async def test_failing_items_give_up_after_the_retries(setup: Callable[..., Setup]) -> None:
    s = setup(max_retries=2)
    [alert] = s.alerts(1)
    s.sleeps.scale = 0.0
    s.sim.control.inject_fault("graph_5xx", count=3, status=503)
    try:
        with pytest.raises(GraphUnavailable) as caught:
            await s.reads.get(s.tid, v2(alert))
    finally:
        await s.close()
    assert caught.value.status == 503 and caught.value.request_id
    assert len(s.sleeps.waits) == 2  # two retries, then the third 503 is the answer
    assert s.metric("receiver_graph_batch_items_total") == 3


async def test_a_batch_refused_as_a_whole_is_read_one_by_one(
    setup: Callable[..., Setup],
) -> None:
    s = setup()
    ids = s.alerts(3)
    s.sim.control.inject_fault("batch_refused", count=1)
    try:
        got = await asyncio.gather(*(s.reads.get(s.tid, v2(i)) for i in ids))
    finally:
        await s.close()
    assert [a["id"] for a in got] == ids
    assert s.sent("/$batch") == 1 and s.sent("/security/alerts_v2/" + ids[0]) == 1
    assert s.metric("receiver_graph_batch_fallbacks_total") == 3


async def test_batch_size_one_sends_each_read_on_its_own(setup: Callable[..., Setup]) -> None:
    s = setup(max_items=1)
    ids = s.alerts(3)
    try:
        got = await asyncio.gather(*(s.reads.get(s.tid, v2(i)) for i in ids))
    finally:
        await s.close()
    assert [a["id"] for a in got] == ids
    assert s.sent("/$batch") == 0 and len(s.transport.sent) == 3


def test_batch_size_is_graphs() -> None:
    client: Any = object()
    for bad in (0, 21):
        with pytest.raises(ValueError, match="1 to 20"):
            BatchedReads(client, max_items=bad)


def test_answers_are_matched_by_id_and_malformed_ones_left_out() -> None:
    body = {
        "responses": [
            {"id": "2", "status": 404, "headers": {"Request-Id": "r2"}, "body": {"error": {}}},
            {"id": "A", "status": 200, "body": {"id": "x"}},
            {"id": 3, "status": 200},  # not a string id
            {"id": "4", "status": "200"},  # not an int status
            {"id": "5", "status": True},
            "junk",
        ]
    }
    found = answers_of(httpx.Response(200, json=body))
    assert found == {
        "2": Answer(404, {"request-id": "r2"}, {"error": {}}),
        "a": Answer(200, {}, {"id": "x"}),
    }
    assert answers_of(httpx.Response(200, content=b"<html>")) == {}
    assert answers_of(httpx.Response(200, json={"value": []})) == {}


async def test_a_batch_cancelled_before_it_leaves_fails_its_reads_and_not_the_next(
    setup: Callable[..., Setup],
) -> None:
    s = setup()
    ids = s.alerts(2)
    try:
        first = asyncio.ensure_future(s.reads.get(s.tid, v2(ids[0])))
        for _ in range(10_000):  # past the limiter: joined this turn's batch, not yet sent
            if s.reads._queues:
                break
            await asyncio.sleep(0)
        assert s.reads._queues
        for task in list(s.reads._sending):
            task.cancel()
        with pytest.raises(asyncio.CancelledError):  # not left waiting (TimeoutError)
            await asyncio.wait_for(first, 5)
        assert (await s.reads.get(s.tid, v2(ids[1])))["id"] == ids[1]
    finally:
        await s.close()
    assert s.sent("/$batch") == 1
