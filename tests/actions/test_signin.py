"""Sign-in with Entra ID before a triage action: the served receiver and the simulator over
HTTPS, a real Redis, and an httpx client that follows the redirects and carries the cookies
like a browser. The allowed person acts as their UPN; everyone else gets a clear page, and
the link stays usable."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from redis.asyncio import Redis

from receiver.actions.app import mount
from receiver.actions.audit import AuditRecord, recent
from receiver.actions.identity import Identity, SignInError, check_claims
from receiver.actions.links import LinkSigner
from receiver.actions.signin import Completed, SignIn
from receiver.config.files import ConfigError
from receiver.config.loader import load_settings
from receiver.config.settings import Settings
from receiver.store.keys import Keys
from receiver.web.app import create_app
from tests.fixtures.settings import MakeSettings, WriteConfig, base_settings_data
from tests.fixtures.simulator import SimulatorHandle
from tests.fixtures.web import free_port, served
from tests.graph.helpers import sim_settings, tenant_entry

KEY = "signin-signing-key-0123456789abcdefghijklmn"
KEYS = Keys("{test}")
SOC = "0b5d1c52-7c1e-4d55-9a43-5f1b0c5e0001"  # the allowed group
OTHER_GROUP = "0b5d1c52-7c1e-4d55-9a43-5f1b0c5e0002"
ADELE = "adele@contoso.example"
EVE = "eve@contoso.example"
MEGAN = "megan@contoso.example"
SESSION_TTL = 3600


@dataclass
class Harness:
    sim: SimulatorHandle
    settings: Settings
    client: httpx.AsyncClient
    redis: Redis
    registry: CollectorRegistry
    base: str

    @property
    def tenant_id(self) -> str:
        return self.sim.tenant.tenant_id

    @property
    def callback(self) -> str:
        return f"{self.base}/actions/signin/callback"

    def link(self, alert_id: str, action: str = "take") -> str:
        token = LinkSigner([("k1", KEY.encode())], 3600).sign(
            alert_id, self.tenant_id, "alerts_v2", action
        )
        return f"/actions/{token}"

    def new_alert(self) -> str:
        return self.sim.control.create_alert(self.tenant_id, kind="v2")

    def alert(self, alert_id: str) -> dict[str, Any]:
        with self.sim.graph() as graph:
            body: dict[str, Any] = graph.get(f"/security/alerts_v2/{alert_id}").json()
            return body

    def sim_call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.sim.control.http.request(method, path, **kwargs)
        assert answer.status_code < 400, answer.text
        return answer.json()

    def at_browser(self, upn: str | None) -> None:
        self.sim_call("POST", "/signin", json={"userPrincipalName": upn})

    async def audit(self) -> list[AuditRecord]:
        return list(reversed(await recent(self.redis, KEYS)))

    async def confirm(
        self, link: str, page: httpx.Response | None = None, **form: str
    ) -> httpx.Response:
        page = page or await self.client.get(link)
        return await self.client.post(link, data={"csrf": csrf_of(page), "confirm": "1", **form})


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def _settings(
    make_settings: MakeSettings, sim: SimulatorHandle, redis_url: str, port: int, **sign_in: Any
) -> Settings:
    app = sim.tenant.app
    return sim_settings(
        make_settings,
        sim,
        redis_url,
        public_url=f"http://127.0.0.1:{port}",
        tenants=[tenant_entry(sim.tenant, "contoso")],
        graph={"max_retries": 0},
        actions={
            "enabled": True,
            "signing_keys": [{"id": "k1", "key": KEY}],
            "sign_in": {
                "enabled": True,
                "tenant": "contoso",
                "client_id": app.client_id,
                "client_secret": app.secret,
                "allowed_groups": [SOC],
                "session_ttl_s": SESSION_TTL,
                **sign_in,
            },
        },
    )


@pytest.fixture
async def harness(
    simulator: SimulatorHandle, redis_url: str, make_settings: MakeSettings
) -> AsyncIterator[Harness]:
    port = free_port()
    settings = _settings(make_settings, simulator, redis_url, port)
    tid, cid = simulator.tenant.tenant_id, simulator.tenant.app.client_id
    base = f"http://127.0.0.1:{port}"
    simulator.control.http.post(
        f"/tenants/{tid}/apps/{cid}/redirect-uris",
        json={"redirectUris": [f"{base}/actions/signin/callback"]},
    )
    simulator.control.http.post(
        "/users",
        json={
            "tenantId": tid,
            "users": [
                {"userPrincipalName": ADELE, "displayName": "Adele Vance", "groups": [SOC]},
                {"userPrincipalName": EVE, "displayName": "Eve", "groups": [OTHER_GROUP]},
                {
                    "userPrincipalName": MEGAN,
                    "displayName": "Megan",
                    "groups": [SOC, *(str(uuid.UUID(int=i)) for i in range(1, 201))],
                },
            ],
        },
    )
    registry = CollectorRegistry()
    app = mount(create_app(settings), settings, registry=registry)
    redis = Redis.from_url(redis_url)
    try:
        async with (
            served(app, port) as url,
            httpx.AsyncClient(
                base_url=url,
                trust_env=False,
                timeout=30,
                follow_redirects=True,
                verify=simulator.ssl_context(),
            ) as client,
        ):
            yield Harness(simulator, settings, client, redis, registry, url)
    finally:
        await redis.aclose()


def _hops(page: httpx.Response) -> list[str]:
    return [f"{r.status_code} {r.url.path}" for r in page.history]


async def test_allowed_person_acts_as_their_upn(harness: Harness) -> None:
    harness.at_browser(ADELE)
    alert_id = harness.new_alert()
    link = harness.link(alert_id, "take")
    page = await harness.client.get(link)
    assert page.status_code == 200, page.text
    tid = harness.tenant_id
    assert _hops(page) == [
        f"302 {link}",
        f"302 /{tid}/oauth2/v2.0/authorize",
        "303 /actions/signin/callback",
    ]
    assert "Signed in as <strong>Adele Vance</strong> (adele@contoso.example)" in page.text
    assert 'name="name"' not in page.text  # no typed name any more
    # what the receiver sent to Entra: PKCE S256, nonce, state, query mode, our callback
    [sent] = harness.sim_call("GET", "/signins")["authorize"]
    assert sent["code_challenge_method"] == "S256" and sent["code_challenge"]
    assert sent["nonce"] and sent["state"] and sent["response_mode"] == "query"
    assert sent["redirect_uri"] == harness.callback and sent["client_id"] == (
        harness.sim.tenant.app.client_id
    )
    assert "openid" in sent["scope"].split()
    # cookies: the flow's is short-lived; the session's HttpOnly, Lax, scoped to the path
    flow_cookie = page.history[0].headers["set-cookie"]
    assert "Max-Age=600" in flow_cookie and "HttpOnly" in flow_cookie
    session_cookie = next(
        c
        for c in page.history[2].headers.get_list("set-cookie")
        if c.startswith("receiver_session=")
    )
    for part in ("HttpOnly", "Path=/actions", "SameSite=lax", f"Max-Age={SESSION_TTL}"):
        assert part in session_cookie
    assert "Secure" not in session_cookie  # an http base URL (loopback test)

    done = await harness.confirm(link, page)
    assert done.status_code == 200, done.text
    alert = harness.alert(alert_id)
    assert alert["status"] == "inProgress" and alert["assignedTo"] == ADELE
    assert [c["comment"] for c in alert["comments"]] == [f"Taken via alert action link by {ADELE}"]
    [record] = await harness.audit()
    assert (record.outcome, record.by) == ("done", ADELE)
    assert "Adele Vance" in record.identity and tid in record.identity
    # the same session acts on a second link without signing in again
    second = harness.new_alert()
    page = await harness.client.get(harness.link(second, "resolve_false_positive"))
    assert page.history == [] and page.status_code == 200
    assert (
        await harness.confirm(harness.link(second, "resolve_false_positive"), page)
    ).status_code == 200
    assert harness.alert(second)["classification"] == "falsePositive"


async def test_a_person_outside_the_allowed_groups_is_refused(harness: Harness) -> None:
    harness.at_browser(EVE)
    alert_id = harness.new_alert()
    link = harness.link(alert_id, "resolve_true_positive")
    updates_before = harness.sim.control.counters().get("alerts.v2.updated", 0)
    refused = await harness.client.get(link)
    assert refused.status_code == 403 and "Not allowed to triage alerts here" in refused.text
    assert "receiver_session" not in harness.client.cookies
    posted = await harness.client.post(link, data={"confirm": "1"})
    assert posted.status_code == 401
    assert harness.alert(alert_id)["status"] == "new"
    assert harness.sim.control.counters().get("alerts.v2.updated", 0) == updates_before
    assert await harness.redis.keys(KEYS.action_link("x")[:-1] + "*") == []  # not claimed
    outcomes = [(r.outcome, r.by, r.alert_id) for r in await harness.audit()]
    assert outcomes == [("not_allowed", EVE, alert_id), ("signin_required", "", alert_id)]
    metrics = generate_latest(harness.registry).decode()
    assert (
        'receiver_actions_total{action="resolve_true_positive",outcome="not_allowed"} 1.0'
        in metrics
    )
    # the link still works for someone allowed
    harness.at_browser(ADELE)
    assert (await harness.confirm(link)).status_code == 200
    assert harness.alert(alert_id)["classification"] == "truePositive"


async def test_groups_overage_is_refused_without_calling_graph(harness: Harness) -> None:
    harness.at_browser(MEGAN)  # in the allowed group, but in 201 groups
    link = harness.link(harness.new_alert())
    before = {k: v for k, v in harness.sim.control.counters().items() if k.startswith("graph")}
    refused = await harness.client.get(link)
    assert refused.status_code == 403
    assert "more groups than Entra ID puts in a sign-in token" in refused.text
    after = {k: v for k, v in harness.sim.control.counters().items() if k.startswith("graph")}
    assert after == before
    [record] = await harness.audit()
    assert (record.outcome, record.by) == ("groups_overage", MEGAN)


async def _to_callback(harness: Harness, link: str) -> str:
    """The receiver's redirect to Entra, and Entra's back: the callback URL, not opened."""
    to_entra = await harness.client.get(link, follow_redirects=False)
    assert to_entra.status_code == 302
    back = await harness.client.get(to_entra.headers["location"], follow_redirects=False)
    assert back.status_code == 302, back.text
    location: str = back.headers["location"]
    assert location.startswith(harness.callback + "?")
    return location


async def test_tampered_state_is_refused(harness: Harness) -> None:
    harness.at_browser(ADELE)
    link = harness.link(harness.new_alert())
    callback = await _to_callback(harness, link)
    state = parse_qs(urlsplit(callback).query)["state"][0]
    tampered = await harness.client.get(callback.replace(state, state[:-2] + "xx"))
    assert tampered.status_code == 400 and "Sign-in expired or started elsewhere" in tampered.text
    assert "receiver_session" not in harness.client.cookies
    # the genuine answer still completes the sign-in
    genuine = await harness.client.get(callback)
    assert genuine.status_code == 200 and "Signed in as" in genuine.text


async def test_replayed_code_is_refused(harness: Harness) -> None:
    harness.at_browser(ADELE)
    link = harness.link(harness.new_alert())
    callback = await _to_callback(harness, link)
    assert (await harness.client.get(callback)).status_code == 200
    harness.client.cookies.clear()
    # the same answer again: its sign-in is over
    again = await harness.client.get(callback)
    assert again.status_code == 400 and "Sign-in expired" in again.text
    # the old code smuggled into a new sign-in: Entra refuses to redeem it twice
    code = parse_qs(urlsplit(callback).query)["code"][0]
    fresh = await _to_callback(harness, link)
    smuggled = fresh.replace(parse_qs(urlsplit(fresh).query)["code"][0], code)
    refused = await harness.client.get(smuggled)
    assert refused.status_code == 400 and "Sign-in failed" in refused.text
    assert "AADSTS54005" in refused.text and code not in refused.text
    assert "receiver_session" not in harness.client.cookies
    [record] = await harness.audit()
    assert record.outcome == "signin_failed" and "54005" in record.graph


async def test_people_of_another_tenant_are_refused(harness: Harness) -> None:
    [other] = harness.sim.control.add_tenants(1)
    cid = harness.sim.tenant.app.client_id
    harness.sim_call(
        "POST",
        f"/tenants/{other.tenant_id}/apps",
        json={"clientId": cid, "secret": "multi-tenant-app-secret"},
    )
    harness.sim_call(
        "POST",
        f"/tenants/{other.tenant_id}/apps/{cid}/redirect-uris",
        json={"redirectUris": [harness.callback]},
    )
    harness.sim_call(
        "POST",
        "/users",
        json={
            "tenantId": other.tenant_id,
            "users": [{"userPrincipalName": "mallory@fabrikam.example", "groups": [SOC]}],
        },
    )
    harness.at_browser("mallory@fabrikam.example")
    alert_id = harness.new_alert()
    link = harness.link(alert_id)
    # Entra itself refuses a user of another tenant on its own page
    page = await harness.client.get(link)
    assert page.status_code == 400 and "AADSTS50020" in page.text
    # the authorize request moved to the other tenant (where the app is consented): Entra
    # signs the person in there, and the receiver refuses the token's tenant
    to_entra = await harness.client.get(link, follow_redirects=False)
    moved = to_entra.headers["location"].replace(harness.tenant_id, other.tenant_id)
    refused = await harness.client.get(moved)
    assert refused.status_code == 403 and "Signed in to another tenant" in refused.text
    assert "receiver_session" not in harness.client.cookies
    assert (await harness.client.post(link, data={"confirm": "1"})).status_code == 401
    assert harness.alert(alert_id)["status"] == "new"
    [refusal, required] = await harness.audit()
    assert refusal.outcome == "wrong_signin_tenant" and refusal.by == "mallory@fabrikam.example"
    assert required.outcome == "signin_required"


async def test_post_without_a_session_or_csrf_token_does_nothing(harness: Harness) -> None:
    harness.at_browser(ADELE)
    alert_id = harness.new_alert()
    link = harness.link(alert_id, "resolve_true_positive")
    anonymous = await harness.client.post(link, data={"name": "Adele", "confirm": "1"})
    assert anonymous.status_code == 401 and "Sign-in required" in anonymous.text
    assert anonymous.history == []  # a POST is never sent to sign in
    page = await harness.client.get(link)
    forged = await harness.client.post(link, data={"csrf": "x" * 43, "confirm": "1"})
    assert forged.status_code == 403 and "not from your current sign-in" in forged.text
    missing = await harness.client.post(link, data={"confirm": "1"})
    assert missing.status_code == 403
    assert harness.alert(alert_id)["status"] == "new"
    assert [r.outcome for r in await harness.audit()] == [
        "signin_required",
        "forbidden_csrf",
        "forbidden_csrf",
    ]
    assert (await harness.confirm(link, page)).status_code == 200  # not consumed


async def test_a_session_expires(harness: Harness) -> None:
    harness.at_browser(ADELE)
    alert_id = harness.new_alert()
    link = harness.link(alert_id, "take")
    page = await harness.client.get(link)
    [key] = await harness.redis.keys(KEYS.signin_session("x")[:-1] + "*")
    assert SESSION_TTL - 5 <= await harness.redis.ttl(key) <= SESSION_TTL
    cookie = harness.client.cookies["receiver_session"]
    assert cookie not in key.decode()  # Redis holds a hash of it, not the cookie
    await harness.redis.pexpire(key, 1)
    await asyncio.sleep(0.01)
    expired = await harness.confirm(link, page)
    assert expired.status_code == 401 and harness.alert(alert_id)["status"] == "new"
    # opening the link again signs in anew and the link works
    page = await harness.client.get(link)
    assert [h.status_code for h in page.history] == [302, 302, 303]
    assert (await harness.confirm(link, page)).status_code == 200


async def test_entra_errors_come_back_as_a_clear_page(harness: Harness) -> None:
    harness.sim_call("POST", "/signin", json={"userPrincipalName": ADELE, "decline": True})
    link = harness.link(harness.new_alert())
    page = await harness.client.get(link)
    assert page.status_code == 400 and "Sign-in failed" in page.text
    assert "access_denied" in page.text and "AADSTS65004" in page.text
    # the callback opened cold (no sign-in started in this browser)
    cold = await harness.client.get("/actions/signin/callback?code=abc&state=def")
    assert cold.status_code == 400 and "started elsewhere" in cold.text


async def test_codes_tokens_cookies_and_secrets_stay_out_of_logs(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # A role started earlier in this process quiets these (receiver.logs): hear them here.
    for noisy in ("urllib3", "msal"):
        caplog.set_level(logging.DEBUG, logger=noisy)
    harness.at_browser(ADELE)
    link = harness.link(harness.new_alert())
    callback = await _to_callback(harness, link)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    page = await harness.client.get(callback)
    assert page.status_code == 200
    flow_cookies = [
        v for k, v in harness.client.cookies.items() if k.startswith("receiver_signin_")
    ]
    session = harness.client.cookies["receiver_session"]
    await harness.confirm(link, page)
    await harness.client.get(callback)  # a replay, refused
    secret = harness.sim.tenant.app.secret
    assert secret
    secrets = [code, session, csrf_of(page), secret, link.removeprefix("/actions/"), *flow_cookies]
    # The test's own client (httpx, httpcore) logs the URLs and headers it sees, the code
    # among them. The receiver signs in with MSAL over requests (logger urllib3), and its
    # httpx client speaks only to Graph: every record but the test client's is checked.
    mine = [r for r in caplog.records if r.name != "httpx" and not r.name.startswith("httpcore")]
    assert any(r.name.startswith("receiver.actions.") for r in mine)
    assert any(r.name.startswith("urllib3") for r in mine)  # MSAL's requests were logged
    for record in mine:
        text = record.getMessage() + json.dumps(record.__dict__, default=str)
        for value in secrets:
            assert value not in text, record.name
    metrics = generate_latest(harness.registry).decode()
    assert 'receiver_actions_total{action="signin",outcome="signed_in"} 1.0' in metrics
    for record in await harness.audit():
        for value in secrets:
            assert value not in record.to_json()


# --- the ID token checks (pure) ------------------------------------------------------------

TID = "5f1c2b3a-7d4e-4a6b-9c8d-0e1f2a3b4c5d"
CID = "0a1b2c3d-4e5f-4a7b-8c9d-aebfc0d1e2f3"
ISSUER = f"https://login.microsoftonline.com/{TID}/v2.0"


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "aud": CID,
        "iss": ISSUER,
        "tid": TID,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "oid": "9d3f0a8e-0000-4000-8000-000000000001",
        "name": "Adele Vance",
        "preferred_username": ADELE,
        "groups": [SOC.upper()],
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _check(claims: dict[str, Any], groups: tuple[str, ...] = (SOC,)) -> str:
    try:
        who = check_claims(
            claims,
            client_id=CID,
            tenant_id=TID,
            issuer=ISSUER,
            allowed_groups=groups,
            now=time.time(),
        )
    except SignInError as exc:
        return exc.reason
    return who.upn


@pytest.mark.parametrize(
    ("changes", "groups", "expected"),
    [
        ({}, (SOC,), ADELE),
        ({"groups": None}, (), ADELE),  # no allow-list: anyone of the tenant
        ({"tid": str(uuid.uuid4())}, (SOC,), "wrong_signin_tenant"),
        (
            {"iss": f"https://login.microsoftonline.com/{uuid.uuid4()}/v2.0"},
            (SOC,),
            "signin_failed",
        ),
        ({"aud": str(uuid.uuid4())}, (SOC,), "signin_failed"),
        ({"exp": int(time.time()) - 3600}, (SOC,), "signin_failed"),
        ({"nbf": int(time.time()) + 3600}, (SOC,), "signin_failed"),
        ({"oid": None}, (SOC,), "signin_failed"),
        ({"groups": [OTHER_GROUP]}, (SOC,), "not_allowed"),
        ({"groups": None}, (SOC,), "no_groups_claim"),
        ({"groups": None, "_claim_names": {"groups": "src1"}}, (SOC,), "groups_overage"),
    ],
)
def test_id_token_checks(changes: dict[str, Any], groups: tuple[str, ...], expected: str) -> None:
    assert _check(_claims(**changes), groups) == expected


# --- settings -------------------------------------------------------------------------------


def _config(write_config: WriteConfig, **sign_in: Any) -> str:
    data = base_settings_data()
    data["actions"] = {
        "enabled": True,
        "signing_keys": [{"id": "k1", "key": KEY}],
        "sign_in": {"enabled": True, **sign_in},
    }
    return str(write_config(data))


def test_settings_need_client_id_and_secret(write_config: WriteConfig) -> None:
    path = _config(write_config)
    with pytest.raises(ConfigError) as exc:
        load_settings(path, environ={})
    text = exc.value.render()
    assert "actions.sign_in" in text and "client_id and client_secret" in text


def test_settings_secret_from_env_and_tenant_by_name(write_config: WriteConfig) -> None:
    path = _config(
        write_config,
        tenant="contoso",
        client_id=CID,
        client_secret_env="SIGNIN_SECRET",
        allowed_groups=[SOC],
    )
    settings = load_settings(path, environ={"SIGNIN_SECRET": "from-the-environment"})
    sign_in = settings.actions.sign_in
    assert sign_in.client_secret is not None
    assert sign_in.client_secret.get_secret_value() == "from-the-environment"
    assert sign_in.tenant_id_in(settings.tenants) == settings.tenants[0].tenant_id
    assert "from-the-environment" not in repr(settings)
    with pytest.raises(ConfigError) as exc:
        load_settings(path, environ={})
    assert "actions.sign_in.client_secret_env" in exc.value.render()
    assert "SIGNIN_SECRET is not set" in exc.value.render()


def test_settings_refuse_an_unknown_tenant(write_config: WriteConfig) -> None:
    path = _config(write_config, tenant="fabrikam", client_id=CID, client_secret="x" * 20)
    with pytest.raises(ConfigError) as exc:
        load_settings(path, environ={})
    assert "actions.sign_in.tenant 'fabrikam' is neither" in exc.value.render()
    other = _config(write_config, tenant=TID, client_id=CID, client_secret="x" * 20)
    settings = load_settings(other, environ={})
    assert settings.actions.sign_in.tenant_id_in(settings.tenants) == TID


async def test_cookies_are_secure_behind_an_https_url(
    make_settings: MakeSettings, redis_url: str
) -> None:
    settings = make_settings(
        redis_url=redis_url,
        web={"public_url": "https://receiver.example"},
        actions={
            "enabled": True,
            "signing_keys": [{"id": "k1", "key": KEY}],
            "sign_in": {"enabled": True, "client_id": CID, "client_secret": "x" * 20},
        },
    )
    redis = Redis.from_url(redis_url)
    try:
        signin = SignIn(settings, redis, KEYS)
        assert signin.redirect_uri == "https://receiver.example/actions/signin/callback"
        done = Completed(
            Identity("Adele", ADELE, "oid", settings.tenants[0].tenant_id),
            "/actions/some-link",
            "s" * 43,
        )
        response = signin.signed_in(done, "state-value")
    finally:
        await redis.aclose()
    assert response.status_code == 303 and response.headers["location"] == "/actions/some-link"
    cookies = response.headers.getlist("set-cookie")
    assert len(cookies) == 2 and all("Secure" in c and "HttpOnly" in c for c in cookies)
    assert any(c.startswith("receiver_session=") for c in cookies)
    assert any(c.startswith("receiver_signin_") and "Max-Age=0" in c for c in cookies)
