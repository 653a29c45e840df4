"""The control API's tenants: add tenants and app registrations, mint tokens, reset, health.

An app's credential is generated when the request asks for one (`credential`: `secret`,
`certificate` or `both`) and handed back once in the answer: a certificate's private key and
thumbprints, or the secret.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from receiver.simulator.clock import parse_datetime
from receiver.simulator.config import AppSeed, TenantSeed
from receiver.simulator.control_http import (
    find_app,
    find_tenant,
    json_response,
    read_body,
)
from receiver.simulator.tls import ClientCertificate, make_client_certificate

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator
    from receiver.simulator.state import Tenant


def _app_seed(
    spec: dict[str, Any], shared_cert: list[ClientCertificate]
) -> tuple[AppSeed, dict[str, Any]]:
    """An AppSeed from a control request, plus generated credentials to hand back."""
    extra: dict[str, Any] = {}
    secret = spec.get("secret")
    cert_pem = spec.get("certificatePem")
    credential = spec.get("credential")
    if credential in ("certificate", "both") and not cert_pem:
        if not shared_cert:
            shared_cert.append(make_client_certificate())
        cert = shared_cert[0]
        cert_pem = cert.certificate_pem
        extra = {
            "privateKeyPem": cert.private_key_pem,
            "certificatePem": cert.certificate_pem,
            "thumbprint": cert.thumbprint_sha1.upper(),
            "thumbprintSha256": cert.thumbprint_sha256,
        }
    if not secret and (credential in ("secret", "both", None) and not cert_pem):
        secret = f"sim~{secrets.token_urlsafe(24)}"
    roles = spec.get("roles")
    seed = AppSeed(
        client_id=spec.get("clientId"),
        display_name=spec.get("displayName", "Graph alert receiver"),
        secret=secret,
        certificate_pem=cert_pem,
        roles=tuple(roles) if roles is not None else None,
        secret_expires_at=(
            parse_datetime(str(spec["secretExpiresAt"])) if spec.get("secretExpiresAt") else None
        ),
    )
    return seed, extra


def _describe_tenant(tenant: Tenant, extras: dict[str, dict[str, Any]]) -> dict[str, Any]:
    described = tenant.describe()
    for app in described["apps"]:
        app.update(extras.get(app["clientId"], {}))
    return described


def _tenant_specs(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tenants a request asks for: `count` alike, a `tenants` list, or the body itself."""
    if "count" not in body:
        specs: list[dict[str, Any]] = body.get("tenants") or [body]
        return specs
    app_spec = {"credential": body.get("credential", "secret"), "roles": body.get("roles")}
    return [
        {
            "displayName": f"{body.get('displayNamePrefix', 'Tenant')} {i + 1}",
            "apps": [dict(app_spec)],
        }
        for i in range(int(body["count"]))
    ]


async def health(request: Request, sim: Simulator) -> Response:
    return json_response({"status": "ok", "tenants": len(sim.directory.tenants)})


async def list_tenants(request: Request, sim: Simulator) -> Response:
    return json_response({"tenants": [t.describe() for t in sim.directory.tenants.values()]})


async def add_tenants(request: Request, sim: Simulator) -> Response:
    shared: list[ClientCertificate] = []
    created: list[dict[str, Any]] = []
    for spec in _tenant_specs(await read_body(request)):
        seeds = [_app_seed(app_spec, shared) for app_spec in spec.get("apps") or [{}]]
        tenant = sim.add_tenant(
            TenantSeed(
                tenant_id=spec.get("tenantId"),
                display_name=spec.get("displayName", "Contoso"),
                domain=spec.get("domain"),
            )
        )
        extras: dict[str, dict[str, Any]] = {}
        for seed, extra in seeds:
            app = sim.directory.add_app(tenant, seed)
            extras[app.client_id] = extra
        created.append(_describe_tenant(tenant, extras))
    return json_response({"tenants": created}, status=201)


async def add_app(request: Request, sim: Simulator) -> Response:
    tenant = find_tenant(sim, request.path_params["tenant_id"])
    seed, extra = _app_seed(await read_body(request), [])
    app = sim.directory.add_app(tenant, seed)
    return json_response({**app.describe(), **extra}, status=201)


async def mint_token(request: Request, sim: Simulator) -> Response:
    body = await read_body(request)
    tenant = find_tenant(sim, body.get("tenantId"))
    app = find_app(tenant, str(body.get("clientId", "")))
    roles = body.get("roles")
    token = sim.tokens.issue(
        tenant_id=tenant.tenant_id,
        app_id=app.client_id,
        app_display_name=app.display_name,
        object_id=app.service_principal_id,
        roles=tuple(roles) if roles is not None else app.roles,
        credential="secret",
        lifetime_s=int(body.get("expiresIn", 3599)),
        audience=str(body.get("audience", "https://graph.microsoft.com")),
    )
    return json_response({"access_token": token, "token_type": "Bearer"}, status=201)


async def reset(request: Request, sim: Simulator) -> Response:
    sim.reset()
    return json_response({"tenants": [t.describe() for t in sim.directory.tenants.values()]})
