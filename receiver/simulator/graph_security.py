"""`/security`: legacy alerts, alerts_v2, incidents (list, get, update).

Only legacy alert changes produce change notifications (Graph documents none for
alerts_v2 or incidents; clients poll them with `$filter=lastUpdateDateTime gt ...`).

The legacy API is retired (2026-10-15, concepts/alertsv1-alertsv2-migration.md): unless the
simulator runs it `live` (or `auto` before that date on its virtual clock), lists answer an
empty collection, one alert answers 404 `itemNotFound`, and its subscriptions never notify,
so a client still built on it fails as silently as it would against Graph.

alerts_v2 and incidents serve evolvable enums as Graph does: a member listed after
`unknownFutureValue` (serviceSource `microsoftSentinel`, incident status `awaitingAction`, ...)
comes back as `unknownFutureValue` unless the request says
`Prefer: include-unknown-enum-members`, which is then echoed in `Preference-Applied`.
Stored data keeps the real member, so `$filter` and PATCH see it either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.simulator import odata
from receiver.simulator.clock import iso
from receiver.simulator.core import LEGACY_ALERT_ENUMS
from receiver.simulator.graph_http import (
    GraphContext,
    GraphError,
    graph_endpoint,
    graph_json,
    json_body,
    metadata_context,
    page,
    preferences,
    stored,
)
from receiver.simulator.payloads import (
    INCIDENT_EVOLVABLE,
    INCIDENT_STATUSES,
    LEGACY_FEEDBACK,
    LEGACY_STATUSES,
    V2_CLASSIFICATIONS,
    V2_DETERMINATIONS,
    V2_EVOLVABLE,
    V2_SEVERITIES,
    V2_STATUSES,
)

EVENTS_READ = ("SecurityEvents.Read.All", "SecurityEvents.ReadWrite.All")
EVENTS_WRITE = ("SecurityEvents.ReadWrite.All",)
ALERT_READ = ("SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All")
ALERT_WRITE = ("SecurityAlert.ReadWrite.All",)
INCIDENT_READ = ("SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All")
INCIDENT_WRITE = ("SecurityIncident.ReadWrite.All",)

LEGACY_UPDATABLE = frozenset(
    {"assignedTo", "closedDateTime", "comments", "feedback", "status", "tags"}
)
V2_UPDATABLE = frozenset(
    {"status", "classification", "determination", "assignedTo", "customDetails"}
)
INCIDENT_UPDATABLE = frozenset(
    {
        "status",
        "assignedTo",
        "classification",
        "determination",
        "customTags",
        "description",
        "resolvingComment",
        "summary",
    }
)
V2_ENUMS: dict[str, frozenset[str]] = {
    "status": frozenset(V2_STATUSES),
    "severity": frozenset(V2_SEVERITIES),
    "classification": frozenset(V2_CLASSIFICATIONS),
    "determination": frozenset(V2_DETERMINATIONS),
}
INCIDENT_ENUMS: dict[str, frozenset[str]] = {
    "status": frozenset(INCIDENT_STATUSES),
    "severity": frozenset(V2_SEVERITIES),
    "classification": frozenset(V2_CLASSIFICATIONS),
    "determination": frozenset(V2_DETERMINATIONS),
}
# A PATCH's enum properties, checked in this order; tuples, as a PATCH value may be unhashable.
LEGACY_PATCH_ENUMS: dict[str, Sequence[str]] = {
    "status": LEGACY_STATUSES,
    "feedback": LEGACY_FEEDBACK,
}
V2_PATCH_ENUMS: dict[str, Sequence[str]] = {
    "status": V2_STATUSES,
    "classification": V2_CLASSIFICATIONS,
    "determination": V2_DETERMINATIONS,
}
INCIDENT_PATCH_ENUMS: dict[str, Sequence[str]] = {
    "status": INCIDENT_STATUSES,
    "classification": V2_CLASSIFICATIONS,
    "determination": V2_DETERMINATIONS,
}
VENDOR = frozenset({"vendorInformation"})  # required in a legacy PATCH, not a change
PREFER_REPRESENTATION = "return=representation"
INCLUDE_UNKNOWN = "include-unknown-enum-members"


class Served:
    """How this request gets evolvable enums: real members only when it asked for them."""

    def __init__(self, request: Request) -> None:
        self.include_unknown = INCLUDE_UNKNOWN in preferences(request)

    def _map(self, item: dict[str, Any], evolvable: Mapping[str, frozenset[str]]) -> dict[str, Any]:
        if self.include_unknown:
            return item
        hidden = {
            name: "unknownFutureValue"
            for name, members in evolvable.items()
            if item.get(name) in members
        }
        return {**item, **hidden} if hidden else item

    def alert(self, alert: dict[str, Any]) -> dict[str, Any]:
        return self._map(alert, V2_EVOLVABLE)

    def incident(self, incident: dict[str, Any]) -> dict[str, Any]:
        served = self._map(incident, INCIDENT_EVOLVABLE)
        if isinstance(served.get("alerts"), list):
            served = {**served, "alerts": [self.alert(a) for a in served["alerts"]]}
        return served

    def respond(self, body: Any) -> Response:
        headers = {"Preference-Applied": INCLUDE_UNKNOWN} if self.include_unknown else None
        return graph_json(body, headers=headers)


def select(
    request: Request,
    items: Sequence[dict[str, Any]],
    enums: Mapping[str, frozenset[str]],
    default_order: str,
) -> list[dict[str, Any]]:
    """Apply `$filter` and `$orderby` (or the default order) to JSON objects."""
    chosen: Sequence[Mapping[str, Any]] = items
    try:
        text = request.query_params.get("$filter")
        if text is not None:
            expr = odata.resolve_enums(odata.parse_filter(text), enums)
            chosen = [item for item in items if odata.evaluate(expr, item)]
        ordered = odata.order(chosen, request.query_params.get("$orderby") or default_order)
    except odata.FilterError as exc:
        raise GraphError(400, "BadRequest", "Invalid filter clause") from exc
    return [dict(item) for item in ordered]


def _retired(ctx: GraphContext) -> bool:
    """Whether the legacy alerts API is retired now (each request that meets it counted)."""
    if ctx.sim.legacy_alerts_live():
        return False
    ctx.sim.counters["graph.security.legacy_retired"] += 1
    return True


def _legacy_alert(ctx: GraphContext, alert_id: str) -> dict[str, Any]:
    """The stored legacy alert, or Graph's 404; every one is gone once the API is retired."""
    if _retired(ctx):
        raise GraphError(404, "itemNotFound", f"Alert with id '{alert_id}' was not found.")
    return stored(ctx.tenant.data.legacy_alerts, "Alert", alert_id)


