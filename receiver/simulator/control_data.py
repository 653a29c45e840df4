"""The control API's tenant data: alerts (legacy and v2), incidents, Secure Scores, the mail
sent through Graph, and whether the legacy alerts API is still served.

Alerts made or changed here notify subscribers as Graph would (the simulator object does
both, for this API and for Graph's PATCH alike).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from receiver.simulator.clock import iso
from receiver.simulator.control_http import (
    ControlError,
    find_tenant,
    json_response,
    read_body,
)

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator
    from receiver.simulator.state import Tenant


def _v2_alert_id(
    sim: Simulator,
    tenant: Tenant,
    body: dict[str, Any],
    incident_id: str | None,
    overrides: dict[str, Any] | None = None,
) -> str:
    """A new alerts_v2 alert with the body's serviceSource and severity; its id."""
    alert = sim.create_v2_alert(
        tenant,
        service_source=body.get("serviceSource"),
        severity=body.get("severity"),
        incident_id=incident_id,
        overrides=overrides,
    )
    return str(alert["id"])


async def create_alerts(request: Request, sim: Simulator) -> Response:
    body = await read_body(request)
    tenant = find_tenant(sim, body.get("tenantId"))
    kind = body.get("kind", "legacy")
    if kind not in ("legacy", "v2", "both"):
        raise ControlError(400, "kind must be legacy, v2 or both")
    legacy: list[str] = []
    v2: list[str] = []
    overrides = body.get("overrides") or {}
    for _ in range(int(body.get("count", 1))):
        if kind in ("legacy", "both"):
            alert = sim.create_legacy_alert(
                tenant,
                provider=body.get("provider"),
                severity=body.get("severity"),
                overrides=overrides,
            )
            legacy.append(alert["id"])
        if kind in ("v2", "both"):
            v2_overrides = body.get("v2Overrides") or overrides
            v2.append(_v2_alert_id(sim, tenant, body, body.get("incidentId"), v2_overrides))
    return json_response({"ids": legacy + v2, "legacy": legacy, "v2": v2}, status=201)


async def list_alerts(request: Request, sim: Simulator) -> Response:
    tenant = find_tenant(sim, request.query_params.get("tenantId"))
    kind = request.query_params.get("kind", "legacy")
    store = tenant.data.alerts_v2 if kind == "v2" else tenant.data.legacy_alerts
    return json_response({"alerts": list(store.values())})


async def update_alert(request: Request, sim: Simulator) -> Response:
    body = await read_body(request)
    tenant = find_tenant(sim, body.get("tenantId"))
    alert_id = request.path_params["id"]
    changes = body.get("changes") or {}
    if not isinstance(changes, dict):
        raise ControlError(400, "changes must be an object")
    if alert_id in tenant.data.legacy_alerts:
        return json_response(sim.update_legacy_alert(tenant, alert_id, changes))
    if alert_id in tenant.data.alerts_v2:
        return json_response(sim.update_v2_alert(tenant, alert_id, changes))
    raise ControlError(404, f"unknown alert {alert_id}")


async def delete_alert(request: Request, sim: Simulator) -> Response:
    """Remove an alert (Graph then answers 404 for it). With ``notify`` (a changeType), a
    notification for it is still posted afterwards: the one that was in flight when it went."""
    body = await read_body(request)
    tenant = find_tenant(sim, body.get("tenantId"))
    alert_id = request.path_params["id"]
    notify = body.get("notify")
    if notify is not None and notify not in ("created", "updated", "deleted"):
        raise ControlError(400, "notify must be created, updated or deleted")
    alert = tenant.data.legacy_alerts.pop(alert_id, None)
    if alert is None and tenant.data.alerts_v2.pop(alert_id, None) is None:
        raise ControlError(404, f"unknown alert {alert_id}")
    queued = sim.notifier.alert_changed(tenant.tenant_id, alert, notify) if alert and notify else 0
    return json_response({"deleted": alert_id, "notified": queued})


async def create_incidents(request: Request, sim: Simulator) -> Response:
    body = await read_body(request)
    tenant = find_tenant(sim, body.get("tenantId"))
    ids: list[str] = []
    alerts: dict[str, list[str]] = {}
    for _ in range(int(body.get("count", 1))):
        incident = sim.create_incident(
            tenant, severity=body.get("severity", "medium"), overrides=body.get("overrides")
        )
        ids.append(incident["id"])
        alerts[incident["id"]] = [
            _v2_alert_id(sim, tenant, body, incident["id"])
            for _ in range(int(body.get("alerts", 1)))
        ]
    return json_response({"ids": ids, "alerts": alerts}, status=201)


async def seed_secure_scores(request: Request, sim: Simulator) -> Response:
    body = await read_body(request)
    tenant = find_tenant(sim, body.get("tenantId"))
    drop_on_day = body.get("dropOnDay")
    scores = sim.score_payloads.secure_scores(
        tenant.tenant_id,
        sim.clock.now(),
        int(body.get("days", 30)),
        drop_on_day=int(drop_on_day) if drop_on_day is not None else None,
        drop_by=float(body.get("dropBy", 15.0)),
    )
    tenant.data.secure_scores = scores
    latest = scores[0]["currentScore"] if scores else None
    return json_response({"count": len(scores), "latest": latest}, status=201)


async def mails(request: Request, sim: Simulator) -> Response:
    wanted = request.query_params.get("tenantId")
    rows = [
        {**m, "tenantId": t.tenant_id}
        for t in sim.directory.tenants.values()
        if wanted in (None, t.tenant_id)
        for m in t.data.mails
    ]
    return json_response({"mails": rows})


async def legacy_alerts(request: Request, sim: Simulator) -> Response:
    """Read or switch the legacy alerts API between live, retired and auto (by the clock)."""
    if request.method == "POST":
        body = await read_body(request)
        sim.set_legacy_alerts(str(body.get("mode")))
    return json_response(
        {
            "mode": sim.legacy_alerts_mode,
            "live": sim.legacy_alerts_live(),
            "retiredAt": iso(sim.config.legacy_alerts_retired_at),
        }
    )
