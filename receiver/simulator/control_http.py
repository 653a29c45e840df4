"""What every control API request shares: the control token, the error answer, the JSON body
and the tenant it names.

`control(handler)` wraps a handler `(request, sim) -> Response`: with a control token
configured each request needs `Authorization: Bearer <token>` (401 otherwise); a
`ControlError` becomes its status with `{"error": message}`, and a KeyError, ValueError or
TypeError from a bad body a 400 with the same shape.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator
    from receiver.simulator.state import App, Tenant


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


Handler = Callable[[Request, "Simulator"], Awaitable[Response]]


def control(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        expected = sim.config.control_token
        if expected:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return json_response({"error": "control token required"}, status=401)
        try:
            return await handler(request, sim)
        except ControlError as exc:
            return json_response({"error": exc.message}, status=exc.status)
        except (KeyError, ValueError, TypeError) as exc:
            return json_response({"error": str(exc).strip("'\"")}, status=400)

    return endpoint


async def read_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (`{}` when there is no body)."""
    raw = await request.body()
    if not raw:
        return {}
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ControlError(400, "the body must be a JSON object")
    return body


def find_tenant(sim: Simulator, tenant_id: Any) -> Tenant:
    if not isinstance(tenant_id, str):
        raise ControlError(400, "tenantId is required")
    tenant = sim.directory.find(tenant_id)
    if tenant is None:
        raise ControlError(404, f"unknown tenant {tenant_id}")
    return tenant


def find_app(tenant: Tenant, client_id: str) -> App:
    app = tenant.apps.get(client_id.lower())
    if app is None:
        raise ControlError(404, f"unknown app {client_id} in tenant {tenant.tenant_id}")
    return app
