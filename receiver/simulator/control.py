"""The control API under `/_sim/`: set up tenants and data, inject faults, read what happened.

Not part of Graph. Every route is documented in docs/SIMULATOR.md. With a control token
configured, each request needs `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.simulator.clock import iso, parse_datetime
from receiver.simulator.config import AppSeed, TenantSeed
from receiver.simulator.tls import ClientCertificate, make_client_certificate

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator
    from receiver.simulator.state import Tenant


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


Handler = Callable[[Request, "Simulator"], Awaitable[Response]]


def control(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        expected = sim.config.control_token
        if expected:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return _json({"error": "control token required"}, status=401)
        try:
            return await handler(request, sim)
        except ControlError as exc:
            return _json({"error": exc.message}, status=exc.status)
        except (KeyError, ValueError, TypeError) as exc:
            return _json({"error": str(exc).strip("'\"")}, status=400)

    return endpoint


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ControlError(400, "the body must be a JSON object")
    return body


def _tenant(sim: Simulator, tenant_id: Any) -> Tenant:
    if not isinstance(tenant_id, str):
        raise ControlError(400, "tenantId is required")
    tenant = sim.directory.find(tenant_id)
    if tenant is None:
        raise ControlError(404, f"unknown tenant {tenant_id}")
    return tenant


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
        import secrets as _secrets

        secret = f"sim~{_secrets.token_urlsafe(24)}"
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


async def health(request: Request, sim: Simulator) -> Response:
    return _json({"status": "ok", "tenants": len(sim.directory.tenants)})


async def list_tenants(request: Request, sim: Simulator) -> Response:
    return _json({"tenants": [t.describe() for t in sim.directory.tenants.values()]})


async def add_tenants(request: Request, sim: Simulator) -> Response:
    body = await _body(request)
    shared: list[ClientCertificate] = []
    specs: list[dict[str, Any]]
    if "count" in body:
        app_spec = {"credential": body.get("credential", "secret"), "roles": body.get("roles")}
        specs = [
            {
                "displayName": f"{body.get('displayNamePrefix', 'Tenant')} {i + 1}",
                "apps": [dict(app_spec)],
            }
            for i in range(int(body["count"]))
        ]
    else:
        specs = body.get("tenants") or [body]
    created: list[dict[str, Any]] = []
    for spec in specs:
        app_specs = spec.get("apps") or [{}]
        seeds: list[tuple[AppSeed, dict[str, Any]]] = []
        extras: dict[str, dict[str, Any]] = {}
        for app_spec in app_specs:
            seed, extra = _app_seed(app_spec, shared)
            seeds.append((seed, extra))
        tenant = sim.add_tenant(
            TenantSeed(
                tenant_id=spec.get("tenantId"),
                display_name=spec.get("displayName", "Contoso"),
                domain=spec.get("domain"),
            )
        )
        for seed, extra in seeds:
            app = sim.directory.add_app(tenant, seed)
            extras[app.client_id] = extra
        created.append(_describe_tenant(tenant, extras))
    return _json({"tenants": created}, status=201)


async def add_app(request: Request, sim: Simulator) -> Response:
    tenant = _tenant(sim, request.path_params["tenant_id"])
    seed, extra = _app_seed(await _body(request), [])
    app = sim.directory.add_app(tenant, seed)
    return _json({**app.describe(), **extra}, status=201)


async def create_alerts(request: Request, sim: Simulator) -> Response:
    body = await _body(request)
    tenant = _tenant(sim, body.get("tenantId"))
    kind = body.get("kind", "legacy")
    if kind not in ("legacy", "v2", "both"):
        raise ControlError(400, "kind must be legacy, v2 or both")
    legacy: list[str] = []
    v2: list[str] = []
    overrides = body.get("overrides") or {}
    for _ in range(int(body.get("count", 1))):
        if kind in ("legacy", "both"):
            legacy.append(
                sim.create_legacy_alert(
                    tenant,
                    provider=body.get("provider"),
                    severity=body.get("severity"),
                    overrides=overrides,
                )["id"]
            )
        if kind in ("v2", "both"):
            v2.append(
                sim.create_v2_alert(
                    tenant,
                    service_source=body.get("serviceSource"),
                    severity=body.get("severity"),
                    incident_id=body.get("incidentId"),
                    overrides=body.get("v2Overrides") or overrides,
                )["id"]
            )
    return _json({"ids": legacy + v2, "legacy": legacy, "v2": v2}, status=201)


async def list_alerts(request: Request, sim: Simulator) -> Response:
    tenant = _tenant(sim, request.query_params.get("tenantId"))
    kind = request.query_params.get("kind", "legacy")
    store = tenant.data.alerts_v2 if kind == "v2" else tenant.data.legacy_alerts
    return _json({"alerts": list(store.values())})


async def update_alert(request: Request, sim: Simulator) -> Response:
    body = await _body(request)
    tenant = _tenant(sim, body.get("tenantId"))
    alert_id = request.path_params["id"]
    changes = body.get("changes") or {}
    if not isinstance(changes, dict):
        raise ControlError(400, "changes must be an object")
    if alert_id in tenant.data.legacy_alerts:
        return _json(sim.update_legacy_alert(tenant, alert_id, changes))
    if alert_id in tenant.data.alerts_v2:
        return _json(sim.update_v2_alert(tenant, alert_id, changes))
    raise ControlError(404, f"unknown alert {alert_id}")


async def delete_alert(request: Request, sim: Simulator) -> Response:
    """Remove an alert (Graph then answers 404 for it). With ``notify`` (a changeType), a
    notification for it is still posted afterwards: the one that was in flight when it went."""
    body = await _body(request)
    tenant = _tenant(sim, body.get("tenantId"))
    alert_id = request.path_params["id"]
    notify = body.get("notify")
    if notify is not None and notify not in ("created", "updated", "deleted"):
        raise ControlError(400, "notify must be created, updated or deleted")
    alert = tenant.data.legacy_alerts.pop(alert_id, None)
    if alert is None and tenant.data.alerts_v2.pop(alert_id, None) is None:
        raise ControlError(404, f"unknown alert {alert_id}")
    queued = sim.notifier.alert_changed(tenant.tenant_id, alert, notify) if alert and notify else 0
    return _json({"deleted": alert_id, "notified": queued})


async def create_incidents(request: Request, sim: Simulator) -> Response:
    body = await _body(request)
    tenant = _tenant(sim, body.get("tenantId"))
    ids: list[str] = []
    alerts: dict[str, list[str]] = {}
    for _ in range(int(body.get("count", 1))):
        incident = sim.create_incident(
            tenant, severity=body.get("severity", "medium"), overrides=body.get("overrides")
        )
        ids.append(incident["id"])
        alerts[incident["id"]] = [
            sim.create_v2_alert(
                tenant,
                service_source=body.get("serviceSource"),
                severity=body.get("severity"),
                incident_id=incident["id"],
            )["id"]
            for _ in range(int(body.get("alerts", 1)))
        ]
    return _json({"ids": ids, "alerts": alerts}, status=201)


async def seed_secure_scores(request: Request, sim: Simulator) -> Response:
    body = await _body(request)
    tenant = _tenant(sim, body.get("tenantId"))
    drop_on_day = body.get("dropOnDay")
    scores = sim.payloads.secure_scores(
        tenant.tenant_id,
        sim.clock.now(),
        int(body.get("days", 30)),
        drop_on_day=int(drop_on_day) if drop_on_day is not None else None,
        drop_by=float(body.get("dropBy", 15.0)),
    )
    tenant.data.secure_scores = scores
    return _json(
        {"count": len(scores), "latest": scores[0]["currentScore"] if scores else None}, status=201
    )


async def get_faults(request: Request, sim: Simulator) -> Response:
    return _json(sim.faults.describe())


async def inject_fault(request: Request, sim: Simulator) -> Response:
    body = await _body(request)
    sim.faults.inject(str(body.get("kind")), body)
    return _json(sim.faults.describe(), status=201)


async def clear_faults(request: Request, sim: Simulator) -> Response:
    from receiver.simulator.faults import Faults

    sim.faults = Faults()
    return Response(status_code=204)


def _find_subscription(sim: Simulator, subscription_id: str) -> tuple[Tenant, Any]:
    for tenant in sim.directory.tenants.values():
        subscription = tenant.data.subscriptions.get(subscription_id)
        if subscription is not None:
            return tenant, subscription
    raise ControlError(404, f"unknown subscription {subscription_id}")


async def lifecycle(request: Request, sim: Simulator) -> Response:
    body = await _body(request)
    sim.expire_subscriptions()
    tenant, subscription = _find_subscription(sim, str(body.get("subscriptionId")))
    event = str(body.get("event") or body.get("lifecycleEvent"))
    sim.notifier.lifecycle(subscription, event)
    if event == "subscriptionRemoved":
        del tenant.data.subscriptions[subscription.id]
    return _json({"queued": True, "subscriptionId": subscription.id, "event": event}, status=202)


async def list_subscriptions(request: Request, sim: Simulator) -> Response:
    sim.expire_subscriptions()
    wanted = request.query_params.get("tenantId")
    result = [
        {**s.to_json(include_client_state=True), "tenantId": t.tenant_id}
        for t in sim.directory.tenants.values()
        if wanted in (None, t.tenant_id)
        for s in t.data.subscriptions.values()
    ]
    return _json({"subscriptions": result})


async def get_clock(request: Request, sim: Simulator) -> Response:
    return _json({"now": iso(sim.clock.now()), "offsetSeconds": sim.clock.offset.total_seconds()})


async def advance_clock(request: Request, sim: Simulator) -> Response:
    body = await _body(request)
    delta = dt.timedelta(
        seconds=float(body.get("seconds", 0)),
        minutes=float(body.get("minutes", 0)),
        hours=float(body.get("hours", 0)),
        days=float(body.get("days", 0)),
    )
    before = sum(len(t.data.subscriptions) for t in sim.directory.tenants.values())
    now = sim.advance_clock(delta)
    after = sum(len(t.data.subscriptions) for t in sim.directory.tenants.values())
    return _json(
        {
            "now": iso(now),
            "offsetSeconds": sim.clock.offset.total_seconds(),
            "expiredSubscriptions": before - after,
        }
    )


async def deliveries(request: Request, sim: Simulator) -> Response:
    kind = request.query_params.get("kind")
    url = request.query_params.get("url")
    after = int(request.query_params.get("after", "0"))
    rows = [
        d
        for d in sim.notifier.deliveries
        if (kind is None or d["kind"] == kind)
        and (url is None or d["url"].startswith(url))
        and d["sequence"] > after
    ]
    return _json({"deliveries": rows, "idle": sim.notifier.idle()})


async def clear_deliveries(request: Request, sim: Simulator) -> Response:
    sim.notifier.clear()
    return Response(status_code=204)


async def mails(request: Request, sim: Simulator) -> Response:
    wanted = request.query_params.get("tenantId")
    rows = [
        {**m, "tenantId": t.tenant_id}
        for t in sim.directory.tenants.values()
        if wanted in (None, t.tenant_id)
        for m in t.data.mails
    ]
    return _json({"mails": rows})


async def counters(request: Request, sim: Simulator) -> Response:
    """Named counts, and under "endpoints" each notification URL's throttling state
    (`normal`, `delayed`, `dropped`) with the answers counted in its current window."""
    body: dict[str, Any] = dict(sorted(sim.counters.items()))
    body["endpoints"] = sim.notifier.endpoints.describe()
    return _json(body)


async def reset_counters(request: Request, sim: Simulator) -> Response:
    sim.counters.clear()
    return Response(status_code=204)


async def reset(request: Request, sim: Simulator) -> Response:
    sim.reset()
    return _json({"tenants": [t.describe() for t in sim.directory.tenants.values()]})


async def mint_token(request: Request, sim: Simulator) -> Response:
    body = await _body(request)
    tenant = _tenant(sim, body.get("tenantId"))
    client_id = str(body.get("clientId", ""))
    app = tenant.apps.get(client_id.lower())
    if app is None:
        raise ControlError(404, f"unknown app {client_id} in tenant {tenant.tenant_id}")
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
    return _json({"access_token": token, "token_type": "Bearer"}, status=201)


async def legacy_alerts(request: Request, sim: Simulator) -> Response:
    """Read or switch the legacy alerts API between live, retired and auto (by the clock)."""
    if request.method == "POST":
        body = await _body(request)
        sim.set_legacy_alerts(str(body.get("mode")))
    return _json(
        {
            "mode": sim.legacy_alerts_mode,
            "live": sim.legacy_alerts_live(),
            "retiredAt": iso(sim.config.legacy_alerts_retired_at),
        }
    )


async def throttle(request: Request, sim: Simulator) -> Response:
    if request.method == "POST":
        body = await _body(request)
        if "enabled" in body:
            sim.throttle.enabled = bool(body["enabled"])
        if body.get("reset"):
            sim.throttle.reset()
    rules = {
        name: {"limit": r.limit, "windowSeconds": r.window_s}
        for name, r in sim.throttle.rules.items()
    }
    return _json({"enabled": sim.throttle.enabled, "rules": rules})


P = "/_sim"
routes = [
    Route(f"{P}/health", control(health), methods=["GET"]),
    Route(f"{P}/tenants", control(list_tenants), methods=["GET"]),
    Route(f"{P}/tenants", control(add_tenants), methods=["POST"]),
    Route(f"{P}/tenants/{{tenant_id}}/apps", control(add_app), methods=["POST"]),
    Route(f"{P}/alerts", control(create_alerts), methods=["POST"]),
    Route(f"{P}/alerts", control(list_alerts), methods=["GET"]),
    Route(f"{P}/alerts/{{id}}", control(update_alert), methods=["PATCH"]),
    Route(f"{P}/alerts/{{id}}", control(delete_alert), methods=["DELETE"]),
    Route(f"{P}/incidents", control(create_incidents), methods=["POST"]),
    Route(f"{P}/secure-scores", control(seed_secure_scores), methods=["POST"]),
    Route(f"{P}/faults", control(get_faults), methods=["GET"]),
    Route(f"{P}/faults", control(inject_fault), methods=["POST"]),
    Route(f"{P}/faults", control(clear_faults), methods=["DELETE"]),
    Route(f"{P}/lifecycle", control(lifecycle), methods=["POST"]),
    Route(f"{P}/subscriptions", control(list_subscriptions), methods=["GET"]),
    Route(f"{P}/clock", control(get_clock), methods=["GET"]),
    Route(f"{P}/clock/advance", control(advance_clock), methods=["POST"]),
    Route(f"{P}/deliveries", control(deliveries), methods=["GET"]),
    Route(f"{P}/deliveries", control(clear_deliveries), methods=["DELETE"]),
    Route(f"{P}/mails", control(mails), methods=["GET"]),
    Route(f"{P}/counters", control(counters), methods=["GET"]),
    Route(f"{P}/counters", control(reset_counters), methods=["DELETE"]),
    Route(f"{P}/reset", control(reset), methods=["POST"]),
    Route(f"{P}/tokens", control(mint_token), methods=["POST"]),
    Route(f"{P}/throttle", control(throttle), methods=["GET", "POST"]),
    Route(f"{P}/legacy-alerts", control(legacy_alerts), methods=["GET", "POST"]),
]
