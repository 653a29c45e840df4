"""Entra ID's authorize endpoint, ``GET /{tenant}/oauth2/v2.0/authorize``: signs in the user
at the simulated browser (or the one `login_hint` names) and redirects with a code; signin.py
tells the rules. Errors Entra shows on its own page are an HTML page here; the others go back
to the redirect URI."""

from __future__ import annotations

import html
import secrets
import time
import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from receiver.simulator.entra_http import (
    correlation_id,
    describe,
    missing_parameter,
    timestamp,
    unknown_app,
)
from receiver.simulator.signin import (
    CODE_LIFETIME_S,
    Code,
    User,
    browser,
    state_of,
    tenant_users,
)

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator
    from receiver.simulator.state import App, Tenant

LOG_LIMIT = 1000
NO_STORE = {"Cache-Control": "no-store"}
Refusal = tuple[str, int, str]  # error, AADSTS code, text: sent back to the redirect URI
DECLINED: Refusal = ("access_denied", 65004, "User declined to consent to access the app.")


def _error_page(code: int, text: str) -> Response:
    """What Entra shows in the browser when it cannot trust the redirect URI."""
    message = html.escape(f"AADSTS{code}: {text}")
    body = (
        "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>"
        "<h1>Sign in</h1><p>Sorry, but we're having trouble signing you in.</p>"
        f'<p id="error">{message}</p><p>Request Id: {uuid.uuid4()}</p></body></html>'
    )
    return HTMLResponse(body, status_code=400, headers=NO_STORE)


def _signin_page(tenant: Tenant) -> Response:
    body = (
        "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>"
        f"<h1>Sign in</h1><p>{html.escape(tenant.display_name)}: nobody is signed in at "
        "this simulated browser. Choose who signs in with POST /_sim/signin.</p>"
        "</body></html>"
    )
    return HTMLResponse(body, status_code=200, headers=NO_STORE)


def _redirect(uri: str, params: dict[str, str]) -> Response:
    sep = "&" if urlsplit(uri).query else "?"
    return RedirectResponse(uri + sep + urlencode(params), status_code=302, headers=NO_STORE)


def _with_state(params: dict[str, str], state: str | None) -> dict[str, str]:
    return params if state is None else {**params, "state": state}


def _log(sim: Simulator, request: Request) -> None:
    log = state_of(sim).log
    log.append(
        {k: v for k, v in request.query_params.items() if not k.lower().startswith("x-client")}
        | {"tenant": request.path_params["tenant"], "time": time.time()}
    )
    del log[:-LOG_LIMIT]


def _trusted(sim: Simulator, name: str, q: QueryParams) -> tuple[Tenant, App, str] | Response:
    """The tenant, app and redirect URI of a request, or the page Entra shows instead."""
    tenant = sim.directory.find(name)
    if tenant is None:
        return _error_page(
            90002,
            f"Tenant '{name}' not found. Check to make sure you have the "
            "correct tenant ID and are signing into the correct cloud.",
        )
    client_id = q.get("client_id")
    if not client_id:
        return _error_page(900144, missing_parameter("client_id"))
    app = tenant.apps.get(client_id.lower())
    if app is None:
        return _error_page(700016, unknown_app(client_id, tenant.display_name))
    redirect_uri = q.get("redirect_uri", "")
    if redirect_uri not in tenant_users(sim, tenant).redirect_uris.get(app.client_id, []):
        return _error_page(
            50011,
            f"The redirect URI '{redirect_uri}' specified in the request "
            "does not match the redirect URIs configured for the application "
            f"'{app.client_id}'. Make sure the redirect URI sent in the request "
            "matches one added to your application in the Azure portal. "
            "Navigate to https://aka.ms/redirectUriMismatchError to learn more "
            "about how to fix this.",
        )
    return tenant, app, redirect_uri


def _refusal(q: QueryParams) -> Refusal | None:
    """What is wrong with the request's own parameters, if anything."""
    response_type = q.get("response_type")
    if response_type != "code":
        return (
            "unsupported_response_type",
            700054,
            f"response_type '{response_type}' is not enabled for the application.",
        )
    if q.get("response_mode", "query") != "query":
        return ("invalid_request", 900144, "The simulator answers with response_mode 'query' only.")
    if not q.get("scope", "").split():
        return ("invalid_request", 900144, missing_parameter("scope"))
    method = q.get("code_challenge_method", "plain")
    if q.get("code_challenge") is not None and method not in ("S256", "plain"):
        return ("invalid_request", 501491, f"Invalid code_challenge_method parameter: '{method}'.")
    return None


def _signed_in(sim: Simulator, tenant: Tenant, app: App, q: QueryParams) -> User | Response:
    """Who signs in (the hinted user, or who sits at the browser), or the page shown instead."""
    user = tenant_users(sim, tenant).users.get((q.get("login_hint") or "").lower())
    user = user or browser(sim)
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
    return user


def _new_code(
    sim: Simulator, tenant: Tenant, app: App, user: User, q: QueryParams, redirect_uri: str
) -> str:
    code = "0.Asim" + secrets.token_urlsafe(48)
    now = time.time()
    state = state_of(sim)
    state.codes = {k: c for k, c in state.codes.items() if c.expires_at > now}
    state.codes[code] = Code(
        tenant=tenant,
        user=user,
        client_id=app.client_id,
        redirect_uri=redirect_uri,
        scopes=tuple(q.get("scope", "").split()),
        nonce=q.get("nonce"),
        challenge=q.get("code_challenge"),
        method=q.get("code_challenge_method", "plain"),
        expires_at=now + CODE_LIFETIME_S,
    )
    sim.counters["entra.authorize.code"] += 1
    return code


async def authorize(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    sim.counters["entra.authorize"] += 1
    q = request.query_params
    _log(sim, request)
    trusted = _trusted(sim, request.path_params["tenant"], q)
    if isinstance(trusted, Response):
        return trusted
    tenant, app, redirect_uri = trusted
    correlation = correlation_id(request)
    st = q.get("state")

    def fail(refusal: Refusal) -> Response:
        sim.counters["entra.authorize.failed"] += 1
        error, code, text = refusal
        description = describe(
            code, text, trace_id=str(uuid.uuid4()), correlation=correlation, stamp=timestamp()
        )
        return _redirect(
            redirect_uri, _with_state({"error": error, "error_description": description}, st)
        )

    refusal = _refusal(q)
    if refusal is not None:
        return fail(refusal)
    user = _signed_in(sim, tenant, app, q)
    if isinstance(user, Response):
        return user
    if state_of(sim).decline:
        return fail(DECLINED)
    code = _new_code(sim, tenant, app, user, q, redirect_uri)
    params = _with_state({"code": code}, st)
    params["session_state"] = str(uuid.uuid5(uuid.NAMESPACE_URL, user.object_id))
    return _redirect(redirect_uri, params)
