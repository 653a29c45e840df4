"""Entra ID user sign-in: the authorize endpoint and the authorization code grant.

There is no browser in a test, so nobody types a password: the test defines users (with
their groups) through the control API, says who sits at the browser
(``POST /_sim/signin``), and ``GET /{tenant}/oauth2/v2.0/authorize`` signs that person in at
once and redirects (302) to ``redirect_uri?code=...&state=...``, as Entra does for a user who
already has a session. A ``login_hint`` naming a user of the tenant picks that user instead.

Wire format as Entra's v2 endpoints: query parameters ``client_id``, ``response_type=code``,
``redirect_uri`` (must be registered on the app: ``POST /_sim/tenants/{t}/apps/{c}/redirect-
uris``), ``scope``, ``state``, ``nonce``, ``code_challenge`` + ``code_challenge_method``
(PKCE, ``S256`` or ``plain``), ``response_mode=query``. Errors Entra shows on its own page
(unknown tenant or app, unregistered redirect URI, a user of another tenant) are an HTML page
here too, never a redirect; the others go back to the redirect URI as ``error`` and
``error_description`` (AADSTS text) with the state.

A code works once, for 10 minutes, for the client it was issued to, with the same
redirect URI and the PKCE verifier of its challenge. The token response carries an RS256
``id_token`` signed with the simulator's key (``kid`` in the JWKS): ``aud`` the client id,
``iss`` ``https://HOST/{tid}/v2.0``, ``tid``, ``oid``, ``sub``, ``name``,
``preferred_username``, ``nonce``, ``groups`` (over 200 groups: the overage claims
``_claim_names``/``_claim_sources`` instead, as Entra does in JWTs), ``iat``/``nbf``/``exp``.
The code is not bound to the tenant of the token endpoint that redeems it (Microsoft does not
document either way): a relying party must check ``tid`` and ``iss`` itself.

State lives beside the simulator object and is dropped with the tenants on ``/_sim/reset``
(an entry whose tenant object is gone counts as gone).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import html
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

# The control API's own body and tenant helpers (same package, same answers).
from receiver.simulator.control_http import ControlError, control
from receiver.simulator.control_http import find_tenant as _tenant
from receiver.simulator.control_http import read_body as _body

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator
    from receiver.simulator.state import App, Tenant

CODE_LIFETIME_S = 600  # Entra: "authorization codes ... expire after about 10 minutes"
ID_TOKEN_LIFETIME_S = 3600
GROUPS_LIMIT = 200  # more groups than this: the overage claim instead (JWT tokens)
_LOG_LIMIT = 1000


@dataclass
class User:
    tenant: Tenant
    object_id: str
    user_principal_name: str
    display_name: str
    groups: tuple[str, ...]

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.object_id,
            "userPrincipalName": self.user_principal_name,
            "displayName": self.display_name,
            "groups": list(self.groups),
            "tenantId": self.tenant.tenant_id,
        }


@dataclass
class _TenantUsers:
    tenant: Tenant
    users: dict[str, User] = field(default_factory=dict)  # by lower-case UPN
    redirect_uris: dict[str, list[str]] = field(default_factory=dict)  # by client id


@dataclass
class _Code:
    tenant: Tenant
    user: User
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    nonce: str | None
    challenge: str | None
    method: str
    expires_at: float
    redeemed: bool = False


@dataclass
class SignInState:
    tenants: dict[str, _TenantUsers] = field(default_factory=dict)
    browser: User | None = None  # who sits at the browser
    decline: bool = False  # that person declines consent (access_denied)
    codes: dict[str, _Code] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)


class GrantError(Exception):
    """An authorization code the token endpoint refuses (400 ``invalid_grant``/...)."""

    def __init__(self, error: str, code: int, text: str) -> None:
        super().__init__(text)
        self.error = error
        self.code = code
        self.text = text


def state_of(sim: Simulator) -> SignInState:
    found = vars(sim).get("_signin")
    if isinstance(found, SignInState):
        return found
    created = SignInState()
    vars(sim)["_signin"] = created
    return created


def _live(sim: Simulator, tenant: Tenant) -> bool:
    return sim.directory.find(tenant.tenant_id) is tenant


def _tenant_users(sim: Simulator, tenant: Tenant) -> _TenantUsers:
    state = state_of(sim)
    entry = state.tenants.get(tenant.tenant_id)
    if entry is None or entry.tenant is not tenant:
        entry = state.tenants[tenant.tenant_id] = _TenantUsers(tenant)
    return entry


def _browser(sim: Simulator) -> User | None:
    user = state_of(sim).browser
    return user if user is not None and _live(sim, user.tenant) else None


# --- the control API -------------------------------------------------------------------------


async def add_users(request: Request, sim: Simulator) -> Response:
    body = await _body(request)
    tenant = _tenant(sim, body.get("tenantId"))
    specs = body.get("users", [body])
    if not isinstance(specs, list):
        raise ControlError(400, "users must be a list")
    entry = _tenant_users(sim, tenant)
    added = []
    for spec in specs:
        upn = spec.get("userPrincipalName") if isinstance(spec, dict) else None
        if not isinstance(upn, str) or "@" not in upn:
            raise ControlError(400, "userPrincipalName (name@domain) is required")
        groups = spec.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise ControlError(400, "groups must be a list of group object ids")
        user = User(
            tenant=tenant,
            object_id=str(uuid.UUID(spec.get("id") or str(uuid.uuid4()))),
            user_principal_name=upn,
            display_name=str(spec.get("displayName") or upn.split("@")[0]),
            groups=tuple(g.lower() for g in groups),
        )
        entry.users[upn.lower()] = user
        added.append(user.describe())
    return _json({"users": added}, 201)


async def list_users(request: Request, sim: Simulator) -> Response:
    tenant = _tenant(sim, request.query_params.get("tenantId"))
    users = _tenant_users(sim, tenant).users.values()
    return _json({"users": [u.describe() for u in users]})


async def sign_in_as(request: Request, sim: Simulator) -> Response:
    """Who sits at the browser: ``{userPrincipalName, tenantId?, decline?}``; null signs out."""
    body = await _body(request)
    state = state_of(sim)
    upn = body.get("userPrincipalName")
    if upn is None:
        state.browser, state.decline = None, False
        return _json({"signedIn": None})
    candidates = (
        [_tenant(sim, body["tenantId"])]
        if body.get("tenantId")
        else list(sim.directory.tenants.values())
    )
    for tenant in candidates:
        user = _tenant_users(sim, tenant).users.get(str(upn).lower())
        if user is not None:
            state.browser, state.decline = user, bool(body.get("decline", False))
            return _json({"signedIn": user.describe(), "decline": state.decline})
    raise ControlError(404, f"unknown user {upn}")


async def add_redirect_uris(request: Request, sim: Simulator) -> Response:
    tenant = _tenant(sim, request.path_params["tenant_id"])
    client_id = request.path_params["client_id"].lower()
    if client_id not in tenant.apps:
        raise ControlError(404, f"unknown app {client_id} in tenant {tenant.tenant_id}")
    uris = (await _body(request)).get("redirectUris")
    if not isinstance(uris, list) or not all(isinstance(u, str) and u for u in uris):
        raise ControlError(400, "redirectUris must be a list of URLs")
    registered = _tenant_users(sim, tenant).redirect_uris.setdefault(client_id, [])
    registered.extend(u for u in uris if u not in registered)
    return _json({"redirectUris": registered})


async def sign_in_log(request: Request, sim: Simulator) -> Response:
    return _json({"authorize": state_of(sim).log})


# --- the authorize endpoint ------------------------------------------------------------------


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def _description(code: int, text: str, correlation_id: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return (
        f"AADSTS{code}: {text}\r\nTrace ID: {uuid.uuid4()}\r\n"
        f"Correlation ID: {correlation_id}\r\nTimestamp: {stamp}"
    )


def _error_page(code: int, text: str) -> Response:
    """What Entra shows in the browser when it cannot trust the redirect URI."""
    message = html.escape(f"AADSTS{code}: {text}")
    body = (
        "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>"
        "<h1>Sign in</h1><p>Sorry, but we're having trouble signing you in.</p>"
        f'<p id="error">{message}</p><p>Request Id: {uuid.uuid4()}</p></body></html>'
    )
    return HTMLResponse(body, status_code=400, headers={"Cache-Control": "no-store"})


def _redirect(uri: str, params: dict[str, str]) -> Response:
    sep = "&" if urlsplit(uri).query else "?"
    return RedirectResponse(
        uri + sep + urlencode(params), status_code=302, headers={"Cache-Control": "no-store"}
    )


def _redirect_error(
    uri: str, state: str | None, error: str, code: int, text: str, correlation_id: str
) -> Response:
    params = {"error": error, "error_description": _description(code, text, correlation_id)}
    if state is not None:
        params["state"] = state
    return _redirect(uri, params)


def _signin_page(tenant: Tenant) -> Response:
    body = (
        "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>"
        f"<h1>Sign in</h1><p>{html.escape(tenant.display_name)}: nobody is signed in at "
        "this simulated browser. Choose who signs in with POST /_sim/signin.</p>"
        "</body></html>"
    )
    return HTMLResponse(body, status_code=200, headers={"Cache-Control": "no-store"})


def _app(tenant: Tenant, client_id: str) -> App | None:
    return tenant.apps.get(client_id.lower())


async def authorize(request: Request) -> Response:  # noqa: C901 - 14, older than the limit
    sim: Simulator = request.app.state.sim
    sim.counters["entra.authorize"] += 1
    q = request.query_params
    state = state_of(sim)
    state.log.append(
        {k: v for k, v in q.items() if not k.lower().startswith("x-client")}
        | {"tenant": request.path_params["tenant"], "time": time.time()}
    )
    del state.log[:-_LOG_LIMIT]
    name = request.path_params["tenant"]
    tenant = sim.directory.find(name)
    if tenant is None:
        return _error_page(
            90002,
            f"Tenant '{name}' not found. Check to make sure you have the "
            "correct tenant ID and are signing into the correct cloud.",
        )
    client_id = q.get("client_id")
    if not client_id:
        return _error_page(
            900144, "The request body must contain the following parameter: 'client_id'."
        )
    app = _app(tenant, client_id)
    if app is None:
        return _error_page(
            700016,
            f"Application with identifier '{client_id}' was not found "
            f"in the directory '{tenant.display_name}'. This can happen if the "
            "application has not been installed by the administrator of the "
            "tenant or consented to by any user in the tenant. You may have "
            "sent your authentication request to the wrong tenant.",
        )
    redirect_uri = q.get("redirect_uri", "")
    registered = _tenant_users(sim, tenant).redirect_uris.get(app.client_id, [])
    if redirect_uri not in registered:
        return _error_page(
            50011,
            f"The redirect URI '{redirect_uri}' specified in the request "
            "does not match the redirect URIs configured for the application "
            f"'{app.client_id}'. Make sure the redirect URI sent in the request "
            "matches one added to your application in the Azure portal. "
            "Navigate to https://aka.ms/redirectUriMismatchError to learn more "
            "about how to fix this.",
        )
    correlation = request.headers.get("client-request-id") or str(uuid.uuid4())
    st = q.get("state")

    def fail(error: str, code: int, text: str) -> Response:
        sim.counters["entra.authorize.failed"] += 1
        return _redirect_error(redirect_uri, st, error, code, text, correlation)

    response_type = q.get("response_type")
    if response_type != "code":
        return fail(
            "unsupported_response_type",
            700054,
            f"response_type '{response_type}' is not enabled for the application.",
        )
    if q.get("response_mode", "query") != "query":
        return fail(
            "invalid_request", 900144, "The simulator answers with response_mode 'query' only."
        )
    scopes = tuple(q.get("scope", "").split())
    if not scopes:
        return fail(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        )
    challenge = q.get("code_challenge")
    method = q.get("code_challenge_method", "plain")
    if challenge is not None and method not in ("S256", "plain"):
        return fail(
            "invalid_request", 501491, f"Invalid code_challenge_method parameter: '{method}'."
        )
    hint = (q.get("login_hint") or "").lower()
    users = _tenant_users(sim, tenant).users
    user = users.get(hint) or _browser(sim)
    if user is None:
        return _signin_page(tenant)
    if user.tenant is not tenant:
        return _error_page(
            50020,
            f"User account '{user.user_principal_name}' from identity "
            f"provider 'https://sts.windows.net/{user.tenant.tenant_id}/' does "
            f"not exist in tenant '{tenant.display_name}' and cannot access the "
            f"application '{app.client_id}'({app.display_name}) in that tenant. "
            "The account needs to be added as an external user in the tenant "
            "first. Sign out and sign in again with a different Azure Active "
            "Directory user account.",
        )
    if state.decline:
        return fail("access_denied", 65004, "User declined to consent to access the app.")
    code = "0.Asim" + secrets.token_urlsafe(48)
    now = time.time()
    state.codes = {k: c for k, c in state.codes.items() if c.expires_at > now}
    state.codes[code] = _Code(
        tenant=tenant,
        user=user,
        client_id=app.client_id,
        redirect_uri=redirect_uri,
        scopes=scopes,
        nonce=q.get("nonce"),
        challenge=challenge,
        method=method,
        expires_at=now + CODE_LIFETIME_S,
    )
    sim.counters["entra.authorize.code"] += 1
    params = {"code": code}
    if st is not None:
        params["state"] = st
    params["session_state"] = str(uuid.uuid5(uuid.NAMESPACE_URL, user.object_id))
    return _redirect(redirect_uri, params)


# --- the authorization code grant (called by entra.token) ------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _pkce_ok(code: _Code, verifier: str | None) -> bool:
    if code.challenge is None:
        return True
    if not verifier:
        return False
    expected = (
        _b64url(hashlib.sha256(verifier.encode()).digest()) if code.method == "S256" else verifier
    )
    return hmac.compare_digest(expected.encode(), code.challenge.encode())


def _claim(sim: Simulator, app: App, form: dict[str, str]) -> _Code:
    value = form.get("code")
    if not value:
        raise GrantError(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'code'.",
        )
    code = state_of(sim).codes.get(value)
    if code is None or not _live(sim, code.tenant) or code.client_id != app.client_id:
        raise GrantError(
            "invalid_grant",
            9002313,
            "Invalid request. Request is malformed or "
            "invalid. - [The provided value for the 'code' parameter is not "
            "valid.]",
        )
    if code.redeemed:
        raise GrantError(
            "invalid_grant",
            54005,
            "OAuth2 Authorization code was already "
            "redeemed, please retry with a new valid code or use an existing "
            "refresh token.",
        )
    if code.expires_at <= time.time():
        raise GrantError(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh "
            "token has expired due to inactivity. Send a new interactive "
            "authorization request for this user and resource.",
        )
    code.redeemed = True  # a failed redemption spends the code too, as Entra does
    if form.get("redirect_uri") != code.redirect_uri:
        raise GrantError(
            "invalid_grant",
            500112,
            f"The reply address "
            f"'{form.get('redirect_uri')}' does not match the reply address "
            f"'{code.redirect_uri}' provided when requesting Authorization code.",
        )
    if not _pkce_ok(code, form.get("code_verifier")):
        raise GrantError(
            "invalid_grant",
            501481,
            "The Code_Verifier does not match the "
            "code_challenge supplied in the authorization request.",
        )
    return code


def redeem(sim: Simulator, app: App, form: dict[str, str], base: str) -> dict[str, Any]:
    """The token response for an authorization code; :class:`GrantError` if refused."""
    code = _claim(sim, app, form)
    user, tid = code.user, code.tenant.tenant_id
    now = int(time.time())
    id_claims: dict[str, Any] = {
        "aud": app.client_id,
        "iss": f"{base}/{tid}/v2.0",
        "iat": now,
        "nbf": now,
        "exp": now + ID_TOKEN_LIFETIME_S,
        "name": user.display_name,
        "oid": user.object_id,
        "preferred_username": user.user_principal_name,
        "rh": "0.simulator.",
        "sub": _b64url(hashlib.sha256(f"{app.client_id}:{user.object_id}".encode()).digest()),
        "tid": tid,
        "uti": _b64url(uuid.uuid4().bytes),
        "ver": "2.0",
    }
    if code.nonce is not None:
        id_claims["nonce"] = code.nonce
    if len(user.groups) > GROUPS_LIMIT:
        id_claims["_claim_names"] = {"groups": "src1"}
        id_claims["_claim_sources"] = {
            "src1": {
                "endpoint": f"https://graph.windows.net/{tid}/users/{user.object_id}"
                "/getMemberObjects"
            }
        }
    else:
        id_claims["groups"] = list(user.groups)
    granted = sorted((set(code.scopes) - {"offline_access"}) | {"User.Read"})
    access_claims = {
        "aud": "00000003-0000-0000-c000-000000000000",
        "iss": f"https://sts.windows.net/{tid}/",
        "iat": now,
        "nbf": now,
        "exp": now + 3599,
        "appid": app.client_id,
        "idtyp": "user",
        "name": user.display_name,
        "oid": user.object_id,
        "scp": " ".join(granted),
        "sub": id_claims["sub"],
        "tid": tid,
        "upn": user.user_principal_name,
        "ver": "1.0",
    }
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join(granted),
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": sim.tokens.sign(access_claims),
        "id_token": sim.tokens.sign(id_claims),
    }
    if "offline_access" in code.scopes:
        body["refresh_token"] = "1.Asim" + secrets.token_urlsafe(64)
    if form.get("client_info") == "1":
        body["client_info"] = _b64url(json.dumps({"uid": user.object_id, "utid": tid}).encode())
    sim.counters["entra.token.user"] += 1
    return body


P = "/_sim"
routes = [
    Route("/{tenant}/oauth2/v2.0/authorize", authorize, methods=["GET"]),
    Route(f"{P}/users", control(add_users), methods=["POST"]),
    Route(f"{P}/users", control(list_users), methods=["GET"]),
    Route(f"{P}/signin", control(sign_in_as), methods=["POST"]),
    Route(f"{P}/signins", control(sign_in_log), methods=["GET"]),
    Route(
        f"{P}/tenants/{{tenant_id}}/apps/{{client_id}}/redirect-uris",
        control(add_redirect_uris),
        methods=["POST"],
    ),
]
