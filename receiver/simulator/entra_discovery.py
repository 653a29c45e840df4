"""Entra ID discovery: the OpenID configuration of a tenant (or `common`/`organizations`) and
the signing keys (JWKS) its tokens are checked with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from receiver.simulator.entra_http import base_url, entra_json, error_response, unknown_tenant

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator

MULTI_TENANT = ("common", "organizations")


def openid_configuration(base: str, tenant_id: str) -> dict[str, Any]:
    root = f"{base}/{tenant_id}"
    return {
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{root}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{root}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
        "claims_supported": [
            "sub",
            "iss",
            "cloud_instance_name",
            "cloud_instance_host_name",
            "cloud_graph_host_name",
            "msgraph_host",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "acr",
            "nonce",
            "preferred_username",
            "name",
            "tid",
            "ver",
            "at_hash",
            "c_hash",
            "email",
        ],
        "kerberos_endpoint": f"{root}/kerberos",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }


async def discovery(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    name = request.path_params["tenant"]
    sim.counters["entra.discovery"] += 1
    if name.lower() in MULTI_TENANT:
        return entra_json(openid_configuration(base_url(request), "{tenantid}"))
    tenant = sim.directory.find(name)
    if tenant is None:
        return error_response(request, unknown_tenant(name))
    return entra_json(openid_configuration(base_url(request), tenant.tenant_id))


async def keys(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    name = request.path_params.get("tenant", "common")
    if name.lower() not in MULTI_TENANT and sim.directory.find(name) is None:
        return error_response(request, unknown_tenant(name))
    return entra_json(sim.tokens.jwks())
