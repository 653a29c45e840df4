"""Issue 15, item 2: the bearer token follows ``@odata.nextLink`` only on the configured Graph
origin. A loopback Graph (tokens from the simulator) answers a page whose nextLink points at a
second loopback server: that server must see no request, the link is counted and logged
without the token, and the items of the first page are still queued."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.graph.auth import TokenProvider
from receiver.graph.client import ForeignLink, GraphClient, client_for
from receiver.graph.poller import Poller
from receiver.store.entries import BackfillRequest
from receiver.store.keys import Keys
from tests.fixtures.settings import MakeSettings
from tests.fixtures.web import served
from tests.graph.helpers import sim_settings, tenant_entry

ITEMS = [
    {
        "id": f"da63700000000000000{i}_1",
        "title": f"page one {i}",
        "lastUpdateDateTime": f"2026-11-30T10:0{i}:00.0000000Z",
    }
    for i in range(2)
]


async def test_next_link_to_another_origin_gets_no_token(
    make_simulator: Callable[..., Any],
    make_settings: MakeSettings,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    stolen: list[tuple[str, str]] = []
    tokens: list[str] = []

    async def steal(request: Request) -> Response:
        stolen.append((request.url.path, request.headers.get("authorization", "")))
        return Response(json.dumps({"value": []}), media_type="application/json")

    async with served(Starlette(routes=[Route("/{path:path}", steal)])) as thief:

        async def page(request: Request) -> Response:
            tokens.append(request.headers.get("authorization", ""))
            return Response(
                json.dumps({"value": ITEMS, "@odata.nextLink": f"{thief}/steal?$skiptoken=x"}),
                media_type="application/json",
            )

        graph_app = Starlette(routes=[Route("/v1.0/security/alerts_v2", page)])
        async with served(graph_app) as graph_url:
            sim = make_simulator()
            tenant = tenant_entry(sim.tenant, "contoso")
            tenant["poll"] = {"alerts_v2": True, "incidents": False}
            settings = sim_settings(
                make_settings,
                sim,
                redis_url,
                tenants=[tenant],
                graph={"graph_url": f"{graph_url}/v1.0", "max_retries": 0},
            )
            redis = aioredis.Redis.from_url(redis_url)
            graph = client_for(settings, redis)
            keys = Keys(settings.redis.key_prefix)
            try:
                poller = Poller(redis, keys, settings, graph)
                assert await poller.poll_all() == 0  # the source failed: the link was refused
                queued: Any = await redis.xrange(keys.notifications)
                assert sorted(json.loads(f[b"e"])["resource_id"] for _, f in queued) == [
                    i["id"] for i in ITEMS
                ]
                assert await redis.get(keys.watermark(sim.tenant.tenant_id, "alerts_v2")) is None
                # `receiver backfill` reads the same way (the attack of issue 15: 6 requests).
                with pytest.raises(ForeignLink):
                    await poller.backfill(
                        BackfillRequest(
                            tenant_id=sim.tenant.tenant_id,
                            reason="missed",
                            since="2026-11-30T00:00:00Z",
                        )
                    )
                refused = graph.registry.get_sample_value("receiver_graph_refused_links_total")
            finally:
                await graph.aclose()
                await redis.aclose()
    assert stolen == []
    assert refused == 2
    assert len(tokens) == 2 and tokens[0].startswith("Bearer ")
    token = tokens[0].removeprefix("Bearer ")
    lines = [r.getMessage() for r in caplog.records]
    refusals = [line for line in lines if "is not the Graph origin" in line]
    assert refusals and all(thief in line for line in refusals)
    assert not any(token in line for line in lines)


@pytest.mark.parametrize(
    ("graph_url", "link", "allowed"),
    [
        ("https://graph.example:8443/v1.0", "https://graph.example:8443/v1.0/x?$skip=1", True),
        ("https://graph.example/v1.0", "https://graph.example:443/v1.0/x", True),
        ("https://graph.example/v1.0", "https://GRAPH.example/v1.0/x", True),
        ("https://graph.example/v1.0", "http://graph.example/v1.0/x", False),  # never plain http
        ("https://graph.example/v1.0", "https://graph.example:444/v1.0/x", False),
        ("https://graph.example/v1.0", "https://evil.example/v1.0/x", False),
        ("https://graph.example/v1.0", "https://graph.example.evil.example/x", False),
        ("https://graph.example/v1.0", "https://graph.example@evil.example/x", False),
        ("https://graph.example/v1.0", "https://user:pw@graph.example/v1.0/x", False),
        ("https://graph.example/v1.0", "//evil.example/x", False),
        ("https://graph.example/v1.0", "ftp://graph.example/x", False),
        ("http://127.0.0.1:9/v1.0", "http://127.0.0.1:9/v1.0/x", True),  # a loopback test Graph
        ("http://127.0.0.1:9/v1.0", "http://127.0.0.1:10/v1.0/x", False),
    ],
)
def test_only_the_graph_origin_is_followed(
    make_settings: MakeSettings, graph_url: str, link: str, allowed: bool
) -> None:
    settings = make_settings(graph={"graph_url": graph_url})
    client = GraphClient(settings.graph, TokenProvider(settings.graph, settings.tenants))
    if allowed:
        assert client.url(link) == link
    else:
        with pytest.raises(ForeignLink):
            client.url(link)
    assert client.url("security/alerts_v2") == f"{graph_url}/security/alerts_v2"