def _check_fields(
    body: Mapping[str, Any], allowed: frozenset[str], extra: frozenset[str] = frozenset()
) -> None:
    for name in body:
        if name.startswith("@odata."):
            continue
        if name not in allowed | extra:
            raise GraphError(
                400,
                "BadRequest",
                f"Property '{name}' is read-only and cannot be updated. Updatable "
                f"properties: {', '.join(sorted(allowed))}.",
            )


def _check_enum(body: Mapping[str, Any], name: str, members: Sequence[str]) -> None:
    if name in body and body[name] is not None and body[name] not in members:
        raise GraphError(400, "BadRequest", f"Invalid value '{body[name]}' for property '{name}'.")


def _changes(
    body: Mapping[str, Any],
    updatable: frozenset[str],
    enums: Mapping[str, Sequence[str]],
    extra: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """A PATCH body's changes: only updatable properties (or `extra`, which are not changes),
    each enum property one of its members, checked in the order given."""
    _check_fields(body, updatable, extra)
    for name, members in enums.items():
        _check_enum(body, name, members)
    return {k: v for k, v in body.items() if k in updatable}


# Legacy alerts (microsoft.graph.alert)


async def list_legacy(request: Request, ctx: GraphContext) -> Response:
    kept = list(ctx.tenant.data.legacy_alerts.values())
    if _retired(ctx):
        kept = []  # "stops returning data": a valid, empty collection
    alerts = select(request, kept, LEGACY_ALERT_ENUMS, "createdDateTime desc")
    return graph_json(
        page(
            request,
            alerts,
            page_size=ctx.sim.config.alert_page_size,
            max_top=1000,
            context="Security/alerts",
        )
    )


async def get_legacy(request: Request, ctx: GraphContext) -> Response:
    return graph_json(_legacy_alert(ctx, request.path_params["id"]))


async def update_legacy(request: Request, ctx: GraphContext) -> Response:
    alert_id = request.path_params["id"]
    alert = _legacy_alert(ctx, alert_id)
    body = await json_body(request)
    vendor = body.get("vendorInformation")
    expected = alert["vendorInformation"]
    if (
        not isinstance(vendor, dict)
        or vendor.get("provider") != expected.get("provider")
        or (vendor.get("vendor") != expected.get("vendor"))
    ):
        raise GraphError(
            400,
            "BadRequest",
            "vendorInformation with the alert's provider and vendor is required "
            "to update an alert.",
        )
    changes = _changes(body, LEGACY_UPDATABLE, LEGACY_PATCH_ENUMS, VENDOR)
    updated = ctx.sim.update_legacy_alert(ctx.tenant, alert_id, changes)
    if PREFER_REPRESENTATION in preferences(request):
        return graph_json(updated, headers={"Preference-Applied": PREFER_REPRESENTATION})
    return Response(status_code=204)


# alerts_v2 (microsoft.graph.security.alert)


async def list_v2(request: Request, ctx: GraphContext) -> Response:
    served = Served(request)
    alerts = select(
        request, list(ctx.tenant.data.alerts_v2.values()), V2_ENUMS, "createdDateTime desc"
    )
    body = page(
        request,
        alerts,
        page_size=ctx.sim.config.alert_page_size,
        max_top=2000,
        context="security/alerts_v2",
    )
    body["value"] = [served.alert(a) for a in body["value"]]
    return served.respond(body)


def _v2(ctx: GraphContext, alert_id: str) -> dict[str, Any]:
    return stored(ctx.tenant.data.alerts_v2, "Alert", alert_id)


async def get_v2(request: Request, ctx: GraphContext) -> Response:
    served = Served(request)
    return served.respond(served.alert(_v2(ctx, request.path_params["id"])))


async def update_v2(request: Request, ctx: GraphContext) -> Response:
    alert_id = request.path_params["id"]
    _v2(ctx, alert_id)
    body = await json_body(request)
    changes = _changes(body, V2_UPDATABLE, V2_PATCH_ENUMS)
    served = Served(request)
    return served.respond(served.alert(ctx.sim.update_v2_alert(ctx.tenant, alert_id, changes)))


async def comment_v2(request: Request, ctx: GraphContext) -> Response:
    alert_id = request.path_params["id"]
    _v2(ctx, alert_id)
    body = await json_body(request)
    text = body.get("comment")
    if not isinstance(text, str) or not text:
        raise GraphError(400, "BadRequest", "The 'comment' property is required.")
    app = ctx.tenant.apps.get(ctx.caller.app_id)
    comment = {
        "@odata.type": "microsoft.graph.security.alertComment",
        "comment": text,
        "createdByDisplayName": app.display_name if app else ctx.caller.app_id,
        "createdDateTime": iso(ctx.sim.clock.now()),
    }
    alert = ctx.tenant.data.alerts_v2[alert_id]
    comments = [*alert.get("comments", []), comment]
    ctx.sim.update_v2_alert(ctx.tenant, alert_id, {"comments": comments})
    context = metadata_context(request, "Collection(microsoft.graph.security.alertComment)")
    return graph_json({"@odata.context": context, "value": comments})


# incidents


def _expand(request: Request, ctx: GraphContext, incident: dict[str, Any]) -> dict[str, Any]:
    expand = (request.query_params.get("$expand") or "").replace(" ", "").lower()
    if not expand:
        return incident
    if expand != "alerts":
        raise GraphError(
            400,
            "BadRequest",
            f"Could not find a property named '{expand}' to "
            "expand on 'microsoft.graph.security.incident'.",
        )
    return {**incident, "alerts": ctx.sim.incident_alerts(ctx.tenant, incident["id"])}


async def list_incidents(request: Request, ctx: GraphContext) -> Response:
    incidents = select(
        request, list(ctx.tenant.data.incidents.values()), INCIDENT_ENUMS, "createdDateTime desc"
    )
    body = page(
        request,
        incidents,
        page_size=min(ctx.sim.config.alert_page_size, 50),
        max_top=50,
        context="security/incidents",
    )
    served = Served(request)
    body["value"] = [served.incident(_expand(request, ctx, i)) for i in body["value"]]
    return served.respond(body)


def _incident(ctx: GraphContext, incident_id: str) -> dict[str, Any]:
    return stored(ctx.tenant.data.incidents, "Incident", incident_id)


async def get_incident(request: Request, ctx: GraphContext) -> Response:
    served = Served(request)
    incident = _expand(request, ctx, _incident(ctx, request.path_params["id"]))
    return served.respond(served.incident(incident))


async def update_incident(request: Request, ctx: GraphContext) -> Response:
    incident_id = request.path_params["id"]
    _incident(ctx, incident_id)
    body = await json_body(request)
    changes = _changes(body, INCIDENT_UPDATABLE, INCIDENT_PATCH_ENUMS)
    served = Served(request)
    updated = ctx.sim.update_incident(ctx.tenant, incident_id, changes)
    return served.respond(served.incident(updated))


def _ep(handler: Any, roles: Sequence[str]) -> Any:
    return graph_endpoint(handler, roles=roles, bucket="security", family="security")


routes = [
    Route("/security/alerts", _ep(list_legacy, EVENTS_READ), methods=["GET"]),
    Route("/security/alerts/{id}", _ep(get_legacy, EVENTS_READ), methods=["GET"]),
    Route("/security/alerts/{id}", _ep(update_legacy, EVENTS_WRITE), methods=["PATCH"]),
    Route("/security/alerts_v2", _ep(list_v2, ALERT_READ), methods=["GET"]),
    Route("/security/alerts_v2/{id}", _ep(get_v2, ALERT_READ), methods=["GET"]),
    Route("/security/alerts_v2/{id}", _ep(update_v2, ALERT_WRITE), methods=["PATCH"]),
    Route("/security/alerts_v2/{id}/comments", _ep(comment_v2, ALERT_WRITE), methods=["POST"]),
    Route("/security/incidents", _ep(list_incidents, INCIDENT_READ), methods=["GET"]),
    Route("/security/incidents/{id}", _ep(get_incident, INCIDENT_READ), methods=["GET"]),
    Route("/security/incidents/{id}", _ep(update_incident, INCIDENT_WRITE), methods=["PATCH"]),
]
