"""The poller against malformed Graph pages, from a loopback Graph (tokens from the simulator).

Property: whatever mix of good and junk pages Graph returns, polling never raises, queues
only well-formed items, and never moves the watermark past an item it did not queue; so a
later poll of a healthy Graph (which honours ``$filter=lastUpdateDateTime gt ...``) queues
every valid alert: nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.config.settings import Settings
from receiver.graph.client import client_for
from receiver.graph.poller import Poller
from receiver.store.keys import Keys
from tests.fixtures.settings import MakeSettings
from tests.fixtures.web import free_port
from tests.graph.helpers import sim_settings, tenant_entry

BASE = datetime(2026, 11, 1, tzinfo=UTC)
JUNK = [
    "not_json",
    "json_list",
    "value_number",
    "value_text",
    "items_not_objects",
    "item_without_id",
    "item_bad_time",
    "status_500",
    "status_404",
    "empty_200",
]


def _iso(seconds: int) -> str:
    return (BASE + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


class LoopbackGraph:
    """Serves ``security/alerts_v2`` as a script of pages; ``healthy`` serves every valid
    item newer than the request's filter on one page, as Graph would."""

    def __init__(self) -> None:
        self.pages: list[tuple[str, list[dict[str, Any]]]] = []
        self.items: list[dict[str, Any]] = []
        self.healthy = False
        self.port = free_port()
        app = Starlette(routes=[Route("/v1.0/security/alerts_v2", self.serve)])
        self.server = uvicorn.Server(
            uvicorn.Config(app, port=self.port, log_config=None, access_log=False, lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1.0"

    async def serve(self, request: Request) -> Response:
        if self.healthy:
            match = re.search(r"gt (\S+)", request.query_params.get("$filter", ""))
            since = match.group(1).replace("Z", "+00:00") if match else ""
            after = datetime.fromisoformat(since[:26] + since[-6:]) if since else BASE
            value = [
                i
                for i in self.items
                if datetime.fromisoformat(i["lastUpdateDateTime"][:26] + "+00:00") > after
            ]
            return Response(json.dumps({"value": value}), media_type="application/json")
        index = int(request.query_params.get("page", "0"))
        kind, items = self.pages[index]
        following = (
            {"@odata.nextLink": f"{self.url}/security/alerts_v2?page={index + 1}"}
            if index + 1 < len(self.pages)
            else {}
        )
        bodies: dict[str, Any] = {
            "good": {"value": items, **following},
            "json_list": [1, 2],
            "value_number": {"value": 5, **following},
            "value_text": {"value": "abc", **following},
            "items_not_objects": {"value": [1, "x", None], **following},
            "item_without_id": {"value": [{"title": "no id"}], **following},
            "item_bad_time": {
                "value": [{"id": "bad-time", "lastUpdateDateTime": "never"}],
                **following,
            },
        }
        if kind in bodies:
            return Response(json.dumps(bodies[kind]), media_type="application/json")
        if kind == "not_json":
            return Response(b"<html>gateway</html>", media_type="text/html")
        if kind == "empty_200":
            return Response(b"", status_code=200)
        return Response(
            b'{"error": {"code": "x", "message": "y"}}',
            status_code=int(kind.removeprefix("status_")),
            media_type="application/json",
        )


@pytest.fixture
def graph() -> Iterator[LoopbackGraph]:
    g = LoopbackGraph()
    g.thread.start()
    while not g.server.started:
        time.sleep(0.01)
    yield g
    g.server.should_exit = True
    g.thread.join(5)


@pytest.fixture
def make_poller_settings(
    make_simulator: Callable[..., Any],
    make_settings: MakeSettings,
    redis_url: str,
    graph: LoopbackGraph,
) -> Settings:
    sim = make_simulator()
    tenant = tenant_entry(sim.tenant, "contoso")
    tenant["poll"] = {
        "alerts_v2": True,
        "incidents": False,
        "overlap_s": 0,
        "initial_lookback_s": 30 * 86_400,
    }
    return sim_settings(
        make_settings,
        sim,
        redis_url,
        tenants=[tenant],
        graph={"graph_url": graph.url, "max_retries": 0},
    )


pages = st.lists(
    st.one_of(
        st.tuples(st.just("good"), st.lists(st.integers(1, 10_000), min_size=0, max_size=4)),
        st.tuples(st.sampled_from(JUNK), st.just([])),
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(script=pages)
def test_junk_pages_lose_nothing(
    script: list[tuple[str, list[int]]],
    graph: LoopbackGraph,
    make_poller_settings: Settings,
    redis_url: str,
) -> None:
    settings_ = make_poller_settings
    with redis.Redis.from_url(redis_url) as sync:
        sync.flushall()
    seen: set[int] = set()
    graph.pages = []
    for kind, times in script:
        unique = [t for t in times if t not in seen]
        seen.update(unique)
        graph.pages.append((kind, [{"id": f"a{t}", "lastUpdateDateTime": _iso(t)} for t in unique]))
    graph.items = [i for _, items in graph.pages for i in items]
    graph.healthy = False

    async def poll_twice() -> tuple[set[str], set[str]]:
        client = aioredis.Redis.from_url(redis_url)
        graph_client = client_for(settings_, client)
        try:
            # The poller's own clock, a day after the items: the 30-day first look-back covers
            # them whatever today's date is.
            poller = Poller(
                client,
                Keys(settings_.redis.key_prefix),
                settings_,
                graph_client,
                clock=lambda: BASE + timedelta(days=1),
            )
            await poller.poll_all()  # never raises, whatever the pages
            first = await _queued(client, settings_)
            graph.healthy = True
            await poller.poll_all()
            return first, await _queued(client, settings_)
        finally:
            await graph_client.aclose()
            await client.aclose()

    first, after = asyncio.run(poll_twice())
    valid = {i["id"] for i in graph.items}
    assert first <= valid | {"bad-time"}  # only well-formed items (with an id) are queued
    assert valid <= after, f"lost: {sorted(valid - after)} with pages {script}"


async def _queued(client: aioredis.Redis, settings_: Settings) -> set[str]:
    rows: Any = await client.xrange(Keys(settings_.redis.key_prefix).notifications)
    return {json.loads(fields[b"e"])["resource_id"] for _, fields in rows}
