from __future__ import annotations

from pathlib import Path

import pytest

from receiver.graph.auth import GraphAuthError, TokenProvider
from tests.fixtures.settings import MakeSettings
from tests.fixtures.simulator import SimulatorHandle
from tests.graph.helpers import sim_settings, tenant_entry


async def test_tokens_per_tenant_secret_and_certificate_cached(
    make_simulator: object, make_settings: MakeSettings, tmp_path: Path
) -> None:
    sim: SimulatorHandle = make_simulator(tenants=2)  # type: ignore[operator]
    settings = sim_settings(
        make_settings,
        sim,
        "redis://127.0.0.1:1/0",
        tenants=[
            tenant_entry(sim.tenants[0], "by-secret"),
            tenant_entry(sim.tenants[1], "by-cert", credential="certificate", key_dir=tmp_path),
        ],
    )
    tokens = TokenProvider(settings.graph, settings.tenants)
    first = await tokens.token(sim.tenants[0].tenant_id)
    second = await tokens.token(sim.tenants[1].tenant_id)
    assert first != second
    issued = sim.control.counters()["entra.token.issued"]
    assert issued == 2
    # Served from MSAL's cache: no new token request reaches Entra.
    assert await tokens.token(sim.tenants[0].tenant_id) == first
    assert await tokens.token(sim.tenants[1].tenant_id) == second
    assert sim.control.counters()["entra.token.issued"] == issued
    # Each token works on Graph for its own tenant.
    with sim.http_client() as http:
        answer = http.get(
            f"{sim.graph_url}/subscriptions", headers={"Authorization": f"Bearer {second}"}
        )
        assert answer.status_code == 200


async def test_wrong_secret_names_tenant_and_aadsts_never_the_secret(
    simulator: SimulatorHandle, make_settings: MakeSettings
) -> None:
    wrong = "totally-wrong-secret-value-123"
    entry = tenant_entry(simulator.tenant, "contoso-prod")
    entry["client_secret"] = wrong
    settings = sim_settings(make_settings, simulator, "redis://127.0.0.1:1/0", tenants=[entry])
    tokens = TokenProvider(settings.graph, settings.tenants)
    with pytest.raises(GraphAuthError) as caught:
        await tokens.token(simulator.tenant.tenant_id)
    text = str(caught.value)
    assert "contoso-prod" in text and simulator.tenant.tenant_id in text
    assert "invalid_client" in text and "AADSTS7000215" in text
    assert wrong not in text and wrong not in repr(caught.value.args)
    assert caught.value.codes == (7000215,)


async def test_unknown_tenant_is_a_clear_error(
    simulator: SimulatorHandle, make_settings: MakeSettings
) -> None:
    entry = tenant_entry(simulator.tenant, "ghost")
    entry["tenant_id"] = "99999999-9999-4999-8999-999999999999"
    settings = sim_settings(make_settings, simulator, "redis://127.0.0.1:1/0", tenants=[entry])
    with pytest.raises(GraphAuthError, match="ghost"):
        await TokenProvider(settings.graph, settings.tenants).token(entry["tenant_id"])
