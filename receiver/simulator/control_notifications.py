"""The control API's view of change notifications: every tenant's subscriptions, the
deliveries the notifier made (POSTs and validation handshakes), and lifecycle events sent on
request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from receiver.simulator.control_http import (
    ControlError,
    json_response,
    read_body,
)

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator
    from receiver.simulator.state import Subscription, Tenant


def _find_subscription(sim: Simulator, subscription_id: str) -> tuple[Tenant, Subscription]:
    for tenant in sim.directory.tenants.values():
        subscription = tenant.data.subscriptions.get(subscription_id)
        if subscription is not None:
            return tenant, subscription
    raise ControlError(404, f"unknown subscription {subscription_id}")


async def lifecycle(request: Request, sim: Simulator) -> Response:
    body = await read_body(request)
    sim.expire_subscriptions()
    tenant, subscription = _find_subscription(sim, str(body.get("subscriptionId")))
    event = str(body.get("event") or body.get("lifecycleEvent"))
    sim.notifier.lifecycle(subscription, event)
    if event == "subscriptionRemoved":
        del tenant.data.subscriptions[subscription.id]
    answer = {"queued": True, "subscriptionId": subscription.id, "event": event}
    return json_response(answer, status=202)


async def list_subscriptions(request: Request, sim: Simulator) -> Response:
    sim.expire_subscriptions()
    wanted = request.query_params.get("tenantId")
    result = [
        {**s.to_json(include_client_state=True), "tenantId": t.tenant_id}
        for t in sim.directory.tenants.values()
        if wanted in (None, t.tenant_id)
        for s in t.data.subscriptions.values()
    ]
    return json_response({"subscriptions": result})


async def deliveries(request: Request, sim: Simulator) -> Response:
    kind = request.query_params.get("kind")
    url = request.query_params.get("url")
    after = int(request.query_params.get("after", "0"))
    rows: list[dict[str, Any]] = [
        d
        for d in sim.notifier.deliveries
        if (kind is None or d["kind"] == kind)
        and (url is None or d["url"].startswith(url))
        and d["sequence"] > after
    ]
    return json_response({"deliveries": rows, "idle": sim.notifier.idle()})


async def clear_deliveries(request: Request, sim: Simulator) -> Response:
    sim.notifier.clear()
    return Response(status_code=204)
