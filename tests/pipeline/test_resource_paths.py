"""Issue 15, item 3: a notification's resource never chooses the path read with the app's
token. Valid notifications (known subscription, right clientState, over a real socket to the
web) whose resources climb out of /security with ``..`` or percent-encoded slashes are refused
by the real worker, counted and kept in the poison stream; the simulator sees no request for
them (a real alert in the same batch is still read and routed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from receiver.graph.auth import TokenProvider
from receiver.graph.client import SECURITY_BUCKET, GraphClient, client_for
from receiver.graph.ratelimit import RateLimiter
from receiver.graph.subscriptions import Supervisor
from receiver.pipeline.worker import build_worker
from receiver.store import registry
from receiver.store.keys import Keys
from receiver.web.app import create_app
from tests.fixtures.settings import MakeSettings
from tests.fixtures.web import free_port, served
from tests.graph.helpers import sim_settings, tenant_entry
from tests.graph.test_client import RecordingTransport

SUBSCRIBED = "security/alerts?$filter=vendorInformation/vendor eq 'Microsoft'"
ATTACKS = [
    ("security/alerts/../../../_sim/tenants", None),
    ("security/alerts/../../subscriptions", "subscriptions"),
    ("Security/Alerts/x/../../../../v1.0/subscriptions", None),
    ("security/alerts_v2/a%2F..%2F..%2F..%2Fsubscriptions", None),
    ("security/alerts_v2/..%2F..%2Fsubscriptions", None),
    ("security/alerts_v2/..", ".."),
    ("security/alerts_v2/.", None),
    ("security/incidents/1?$expand=alerts", None),
    ("security/secureScores/x", "x"),
    ("security/alerts_v2/da637_1", "a-different-id"),  # resourceData.id is not the resource's
]


async def test_path_climbing_resources_are_refused_and_never_fetched(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str, tmp_path: Path
) -> None:
    sim = make_simulator()
    tid = sim.tenant.tenant_id
    port = free_port()
    (tmp_path / "routes.yaml").write_text("route:\n  receiver: console\n")
    settings = sim_settings(
        make_settings,
        sim,
        redis_url,
        public_url=f"http://127.0.0.1:{port}",
        tenants=[tenant_entry(sim.tenant, "contoso", subscriptions=[{"resource": SUBSCRIBED}])],
        routes_file=str(tmp_path / "routes.yaml"),
    )
    redis = aioredis.Redis.from_url(redis_url)
    keys = Keys(settings.redis.key_prefix)
    setup_graph = client_for(settings, redis)
    transport = RecordingTransport(verify=sim.ssl_context())
    limiter = RateLimiter(
        redis,
        keys,
        {
            SECURITY_BUCKET: (
                settings.graph.rate_limit_per_minute,
                settings.graph.rate_limit_window_s,
            )
        },
    )
    graph = GraphClient(
        settings.graph,
        TokenProvider(settings.graph, settings.tenants),
        limiter,
        transport=transport,
    )
    [real] = (await asyncio.to_thread(sim.control.create_alerts, tid, 1, kind="v2"))["ids"]
    try:
        async with served(create_app(settings), port) as web:
            report = await Supervisor(settings, setup_graph, redis).reconcile()
            assert report.created == 1, report
            _, subs = await registry.load_all(redis, keys)
            (sub,) = subs.values()

            def item(resource: str, rid: str | None) -> dict[str, Any]:
                out: dict[str, Any] = {
                    "subscriptionId": sub.subscription_id,
                    "clientState": sub.client_state,
                    "tenantId": tid,
                    "changeType": "updated",
                    "resource": resource,
                    "subscriptionExpirationDateTime": "2026-12-30T00:00:00Z",
                }
                if rid is not None:
                    out["resourceData"] = {
                        "@odata.type": "#microsoft.graph.security.alert",
                        "id": rid,
                    }
                return out

            batch = [item(r, rid) for r, rid in ATTACKS]
            batch.append(item(f"security/alerts_v2/{real}", real))
            async with httpx.AsyncClient() as client:
                answer = await client.post(
                    web + settings.web.notification_path,
                    content=json.dumps({"value": batch}),
                    headers={"content-type": "application/json"},
                )
            assert answer.status_code == 202, answer.text
            assert await redis.xlen(keys.notifications) == len(batch)
            worker = build_worker(settings, redis, graph=graph)
            await worker.run(burst=True)
            await worker.sinks.aclose()
        refused = worker.registry.get_sample_value(
            "receiver_fetch_outcomes_total", {"outcome": "refused_resource"}
        )
        poison: Any = await redis.xrange(keys.poison)
    finally:
        await graph.aclose()
        await setup_graph.aclose()
        await redis.aclose()
    # Only the real alert was read (on its own or in a JSON batch): nothing outside
    # /v1.0/security, nothing for the attacks.
    assert transport.reads() == [f"/v1.0/security/alerts_v2/{real}"]
    assert refused == len(ATTACKS)
    assert len(poison) == len(ATTACKS)
    assert all(b"refused_resource" in fields[b"error"] for _, fields in poison)
