"""A deployment with real history for the status page: the simulator, a subscription created
by the supervisor (handshake against the served web app), alerts polled from the simulator and
run through the real worker to a recording Teams endpoint and a webhook that refuses them (so
they are dead-lettered). Nothing in Redis is written by hand."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.admin.server import AdminServer
from receiver.config.settings import AdminSettings, Settings
from receiver.graph.client import client_for
from receiver.graph.poller import Poller
from receiver.graph.subscriptions import Supervisor
from receiver.pipeline.worker import build_worker
from receiver.store import registry
from receiver.store.keys import Keys
from receiver.web.app import create_app
from tests.fixtures.settings import MakeSettings
from tests.fixtures.web import free_port, served
from tests.graph.helpers import sim_settings, tenant_entry

RESOURCE = "security/alerts?$filter=vendorInformation/vendor eq 'Microsoft'"
# An alert title is attacker-influenced: it tries to close the JSON block and run a script.
EVIL_TITLE = (
    'Ransomware </script><script>document.title="pwned"</script>'
    "<img src=x onerror=\"document.title='pwned'\"> <!-- ok"
)
CALM_TITLE = "Suspicious sign-in from a new country"
ADMIN_TOKEN = "admin-token-0123456789-abcdef"
ROUTES = """\
route:
  receiver: teams
  routes:
    - matchers: ['severity="high"']
      receiver: audit
      continue: true
    - receiver: teams
"""


@dataclass
class Sinks:
    """A loopback Teams channel that records cards and an audit webhook that refuses all."""

    cards: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def teams(request: Request) -> Response:
            self.cards.append(json.loads(await request.body()))
            return Response("1")

        async def refuse(request: Request) -> Response:
            return Response("no", status_code=400)

        return Starlette(
            routes=[
                Route("/teams/hook-token-aaaaaaaaaaaaaaaa", teams, methods=["POST"]),
                Route("/audit", refuse, methods=["POST"]),
            ]
        )


@dataclass
class Deployment:
    settings: Settings
    redis_url: str
    sinks: Sinks
    sink_url: str
    tenant_id: str
    alert_ids: dict[str, str]  # title -> alert id
    subscription_id: str
    client_state: str

    def admin(self, **admin: Any) -> AdminServer:
        """An admin server for this deployment (``admin`` settings; an ephemeral port)."""
        return AdminServer(
            self.settings.model_copy(update={"admin": AdminSettings.model_validate(admin)})
        )


@pytest.fixture
async def deployment(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str, tmp_path: Path
) -> AsyncIterator[Deployment]:
    sim = make_simulator()
    recorder = Sinks()
    async with served(recorder.app()) as sink_url:
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES)
        port = free_port()
        tenant = tenant_entry(sim.tenant, "contoso", subscriptions=[{"resource": RESOURCE}])
        tenant["poll"] = {"alerts_v2": True, "incidents": False}
        settings = sim_settings(
            make_settings,
            sim,
            redis_url,
            public_url=f"http://127.0.0.1:{port}",
            tenants=[tenant],
            routes_file=str(routes),
            sinks=[
                {
                    "type": "teams",
                    "name": "teams",
                    "url": sink_url + "/teams/hook-token-aaaaaaaaaaaaaaaa",
                },
                {"type": "webhook", "name": "audit", "url": sink_url + "/audit"},
            ],
        )
        redis = aioredis.Redis.from_url(redis_url)
        graph = client_for(settings, redis)
        tid = sim.tenant.tenant_id
        try:
            async with served(create_app(settings), port):
                report = await Supervisor(settings, graph, redis).reconcile()
                assert report.created == 1, report
            ids = {}
            for title, severity in ((EVIL_TITLE, "high"), (CALM_TITLE, "medium")):
                made = await asyncio.to_thread(
                    sim.control.create_alerts,
                    tid,
                    1,
                    kind="v2",
                    severity=severity,
                    overrides={"title": title},
                )
                ids[title] = made["ids"][0]
            assert (
                await Poller(redis, Keys(settings.redis.key_prefix), settings, graph).poll_all()
                == 2
            )
            worker = build_worker(settings, redis, graph=graph)
            await worker.run(burst=True)
            await worker.sinks.aclose()
            assert len(recorder.cards) == 2
            _, subs = await registry.load_all(redis, Keys(settings.redis.key_prefix))
            (sub,) = subs.values()
            assert sub.client_state
            yield Deployment(
                settings,
                redis_url,
                recorder,
                sink_url,
                tid,
                ids,
                sub.subscription_id,
                sub.client_state,
            )
        finally:
            await graph.aclose()
            await redis.aclose()
