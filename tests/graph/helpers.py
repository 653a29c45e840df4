"""Settings for the product that point at a running simulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from receiver.config.settings import Settings
from receiver.graph.client import GraphClient
from tests.fixtures.settings import MakeSettings
from tests.fixtures.simulator import SimTenant, SimulatorHandle

RESOURCE = "security/alerts?$filter=status eq 'newAlert'"


def tenant_entry(
    tenant: SimTenant,
    name: str,
    *,
    credential: str = "secret",
    key_dir: Path | None = None,
    subscriptions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    app = tenant.app
    entry: dict[str, Any] = {
        "name": name,
        "tenant_id": tenant.tenant_id,
        "client_id": app.client_id,
        "subscriptions": subscriptions if subscriptions is not None else [],
    }
    if credential == "secret":
        entry["client_secret"] = app.secret
    else:
        assert key_dir is not None and app.private_key_pem and app.thumbprint
        key = key_dir / f"{name}.key.pem"
        key.write_text(app.private_key_pem, encoding="utf-8")
        entry["certificate"] = {"private_key_file": str(key), "thumbprint": app.thumbprint}
    return entry


def sim_settings(
    make_settings: MakeSettings,
    sim: SimulatorHandle,
    redis_url: str,
    *,
    tenants: list[dict[str, Any]] | None = None,
    public_url: str = "http://127.0.0.1:9",
    **overrides: Any,
) -> Settings:
    if tenants is None:
        tenants = [tenant_entry(t, f"t{i}") for i, t in enumerate(sim.tenants)]
    graph = {
        "authority_host": sim.base_url,
        "graph_url": sim.graph_url,
        "ca_bundle": str(sim.ca_path),
        **overrides.pop("graph", {}),
    }
    return make_settings(
        redis_url=redis_url,
        graph=graph,
        tenants=tenants,
        web={"public_url": public_url, "allow_http": True},
        **overrides,
    )


@dataclass
class Span:
    tenant_id: str
    path: str
    start: float
    end: float = 0.0


@dataclass
class Recording:
    """The real Graph client's ``pages``, noting when each collection read started and ended."""

    graph: GraphClient
    spans: list[Span] = field(default_factory=list)
    started: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def pages(
        self, tenant_id: str, path: str, params: dict[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        span = Span(tenant_id, path, time.monotonic())
        self.spans.append(span)
        async with self.started:
            self.started.notify_all()
        try:
            async for item in self.graph.pages(tenant_id, path, params):
                yield item
        finally:
            span.end = time.monotonic()

    def peak(self) -> int:
        """The most reads in flight at one moment (an end before a start at the same time)."""
        events = sorted([(s.start, 1) for s in self.spans] + [(s.end, -1) for s in self.spans])
        level = top = 0
        for _, step in events:
            level += step
            top = max(top, level)
        return top
