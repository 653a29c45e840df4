"""Entra ID's token endpoint: client-credentials tokens for Graph, and the authorization code
grant of user sign-in (signin_grant.py).

Just enough for MSAL's ConfidentialClientApplication to run unchanged: it POSTs the token
request with a client secret or a certificate-signed client assertion (entra_credentials.py).
Errors come back in Entra's JSON shape with its AADSTS codes and texts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from receiver.simulator import signin_grant
from receiver.simulator.entra_credentials import authenticate, client_auth
from receiver.simulator.entra_http import (
    EntraError,
    base_url,
    entra_json,
    error_response,
    missing_parameter,
    unknown_app,
    unknown_tenant,
)
from receiver.simulator.tokens import GRAPH_AUDIENCE

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator
    from receiver.simulator.state import App, Tenant

GRAPH_SCOPES = frozenset(
    {f"{GRAPH_AUDIENCE}/.default", "00000003-0000-0000-c000-000000000000/.default"}
)
IGNORED_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
GRANT_TYPES = ("client_credentials", "authorization_code")


def _check_scope(scope: str | None, tenant: Tenant) -> None:
    if not scope:
        raise EntraError(400, "invalid_request", 900144, missing_parameter("scope"))
    scopes = set(scope.split()) - IGNORED_SCOPES
    if not scopes & GRAPH_SCOPES or len(scopes) != 1:
        if not any(s.endswith("/.default") for s in scopes):
            raise EntraError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential "
                "flows must have a scope value with /.default suffixed to the resource "
                "identifier (application ID URI).",
            )
        resource = next(iter(s for s in scopes if s not in GRAPH_SCOPES)).rsplit("/", 1)[0]
        raise EntraError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant "
            f"named {tenant.display_name}. This can happen if the application has "
            "not been installed by the administrator of the tenant or consented to "
            "by any user in the tenant. You might have sent your authentication "
            "request to the wrong tenant.",
        )


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded token request (parsed here: python-multipart is not a dependency)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


async def token(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    try:
        return _issue(request, sim, await _form(request))
    except EntraError as exc:
        sim.counters["entra.token.failed"] += 1
        return error_response(request, exc)


def _client(request: Request, sim: Simulator, form: dict[str, str]) -> tuple[Tenant, App, str, str]:
    """The tenant, the app, the grant type and the credential of a token request."""
    if sim.faults.take("token_failures"):
        sim.counters["fault.token_failure"] += 1
        raise EntraError(
            sim.faults.token_failure_status,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        )
    name = request.path_params["tenant"]
    tenant = sim.directory.find(name)
    if tenant is None:
        raise unknown_tenant(name)
    grant_type = form.get("grant_type")
    if grant_type is None or grant_type not in GRANT_TYPES:
        raise EntraError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
        )
    client_id, secret = client_auth(request, form)
    if not client_id:
        raise EntraError(400, "invalid_request", 900144, missing_parameter("client_id"))
    app = tenant.apps.get(client_id.lower())
    if app is None:
        raise EntraError(
            400, "unauthorized_client", 700016, unknown_app(client_id, tenant.display_name)
        )
    base = base_url(request)
    endpoints = {f"{base}/{n}/oauth2/v2.0/token" for n in (name, tenant.tenant_id, tenant.domain)}
    credential = authenticate(app, form, secret, endpoints, sim.clock.now())
    return tenant, app, grant_type, credential


def _issue(request: Request, sim: Simulator, form: dict[str, str]) -> Response:
    tenant, app, grant_type, credential = _client(request, sim, form)
    if grant_type == "authorization_code":
        return entra_json(signin_grant.redeem(sim, app, form, base_url(request)))
    _check_scope(form.get("scope"), tenant)
    access_token = sim.tokens.issue(
        tenant_id=tenant.tenant_id,
        app_id=app.client_id,
        app_display_name=app.display_name,
        object_id=app.service_principal_id,
        roles=app.roles,
        credential=credential,
    )
    sim.counters["entra.token.issued"] += 1
    return entra_json(
        {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": access_token,
        }
    )
