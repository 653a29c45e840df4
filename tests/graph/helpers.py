"""Settings for the product that point at a running simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from receiver.settings import Settings
from tests.fixtures.settings import MakeSettings
from tests.fixtures.simulator import SimTenant, SimulatorHandle

RESOURCE = "security/alerts?$filter=status eq 'newAlert'"


def tenant_entry(tenant: SimTenant, name: str, *, credential: str = "secret",
                 key_dir: Path | None = None, subscriptions: list[dict[str, Any]] | None = None
                 ) -> dict[str, Any]:
    app = tenant.app
    entry: dict[str, Any] = {"name": name, "tenant_id": tenant.tenant_id,
                             "client_id": app.client_id,
                             "subscriptions": subscriptions if subscriptions is not None else []}
    if credential == "secret":
        entry["client_secret"] = app.secret
    else:
        assert key_dir is not None and app.private_key_pem and app.thumbprint
        key = key_dir / f"{name}.key.pem"
        key.write_text(app.private_key_pem, encoding="utf-8")
        entry["certificate"] = {"private_key_file": str(key), "thumbprint": app.thumbprint}
    return entry


def sim_settings(make_settings: MakeSettings, sim: SimulatorHandle, redis_url: str, *,
                 tenants: list[dict[str, Any]] | None = None, public_url: str =
                 "http://127.0.0.1:9", **overrides: Any) -> Settings:
    if tenants is None:
        tenants = [tenant_entry(t, f"t{i}") for i, t in enumerate(sim.tenants)]
    graph = {"authority_host": sim.base_url, "graph_url": sim.graph_url,
             "ca_bundle": str(sim.ca_path), **overrides.pop("graph", {})}
    return make_settings(redis_url=redis_url, graph=graph, tenants=tenants,
                         web={"public_url": public_url, "allow_http": True}, **overrides)
