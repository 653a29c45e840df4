"""The fetch stage's hand-off straight to the sinks' streams (RouteStage.handoff): it must
write exactly what the ``alerts`` stream and the route stage write, and leave to them every
alert that a group, a silence or a rule on ``first_seen``/``changes`` concerns.

Against the simulator (real MSAL, real httpx) and a real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import TypeAdapter

from receiver import clock
from receiver.config.settings import Settings
from receiver.graph.client import GraphClient, client_for
from receiver.pipeline.consumer import Entry
from receiver.pipeline.fetch import FetchStage
from receiver.pipeline.route import RouteStage, save_silence
from receiver.routing.config import RoutesConfig
from receiver.routing.silences import Silence
from receiver.store.keys import Keys
from tests.fixtures.settings import MakeSettings
from tests.graph.helpers import sim_settings
from tests.pipeline.test_fetch import push

SINKS = {"teams", "archive"}


def routes(tree: dict[str, Any]) -> RoutesConfig:
    return TypeAdapter(RoutesConfig).validate_python({"route": tree})


# high -> teams and (continue) archive, the rest -> archive
TWO_SINKS = routes(
    {
        "receiver": "archive",
        "routes": [
            {"matchers": ['severity="high"'], "receiver": "teams", "continue": True},
            {"receiver": "archive"},
        ],
    }
)


class Rig:
    def __init__(self, sim: Any, settings: Settings, redis: aioredis.Redis, graph: GraphClient):
        self.sim, self.settings, self.redis, self.graph = sim, settings, redis, graph
        self.tid = sim.tenant.tenant_id

    def stages(self, prefix: str, tree: RoutesConfig, *, handoff: bool) -> tuple[Keys, Any]:
        keys = Keys(prefix)
        route = RouteStage(self.redis, keys, tree, SINKS)
        fetch = FetchStage(
            self.redis, keys, self.settings, self.graph, route=route if handoff else None
        )
        return keys, (fetch, route)

    async def run(self, keys: Keys, fetch: FetchStage, route: RouteStage, alert_id: str) -> None:
        """One notification through fetch, and whatever it put on ``alerts`` through route
        (acknowledged with its transaction, as the consumer would)."""
        await fetch.handle(push(self.tid, alert_id))
        await self.route_pending(keys, route)

    async def route_pending(self, keys: Keys, route: RouteStage) -> None:
        await self.redis.xgroup_create(keys.alerts, "route", id="0", mkstream=True)
        reply = await self.redis.xreadgroup("route", "c1", {keys.alerts: ">"})
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                await route.handle(Entry(entry_id.decode(), fields, 1, (keys.alerts, "route")))
        await self.redis.xgroup_destroy(keys.alerts, "route")

    async def written(self, keys: Keys, alert_id: str) -> dict[str, Any]:
        """What reached Redis for the sinks: each sink stream's entries, the alert's timeline
        and the recent-alerts stream (times left out: they differ between two runs)."""

        def fields(raw: dict[bytes, bytes]) -> dict[str, str]:
            return {k.decode(): v.decode() for k, v in raw.items() if k != b"queued_at"}

        out: dict[str, Any] = {}
        for sink in sorted(SINKS):
            out[sink] = [fields(f) for _, f in await self.redis.xrange(keys.sink(sink))]
        timeline = await self.redis.lrange(keys.deliveries(self.tid, alert_id), 0, -1)
        out["timeline"] = [{k: v for k, v in json.loads(e).items() if k != "at"} for e in timeline]
        out["recent"] = [fields(f) for _, f in await self.redis.xrange(keys.recent_alerts)]
        out["alerts left"] = await self.redis.xlen(keys.alerts)
        return out


@pytest.fixture
async def rig(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str
) -> AsyncIterator[Rig]:
    sim = make_simulator(legacy_alerts="live")
    settings = sim_settings(make_settings, sim, redis_url)
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    yield Rig(sim, settings, redis, graph)
    await graph.aclose()
    await redis.aclose()


async def test_the_handoff_writes_what_the_route_stage_writes(rig: Rig) -> None:
    """A first version, Graph's duplicate and an update, to two sinks: with the hand-off
    and through the alerts stream, the same entries (first, changes, route), the same
    timeline (the update marked) and the same recent alerts; nothing left on ``alerts``."""
    alert_id = await asyncio.to_thread(rig.sim.control.create_alert, rig.tid, severity="high")
    runs = {
        "{via-route}": rig.stages("{via-route}", TWO_SINKS, handoff=False),
        "{handoff}": rig.stages("{handoff}", TWO_SINKS, handoff=True),
    }
    for step in ("first", "duplicate", "update"):
        if step == "update":
            await asyncio.to_thread(
                rig.sim.control.update_alert, rig.tid, alert_id, {"status": "inProgress"}
            )
        for keys, (fetch, route) in runs.values():
            await rig.run(keys, fetch, route, alert_id)
    via_route, handed = [await rig.written(keys, alert_id) for keys, _ in runs.values()]
    assert handed == via_route
    assert [e["first"] for e in handed["teams"]] == ["1", "0"]
    assert handed["teams"][1]["changes"] == "status"
    assert [e["route"] for e in handed["teams"]] == ["route.routes[0]"] * 2
    assert [(e["event"], e["sink"], e.get("update")) for e in handed["timeline"]] == [
        ("routed", "teams", None),
        ("routed", "archive", None),
        ("routed", "teams", True),
        ("routed", "archive", True),
    ]
    assert len(handed["recent"]) == 2 and handed["alerts left"] == 0
    _, (_, route) = runs["{handoff}"]
    assert route.outcomes.labels("routed")._value.get() == 2  # counted as the stage counts


@pytest.mark.parametrize(
    "case",
    [
        "grouped",
        "silenced",
        "rule on first_seen",
        "silence on changes",
        "no route",
    ],
)
async def test_what_the_route_stage_must_decide_goes_through_alerts(rig: Rig, case: str) -> None:
    """A grouping route, an active silence that matches, rules or silences on the fields
    only the dedup knows, or no configured sink to go to: the alert goes to ``alerts`` and the route
    stage decides, as before the hand-off existed."""
    tree = {
        "grouped": routes({"receiver": "teams", "group_by": ["incident_id"]}),
        "rule on first_seen": routes(
            {
                "receiver": "archive",
                "routes": [{"matchers": ['first_seen="False"'], "receiver": "teams"}],
            }
        ),
        "no route": routes({"receiver": "a-sink-since-removed"}),
    }.get(case, TWO_SINKS)
    keys, (fetch, route) = rig.stages("{fallback}", tree, handoff=True)
    now = clock.now()
    if case in ("silenced", "silence on changes"):
        matcher = 'severity="high"' if case == "silenced" else 'changes="status"'
        silence = Silence.new([matcher], now + timedelta(hours=1), comment="t", starts_at=now)
        await save_silence(rig.redis, keys, silence)
    alert_id = await asyncio.to_thread(rig.sim.control.create_alert, rig.tid, severity="high")
    assert await route.handoff(await _envelope(fetch, rig, alert_id)) is None
    await fetch.handle(push(rig.tid, alert_id))
    assert await rig.redis.xlen(keys.alerts) == 1  # handed to the route stage
    for sink in SINKS:
        assert await rig.redis.xlen(keys.sink(sink)) == 0


async def _envelope(fetch: FetchStage, rig: Rig, alert_id: str) -> Any:
    from receiver.envelope import from_legacy

    alert = await rig.graph.get(rig.tid, f"security/alerts/{alert_id}")
    return from_legacy(alert, fetch.tenants[rig.tid])
