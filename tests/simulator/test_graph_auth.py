"""Graph's front door: bearer tokens, roles, headers and error bodies."""

from __future__ import annotations

import jwt
import pytest

from tests.fixtures.simulator import SimulatorHandle


def _error(response: object) -> dict[str, object]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    error = body["error"]
    assert {"code", "message", "innerError"} <= set(error)
    assert {"date", "request-id", "client-request-id"} <= set(error["innerError"])
    return dict(error)


def test_missing_token_is_401(simulator: SimulatorHandle) -> None:
    with simulator.http_client() as client:
        response = client.get(f"{simulator.graph_url}/security/alerts")
    assert response.status_code == 401
    error = _error(response)
    assert error["code"] == "InvalidAuthenticationToken"
    assert error["message"] == "Access token is empty."


def test_expired_token_is_401(simulator: SimulatorHandle) -> None:
    token = simulator.control.mint_token(
        simulator.tenant.tenant_id, simulator.tenant.app.client_id, expires_in=-10
    )
    with simulator.http_client(headers={"Authorization": f"Bearer {token}"}) as client:
        response = client.get(f"{simulator.graph_url}/security/alerts")
    assert response.status_code == 401
    assert _error(response)["message"] == "Access token has expired or is not yet valid."


def test_wrong_signature_is_401(simulator: SimulatorHandle) -> None:
    from receiver.simulator.tls import make_client_certificate

    claims = jwt.decode(simulator.token(), options={"verify_signature": False})
    forged = jwt.encode(claims, make_client_certificate().private_key_pem, algorithm="RS256")
    with simulator.http_client(headers={"Authorization": f"Bearer {forged}"}) as client:
        response = client.get(f"{simulator.graph_url}/security/alerts")
    assert response.status_code == 401
    assert _error(response)["message"] == "Access token validation failure."


def test_not_a_jwt_is_401(simulator: SimulatorHandle) -> None:
    with simulator.http_client(headers={"Authorization": "Bearer abc"}) as client:
        response = client.get(f"{simulator.graph_url}/security/alerts")
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("path", "required"),
    [
        ("/security/alerts", "SecurityEvents.Read.All"),
        ("/security/alerts_v2", "SecurityAlert.Read.All"),
        ("/security/incidents", "SecurityIncident.Read.All"),
        ("/security/secureScores", "SecurityEvents.Read.All"),
    ],
)
def test_token_without_role_is_403(simulator: SimulatorHandle, path: str, required: str) -> None:
    token = simulator.control.mint_token(
        simulator.tenant.tenant_id, simulator.tenant.app.client_id, roles=["Mail.Send"]
    )
    with simulator.http_client(headers={"Authorization": f"Bearer {token}"}) as client:
        response = client.get(f"{simulator.graph_url}{path}")
    assert response.status_code == 403
    error = _error(response)
    assert error["code"] == "Forbidden"
    assert str(error["message"]).startswith("Missing application roles. API required roles: ")
    assert required in str(error["message"])
    assert str(error["message"]).endswith("application roles: Mail.Send.")


def test_app_registered_without_roles_gets_403(make_simulator) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator(roles=())
    with sim.graph() as graph:
        assert graph.get("/security/alerts_v2").status_code == 403
        assert graph.post("/users/x/sendMail", json={"message": {}}).status_code == 403


def test_headers_echo_client_request_id(simulator: SimulatorHandle) -> None:
    with simulator.graph() as graph:
        response = graph.get("/security/alerts", headers={"client-request-id": "abc-123"})
    assert response.status_code == 200
    assert response.headers["client-request-id"] == "abc-123"
    assert response.headers["request-id"]
    assert response.headers["date"]


def test_beta_serves_the_same_handlers(simulator: SimulatorHandle) -> None:
    alert_id = simulator.control.create_alert(simulator.tenant.tenant_id, kind="v2")
    with simulator.graph() as graph:
        response = graph.get(f"{simulator.beta_url}/security/alerts_v2/{alert_id}")
    assert response.status_code == 200
    assert response.json()["id"] == alert_id


def test_tenants_are_partitioned(make_simulator) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator(tenants=2)
    first, second = sim.tenants
    alert_id = sim.control.create_alert(first.tenant_id, kind="v2")
    with sim.graph(first) as graph:
        assert graph.get(f"/security/alerts_v2/{alert_id}").status_code == 200
    with sim.graph(second) as graph:
        assert graph.get(f"/security/alerts_v2/{alert_id}").status_code == 404
        assert graph.get("/security/alerts_v2").json()["value"] == []


def test_injected_5xx_and_429_and_latency(simulator: SimulatorHandle) -> None:
    simulator.control.inject_fault("graph_5xx", count=1, status=502)
    simulator.control.inject_fault("graph_429", count=1, retryAfter=2.5)
    with simulator.graph() as graph:
        assert graph.get("/security/alerts").status_code == 502
        throttled = graph.get("/security/alerts")
        assert throttled.status_code == 429
        assert throttled.headers["Retry-After"] == "2.5"
        assert graph.get("/security/alerts").status_code == 200
        simulator.control.inject_fault("graph_latency", ms=150)
        response = graph.get("/security/alerts")
    assert response.status_code == 200
    assert response.elapsed.total_seconds() >= 0.15


def test_unknown_segment(simulator: SimulatorHandle) -> None:
    with simulator.graph() as graph:
        response = graph.get("/nothing/here")
    assert response.status_code == 400
    assert "Resource not found for the segment 'nothing'" in response.json()["error"]["message"]


def test_throttle_150_per_minute(make_simulator) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator(throttle=True)
    with sim.graph() as graph:
        statuses = [graph.get("/security/alerts").status_code for _ in range(150)]
        assert statuses == [200] * 150
        # alerts_v2 and incidents share the same bucket
        throttled = graph.get("/security/alerts_v2")
        assert throttled.status_code == 429
        retry_after = float(throttled.headers["Retry-After"])
        assert 0 < retry_after <= 60
        error = throttled.json()["error"]
        assert error["code"] == "TooManyRequests"
        assert error["message"] == "Please retry again later."
        assert error["innerError"]["code"] == "429"
        assert error["innerError"]["status"] == "429"
        # subscriptions are another bucket
        assert graph.get("/subscriptions").status_code == 200
    # another app in the same tenant has its own budget
    other = sim.control.add_tenants(1)[0]
    with sim.graph(other) as graph:
        assert graph.get("/security/alerts").status_code == 200
    sim.control.set_throttle(False)
    with sim.graph() as graph:
        assert graph.get("/security/alerts").status_code == 200


def test_session_simulator_serves(simulator_session: SimulatorHandle) -> None:
    with simulator_session.graph() as graph:
        assert graph.get("/security/secureScores").status_code == 200
