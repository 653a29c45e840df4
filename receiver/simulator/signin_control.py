"""The control API of user sign-in: users and their groups, who sits at the browser, an app's
redirect URIs, and the log of authorize requests."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from receiver.simulator.control_http import (
    ControlError,
    find_app,
    find_tenant,
    json_response,
    read_body,
)
from receiver.simulator.signin import User, state_of, tenant_users

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator


async def add_users(request: Request, sim: Simulator) -> Response:
    body = await read_body(request)
    tenant = find_tenant(sim, body.get("tenantId"))
    specs = body.get("users", [body])
    if not isinstance(specs, list):
        raise ControlError(400, "users must be a list")
    entry = tenant_users(sim, tenant)
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
    return json_response({"users": added}, 201)


async def list_users(request: Request, sim: Simulator) -> Response:
    tenant = find_tenant(sim, request.query_params.get("tenantId"))
    users = tenant_users(sim, tenant).users.values()
    return json_response({"users": [u.describe() for u in users]})


async def sign_in_as(request: Request, sim: Simulator) -> Response:
    """Who sits at the browser: ``{userPrincipalName, tenantId?, decline?}``; null signs out."""
    body = await read_body(request)
    state = state_of(sim)
    upn = body.get("userPrincipalName")
    if upn is None:
        state.browser, state.decline = None, False
        return json_response({"signedIn": None})
    candidates = (
        [find_tenant(sim, body["tenantId"])]
        if body.get("tenantId")
        else list(sim.directory.tenants.values())
    )
    for tenant in candidates:
        user = tenant_users(sim, tenant).users.get(str(upn).lower())
        if user is not None:
            state.browser, state.decline = user, bool(body.get("decline", False))
            return json_response({"signedIn": user.describe(), "decline": state.decline})
    raise ControlError(404, f"unknown user {upn}")


async def add_redirect_uris(request: Request, sim: Simulator) -> Response:
    tenant = find_tenant(sim, request.path_params["tenant_id"])
    app = find_app(tenant, request.path_params["client_id"].lower())
    uris = (await read_body(request)).get("redirectUris")
    if not isinstance(uris, list) or not all(isinstance(u, str) and u for u in uris):
        raise ControlError(400, "redirectUris must be a list of URLs")
    registered = tenant_users(sim, tenant).redirect_uris.setdefault(app.client_id, [])
    registered.extend(u for u in uris if u not in registered)
    return json_response({"redirectUris": registered})


async def sign_in_log(request: Request, sim: Simulator) -> Response:
    return json_response({"authorize": state_of(sim).log})
