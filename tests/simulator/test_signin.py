"""Entra ID user sign-in in the simulator: the authorize endpoint and the authorization code
grant, driven by the real MSAL library (initiate_auth_code_flow /
acquire_token_by_auth_code_flow), and the errors Entra gives."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import msal
import pytest
import requests

from tests.fixtures.simulator import SimulatorHandle

# MSAL warns on every response_mode but form_post; Entra's default (query) is what is tested.
pytestmark = pytest.mark.filterwarnings(
    "ignore:response_mode='form_post' is recommended:UserWarning"
)

REDIRECT = "https://receiver.example/actions/signin/callback"
GROUP = "6c2d1a7e-0000-4000-8000-00000000aaaa"


def _msal(sim: SimulatorHandle, tenant_id: str | None = None) -> msal.ConfidentialClientApplication:
    session = requests.Session()
    session.verify = str(sim.ca_path)
    session.trust_env = False
    return msal.ConfidentialClientApplication(
        sim.tenant.app.client_id,
        client_credential=sim.tenant.app.secret,
        authority=sim.authority(tenant_id),
        instance_discovery=False,
        http_client=session,
        exclude_scopes=["offline_access"],
    )


def _control(sim: SimulatorHandle, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return sim.control.http.request(method, path, **kwargs)


def _setup(
    sim: SimulatorHandle, *, groups: list[str] | None = None, upn: str = "adele@contoso.example"
) -> dict[str, Any]:
    tid, cid = sim.tenant.tenant_id, sim.tenant.app.client_id
    assert (
        _control(
            sim,
            "POST",
            f"/tenants/{tid}/apps/{cid}/redirect-uris",
            json={"redirectUris": [REDIRECT]},
        ).status_code
        == 200
    )
    added = _control(
        sim,
        "POST",
        "/users",
        json={
            "tenantId": tid,
            "users": [
                {
                    "userPrincipalName": upn,
                    "displayName": "Adele Vance",
                    "groups": groups if groups is not None else [GROUP],
                }
            ],
        },
    )
    assert added.status_code == 201, added.text
    assert _control(sim, "POST", "/signin", json={"userPrincipalName": upn}).status_code == 200
    user: dict[str, Any] = added.json()["users"][0]
    return user


def _authorize(sim: SimulatorHandle, url: str) -> httpx.Response:
    with sim.http_client() as client:
        return client.get(url)


def _query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_msal_auth_code_flow_signs_in_the_chosen_user(simulator: SimulatorHandle) -> None:
    user = _setup(simulator)
    app = _msal(simulator)
    flow = app.initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="query")
    sent = {k: v[0] for k, v in parse_qs(urlsplit(flow["auth_uri"]).query).items()}
    assert sent["code_challenge_method"] == "S256" and sent["response_type"] == "code"
    answer = _query(_authorize(simulator, flow["auth_uri"]))
    assert answer["state"] == flow["state"] and answer["code"]
    result = app.acquire_token_by_auth_code_flow(
        flow, {"code": answer["code"], "state": answer["state"]}
    )
    assert "id_token" in result, result
    # the id token verifies with the simulator's published key
    with simulator.http_client() as client:
        jwks = client.get(f"{simulator.authority()}/discovery/v2.0/keys").json()
    kid = jwt.get_unverified_header(result["id_token"])["kid"]
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid)).key
    claims = jwt.decode(
        result["id_token"],
        key,
        algorithms=["RS256"],
        audience=simulator.tenant.app.client_id,
        issuer=f"{simulator.base_url}/{simulator.tenant.tenant_id}/v2.0",
    )
    assert claims["tid"] == simulator.tenant.tenant_id and claims["oid"] == user["id"]
    assert claims["preferred_username"] == "adele@contoso.example"
    assert claims["name"] == "Adele Vance" and claims["groups"] == [GROUP]
    assert claims["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()
    assert claims["exp"] - claims["iat"] == 3600 and "refresh_token" not in result
    log = _control(simulator, "GET", "/signins").json()["authorize"]
    assert log[-1]["code_challenge"] == sent["code_challenge"]
    assert log[-1]["redirect_uri"] == REDIRECT


def test_a_code_works_once_and_only_with_its_verifier_and_redirect(
    simulator: SimulatorHandle,
) -> None:
    _setup(simulator)
    app = _msal(simulator)

    def fresh() -> tuple[dict[str, Any], dict[str, str]]:
        flow = app.initiate_auth_code_flow([], redirect_uri=REDIRECT)
        return flow, _query(_authorize(simulator, flow["auth_uri"]))

    flow, answer = fresh()
    assert "id_token" in app.acquire_token_by_auth_code_flow(dict(flow), answer)
    again = app.acquire_token_by_auth_code_flow(dict(flow), answer)
    assert again["error"] == "invalid_grant" and 54005 in again["error_codes"]

    flow, answer = fresh()
    wrong = dict(flow, code_verifier="x" * 43)
    refused = app.acquire_token_by_auth_code_flow(wrong, answer)
    assert refused["error"] == "invalid_grant" and 501481 in refused["error_codes"]

    flow, answer = fresh()
    moved = dict(flow, redirect_uri=REDIRECT + "/elsewhere")
    refused = app.acquire_token_by_auth_code_flow(moved, answer)
    assert refused["error"] == "invalid_grant" and 500112 in refused["error_codes"]

    refused = app.acquire_token_by_auth_code_flow(
        dict(flow), {"code": "0.Anothing", "state": flow["state"]}
    )
    assert refused["error"] == "invalid_grant" and 9002313 in refused["error_codes"]


def test_another_client_cannot_redeem_the_code(simulator: SimulatorHandle) -> None:
    _setup(simulator)
    flow = _msal(simulator).initiate_auth_code_flow([], redirect_uri=REDIRECT)
    answer = _query(_authorize(simulator, flow["auth_uri"]))
    [other] = simulator.control.add_tenants(1)
    tid = simulator.tenant.tenant_id
    app = _control(simulator, "POST", f"/tenants/{tid}/apps", json={"secret": "s3cret~other"})
    with simulator.http_client() as client:
        refused = client.post(
            simulator.token_url(),
            data={
                "grant_type": "authorization_code",
                "client_id": app.json()["clientId"],
                "client_secret": "s3cret~other",
                "code": answer["code"],
                "redirect_uri": REDIRECT,
                "code_verifier": flow["code_verifier"],
                "scope": "openid profile",
            },
        )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert other.tenant_id != tid


def test_errors_entra_shows_on_its_own_page(simulator: SimulatorHandle) -> None:
    _setup(simulator)
    app = _msal(simulator)
    flow = app.initiate_auth_code_flow([], redirect_uri=REDIRECT + "/not-registered")
    page = _authorize(simulator, flow["auth_uri"])
    assert page.status_code == 400 and "AADSTS50011" in page.text
    assert "location" not in page.headers
    unknown = _authorize(
        simulator, flow["auth_uri"].replace(simulator.tenant.tenant_id, str(uuid.uuid4()))
    )
    assert unknown.status_code == 400 and "AADSTS90002" in unknown.text
    # a user of another tenant at the browser
    [other] = simulator.control.add_tenants(1)
    _control(
        simulator,
        "POST",
        "/users",
        json={"tenantId": other.tenant_id, "userPrincipalName": "eve@fabrikam.example"},
    )
    _control(simulator, "POST", "/signin", json={"userPrincipalName": "eve@fabrikam.example"})
    flow = app.initiate_auth_code_flow([], redirect_uri=REDIRECT)
    page = _authorize(simulator, flow["auth_uri"])
    assert page.status_code == 400 and "AADSTS50020" in page.text
    # nobody at the browser: the sign-in page, no redirect
    _control(simulator, "POST", "/signin", json={"userPrincipalName": None})
    page = _authorize(simulator, flow["auth_uri"])
    assert page.status_code == 200 and "POST /_sim/signin" in page.text


def test_errors_that_go_back_to_the_redirect_uri(simulator: SimulatorHandle) -> None:
    _setup(simulator)
    app = _msal(simulator)
    _control(
        simulator,
        "POST",
        "/signin",
        json={"userPrincipalName": "adele@contoso.example", "decline": True},
    )
    flow = app.initiate_auth_code_flow([], redirect_uri=REDIRECT)
    answer = _query(_authorize(simulator, flow["auth_uri"]))
    assert answer["error"] == "access_denied" and answer["state"] == flow["state"]
    assert answer["error_description"].startswith("AADSTS65004: ")
    result = app.acquire_token_by_auth_code_flow(flow, answer)
    assert result["error"] == "access_denied"
    token_like = flow["auth_uri"].replace("response_type=code", "response_type=token")
    answer = _query(_authorize(simulator, token_like))
    assert answer["error"] == "unsupported_response_type"


def test_login_hint_picks_the_user_and_groups_overage(simulator: SimulatorHandle) -> None:
    _setup(simulator)
    many = [str(uuid.UUID(int=i)) for i in range(201)]
    _control(
        simulator,
        "POST",
        "/users",
        json={
            "tenantId": simulator.tenant.tenant_id,
            "userPrincipalName": "megan@contoso.example",
            "groups": many,
        },
    )
    app = _msal(simulator)
    flow = app.initiate_auth_code_flow(
        [], redirect_uri=REDIRECT, login_hint="megan@contoso.example"
    )
    result = app.acquire_token_by_auth_code_flow(
        flow, _query(_authorize(simulator, flow["auth_uri"]))
    )
    claims = result["id_token_claims"]
    assert claims["preferred_username"] == "megan@contoso.example"
    assert "groups" not in claims and claims["_claim_names"] == {"groups": "src1"}
    assert "getMemberObjects" in claims["_claim_sources"]["src1"]["endpoint"]


def test_reset_forgets_users_and_codes(simulator: SimulatorHandle) -> None:
    _setup(simulator)
    flow = _msal(simulator).initiate_auth_code_flow([], redirect_uri=REDIRECT)
    simulator.control.reset()
    [tenant] = simulator.control.tenants()
    users = _control(simulator, "GET", "/users", params={"tenantId": tenant["tenantId"]})
    assert users.json() == {"users": []}
    signed_in = _control(
        simulator, "POST", "/signin", json={"userPrincipalName": "adele@contoso.example"}
    )
    assert signed_in.status_code == 404
    page = _authorize(
        simulator, flow["auth_uri"].replace(simulator.tenant.tenant_id, tenant["tenantId"])
    )
    assert page.status_code == 400 and "AADSTS50011" in page.text  # registration gone too


@pytest.mark.parametrize("method", ["S256", "plain"])
def test_pkce_methods(simulator: SimulatorHandle, method: str) -> None:
    _setup(simulator)
    tid, cid = simulator.tenant.tenant_id, simulator.tenant.app.client_id
    verifier = "v" * 50
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if method == "S256"
        else verifier
    )
    with simulator.http_client() as client:
        answer = _query(
            client.get(
                f"{simulator.authority()}/oauth2/v2.0/authorize",
                params={
                    "client_id": cid,
                    "response_type": "code",
                    "redirect_uri": REDIRECT,
                    "scope": "openid",
                    "state": "s1",
                    "code_challenge": challenge,
                    "code_challenge_method": method,
                },
            )
        )
        token = client.post(
            simulator.token_url(),
            data={
                "grant_type": "authorization_code",
                "client_id": cid,
                "client_secret": simulator.tenant.app.secret,
                "code": answer["code"],
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
                "client_info": "1",
            },
        )
    assert token.status_code == 200, token.text
    body = token.json()
    assert jwt.decode(body["id_token"], options={"verify_signature": False})["tid"] == tid
    assert "client_info" in body and "nonce" not in jwt.decode(
        body["id_token"], options={"verify_signature": False}
    )
