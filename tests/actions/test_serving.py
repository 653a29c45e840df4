"""The web role as `receiver web` builds it: with actions enabled the action endpoint sits in
front of the web app on the same port (the notification path, health and metrics unchanged);
without, there is no action endpoint."""

from __future__ import annotations

import httpx
import pytest

from receiver.actions.links import LinkSigner
from receiver.cli import web_app_from_environment
from tests.fixtures.settings import WriteConfig, base_settings_data
from tests.fixtures.simulator import SimulatorHandle
from tests.fixtures.web import free_port, served
from tests.graph.helpers import tenant_entry

KEY = "serving-signing-key-0123456789abcdefghijk"


def _config(
    write_config: WriteConfig, sim: SimulatorHandle, redis_url: str, port: int, enabled: bool
) -> str:
    data = base_settings_data()
    data["redis"]["url"] = redis_url
    data["web"]["public_url"] = f"http://127.0.0.1:{port}"
    data["graph"] = {
        "authority_host": sim.base_url,
        "graph_url": sim.graph_url,
        "ca_bundle": str(sim.ca_path),
        "max_retries": 0,
    }
    data["tenants"] = [tenant_entry(sim.tenant, "contoso")]
    data["actions"] = {
        "enabled": enabled,
        "path": "/triage",
        "signing_keys": [{"id": "k1", "key_env": "TEST_ACTIONS_KEY"}],
    }
    return str(write_config(data))


async def test_web_role_serves_actions_beside_the_webhook(
    simulator: SimulatorHandle,
    redis_url: str,
    write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    monkeypatch.setenv("TEST_ACTIONS_KEY", KEY)
    monkeypatch.setenv("RECEIVER_CONFIG", _config(write_config, simulator, redis_url, port, True))
    alert_id = simulator.control.create_alert(simulator.tenant.tenant_id, kind="v2")
    token = LinkSigner([("k1", KEY.encode())], 600).sign(
        alert_id, simulator.tenant.tenant_id, "alerts_v2", "resolve_true_positive"
    )
    async with (
        served(web_app_from_environment(), port) as url,
        httpx.AsyncClient(base_url=url, trust_env=False) as client,
    ):
        assert (await client.get("/healthz")).text == "ok"
        handshake = await client.post("/webhooks/graph?validationToken=abc%20def")
        assert handshake.status_code == 200 and handshake.text == "abc def"
        assert (await client.get(f"/triage/{token}")).status_code == 200
        done = await client.post(f"/triage/{token}", data={"name": "Sam"})
        assert done.status_code == 200, done.text
        metrics = (await client.get("/metrics")).text
        assert 'receiver_actions_total{action="resolve_true_positive",outcome="done"} 1.0' in (
            metrics
        )
    with simulator.graph() as graph:
        assert graph.get(f"/security/alerts_v2/{alert_id}").json()["status"] == "resolved"


async def test_without_actions_there_is_no_endpoint(
    simulator: SimulatorHandle,
    redis_url: str,
    write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    monkeypatch.setenv("TEST_ACTIONS_KEY", KEY)
    monkeypatch.setenv("RECEIVER_CONFIG", _config(write_config, simulator, redis_url, port, False))
    async with (
        served(web_app_from_environment(), port) as url,
        httpx.AsyncClient(base_url=url, trust_env=False) as client,
    ):
        assert (await client.get("/triage/anything")).status_code == 404
        assert "receiver_actions" not in (await client.get("/metrics")).text
