"""Entra ID: the real MSAL library gets tokens (secret and certificate) and sees real errors."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import msal
import pytest
import requests

from tests.fixtures.simulator import GRAPH_SCOPE, SimulatorHandle


def _session(sim: SimulatorHandle) -> requests.Session:
    session = requests.Session()
    session.verify = str(sim.ca_path)
    session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides verify
    return session


def _app(
    sim: SimulatorHandle,
    credential: Any,
    tenant_id: str | None = None,
    client_id: str | None = None,
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id or sim.tenant.app.client_id,
        client_credential=credential,
        authority=sim.authority(tenant_id),
        instance_discovery=False,
        http_client=_session(sim),
    )


def test_msal_client_secret_token_then_cache(simulator: SimulatorHandle) -> None:
    app = _app(simulator, simulator.tenant.app.msal_credential("secret"))
    first = app.acquire_token_for_client([GRAPH_SCOPE])
    assert "access_token" in first, first
    assert first["token_type"] == "Bearer"
    assert first["token_source"] == "identity_provider"
    second = app.acquire_token_for_client([GRAPH_SCOPE])
    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    claims = jwt.decode(first["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["iss"] == f"https://sts.windows.net/{simulator.tenant.tenant_id}/"
    assert claims["tid"] == simulator.tenant.tenant_id
    assert claims["appid"] == simulator.tenant.app.client_id
    assert claims["appidacr"] == "1"
    assert "SecurityEvents.ReadWrite.All" in claims["roles"]
    assert claims["exp"] - claims["iat"] == 3599


def test_msal_certificate_token_then_cache(simulator: SimulatorHandle) -> None:
    app = _app(simulator, simulator.tenant.app.msal_credential("certificate"))
    first = app.acquire_token_for_client([GRAPH_SCOPE])
    assert "access_token" in first, first
    claims = jwt.decode(first["access_token"], options={"verify_signature": False})
    assert claims["appidacr"] == "2"
    assert app.acquire_token_for_client([GRAPH_SCOPE])["token_source"] == "cache"


def test_msal_certificate_with_sha256_thumbprint(simulator: SimulatorHandle) -> None:
    # MSAL >= 1.35 signs PS256 with x5t#S256 when given the public certificate only.
    tenant_app = simulator.tenant.app
    app = _app(
        simulator,
        {
            "private_key": tenant_app.private_key_pem,
            "public_certificate": tenant_app.certificate_pem,
        },
    )
    result = app.acquire_token_for_client([GRAPH_SCOPE])
    assert "access_token" in result, result


def test_wrong_secret_is_invalid_client_7000215(simulator: SimulatorHandle) -> None:
    result = _app(simulator, "not-the-secret").acquire_token_for_client([GRAPH_SCOPE])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert "Trace ID: " in result["error_description"]
    assert "Correlation ID: " in result["error_description"]
    assert "Timestamp: " in result["error_description"]
    assert {"timestamp", "trace_id", "correlation_id"} <= set(result)


def test_wrong_secret_status_and_shape(simulator: SimulatorHandle) -> None:
    with simulator.http_client() as client:
        response = client.post(
            simulator.token_url(),
            data={
                "grant_type": "client_credentials",
                "client_id": simulator.tenant.app.client_id,
                "client_secret": "wrong",
                "scope": GRAPH_SCOPE,
            },
        )
    assert response.status_code == 401
    body = response.json()
    assert body["error_uri"].endswith("error?code=7000215")


def test_unknown_client_is_unauthorized_client_700016(simulator: SimulatorHandle) -> None:
    stranger = str(uuid.uuid4())
    result = _app(simulator, "x", client_id=stranger).acquire_token_for_client([GRAPH_SCOPE])
    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [700016]
    assert f"Application with identifier '{stranger}' was not found" in result["error_description"]


def test_unknown_tenant_fails_discovery_90002(simulator: SimulatorHandle) -> None:
    with pytest.raises(ValueError, match="Unable to get authority configuration") as raised:
        _app(simulator, "x", tenant_id=str(uuid.uuid4()))
    cause = raised.value.__cause__ or raised.value.__context__
    assert "AADSTS90002" in str(cause)
    with simulator.http_client() as client:
        response = client.post(
            simulator.token_url(str(uuid.uuid4())),
            data={
                "grant_type": "client_credentials",
                "client_id": "x",
                "client_secret": "y",
                "scope": GRAPH_SCOPE,
            },
        )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_tenant"
    assert response.json()["error_codes"] == [90002]


def _assertion(sim: SimulatorHandle, **claims: Any) -> str:
    app = sim.tenant.app
    now = int(time.time())
    payload = {
        "aud": sim.token_url(),
        "iss": app.client_id,
        "sub": app.client_id,
        "exp": now + 600,
        "nbf": now,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    import base64

    x5t = base64.urlsafe_b64encode(bytes.fromhex(app.thumbprint or "")).decode()
    assert app.private_key_pem
    return jwt.encode(payload, app.private_key_pem, algorithm="RS256", headers={"x5t": x5t})


def _post_assertion(sim: SimulatorHandle, assertion: str) -> Any:
    with sim.http_client() as client:
        return client.post(
            sim.token_url(),
            data={
                "grant_type": "client_credentials",
                "client_id": sim.tenant.app.client_id,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
                "scope": GRAPH_SCOPE,
            },
        )


def test_hand_made_assertion_is_accepted(simulator: SimulatorHandle) -> None:
    response = _post_assertion(simulator, _assertion(simulator))
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"token_type", "expires_in", "ext_expires_in", "access_token"}


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"exp": int(time.time()) - 3600}, 700024),
        ({"nbf": int(time.time()) + 3600}, 700024),
        ({"aud": "https://login.microsoftonline.com/other/oauth2/v2.0/token"}, 700023),
        ({"iss": str(uuid.uuid4())}, 700021),
        ({"jti": None}, 50027),
    ],
)
def test_bad_assertion_claims(
    simulator: SimulatorHandle, claims: dict[str, Any], code: int
) -> None:
    response = _post_assertion(simulator, _assertion(simulator, **claims))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_codes"] == [code]


def test_tampered_assertion_is_700027(simulator: SimulatorHandle) -> None:
    token = _assertion(simulator)
    header, _payload, signature = token.split(".")
    forged = jwt.decode(token, options={"verify_signature": False})
    forged["sub"] = forged["iss"]
    forged["exp"] += 1
    import base64
    import json

    body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    response = _post_assertion(simulator, f"{header}.{body}.{signature}")
    assert response.status_code == 401
    assert response.json()["error_codes"] == [700027]
    assert "did not match the expected signature" in response.json()["error_description"]


def test_assertion_with_unknown_thumbprint_is_700027(simulator: SimulatorHandle) -> None:
    app = simulator.tenant.app
    now = int(time.time())
    assert app.private_key_pem
    token = jwt.encode(
        {
            "aud": simulator.token_url(),
            "iss": app.client_id,
            "sub": app.client_id,
            "exp": now + 600,
            "jti": "x",
        },
        app.private_key_pem,
        algorithm="RS256",
        headers={"x5t": "AAAAAAAAAAAAAAAAAAAAAAAAAAA"},
    )
    response = _post_assertion(simulator, token)
    assert response.json()["error_codes"] == [700027]
    assert "The key was not found" in response.json()["error_description"]


def test_scope_must_be_graph_default(simulator: SimulatorHandle) -> None:
    app = simulator.tenant.app
    with simulator.http_client() as client:
        response = client.post(
            simulator.token_url(),
            data={
                "grant_type": "client_credentials",
                "client_id": app.client_id,
                "client_secret": app.secret,
                "scope": "https://graph.microsoft.com/User.Read",
            },
        )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_discovery_and_keys(simulator: SimulatorHandle) -> None:
    with simulator.http_client() as client:
        config = client.get(f"{simulator.authority()}/v2.0/.well-known/openid-configuration").json()
        assert config["token_endpoint"] == simulator.token_url()
        assert config["issuer"] == f"{simulator.authority()}/v2.0"
        assert config["jwks_uri"].startswith("https://")
        keys = client.get(config["jwks_uri"]).json()["keys"]
        common = client.get(f"{simulator.base_url}/common/discovery/v2.0/keys").json()["keys"]
    assert keys == common
    token = simulator.token()
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys if k["kid"] == kid)
    public = jwt.PyJWK(key).key
    claims = jwt.decode(token, public, algorithms=["RS256"], audience="https://graph.microsoft.com")
    assert claims["tid"] == simulator.tenant.tenant_id


def test_token_failure_fault(simulator: SimulatorHandle) -> None:
    simulator.control.inject_fault("token_failure", count=2)
    with simulator.http_client() as client:
        response = client.post(simulator.token_url(), data={"grant_type": "client_credentials"})
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    with pytest.raises(msal.exceptions.MsalServiceError, match="503"):  # MSAL raises on 5xx
        _app(simulator, simulator.tenant.app.secret).acquire_token_for_client([GRAPH_SCOPE])
    result = _app(simulator, simulator.tenant.app.secret).acquire_token_for_client([GRAPH_SCOPE])
    assert "access_token" in result
