"""`/subscriptions`: create (after the validation handshake), list, get, renew, delete.

Limits enforced as Graph does (see docs/SIMULATOR.md for the sources): HTTPS notification
URLs, the maximum lifetime per resource, 45 minutes minimum (silently raised), no expiry in
the past, 409 for a duplicate changeType+resource of the same app, an unfiltered
`security/alerts` is too wide, a bad `$filter` is "Invalid filter clause", clientState up
to 128 characters, changeType from created/updated/deleted.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.simulator import odata
from receiver.simulator.clock import parse_datetime
from receiver.simulator.graph_http import (
    GraphContext,
    GraphError,
    graph_endpoint,
    graph_json,
    json_body,
    metadata_context,
    missing_roles_message,
    page,
)
from receiver.simulator.state import Subscription

CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
TLS_VERSIONS = frozenset({"v1_0", "v1_1", "v1_2", "v1_3"})
MIN_LIFETIME = dt.timedelta(minutes=45)
MAX_CLIENT_STATE = 128
ALERT_ROLES = ("SecurityEvents.ReadWrite.All",)
TOO_WIDE = "Operation: Create; Exception: [Status Code: Forbidden; Reason: ]"

# Maximum lifetime in minutes by resource family (prefix, lower case, no leading slash).
MAX_LIFETIME_MINUTES: tuple[tuple[str, int], ...] = (
    ("security/alerts", 43_200),
    ("users", 41_760),
    ("groups", 41_760),
    ("directory", 41_760),
    ("drives", 42_300),
    ("me/drive", 42_300),
    ("communications/presences", 60),
    ("me/mailfolders", 4_230),
    ("me/messages", 4_230),
    ("me/events", 4_230),
    ("me/contacts", 4_230),
)


def _family(resource: str) -> tuple[str, int] | None:
    normalized = resource.strip().lstrip("/").lower()
    for prefix, minutes in MAX_LIFETIME_MINUTES:
        if normalized.startswith(prefix):
            return prefix, minutes
    if normalized.startswith("users/") and any(
        p in normalized for p in ("/messages", "/events", "/contacts", "/mailfolders")
    ):
        return "outlook", 4_230
    return None


def _max_minutes(resource: str) -> int:
    lowered = resource.strip().lstrip("/").lower()
    if lowered.startswith("users/") and any(
        p in lowered for p in ("/messages", "/events", "/contacts", "/mailfolders")
    ):
        return 4_230
    family = _family(resource)
    return family[1] if family else 4_230


def _required(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise GraphError(
            400, "InvalidRequest", f"{name} is a required property for subscription creation."
        )
    return value


def _check_url(ctx: GraphContext, url: str, label: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise GraphError(
            400, "InvalidRequest", f"Invalid {label[0].lower()}{label[1:]} url='{url}'."
        )
    if parts.scheme == "http" and not ctx.sim.config.allow_http:
        raise GraphError(400, "InvalidRequest", f"{label} scheme='http' is not supported.")


def _expiration(ctx: GraphContext, raw: Any, resource: str) -> dt.datetime:
    if not isinstance(raw, str):
        raise GraphError(
            400,
            "InvalidRequest",
            "expirationDateTime is a required property for subscription creation.",
        )
    try:
        requested = parse_datetime(raw)
    except ValueError as exc:
        raise GraphError(
            400,
            "InvalidRequest",
            "Could not process subscription creation "
            "payload. Are all property names spelled and camelCased "
            "properly?",
        ) from exc
    now = ctx.sim.clock.now()
    if requested <= now:
        raise GraphError(
            400, "InvalidRequest", "Subscription expiration can only be in the future."
        )
    minutes = _max_minutes(resource)
    if requested > now + dt.timedelta(minutes=minutes):
        code = (
            "ExtensionError"
            if resource.lstrip("/").lower().startswith("security/alerts")
            else "InvalidRequest"
        )
        raise GraphError(
            400, code, f"Subscription expiration can only be {minutes} minutes in the future."
        )
    return max(requested, now + MIN_LIFETIME)


def _change_type(raw: str) -> str:
    parts = [p.strip() for p in raw.split(",")]
    bad = [p for p in parts if p not in CHANGE_TYPES]
    if bad or not parts:
        raise GraphError(
            400,
            "InvalidRequest",
            f"Invalid changeType '{raw}'. Allowed values: created, updated, deleted.",
        )
    return ",".join(parts)


def _check_resource(ctx: GraphContext, resource: str, include_resource_data: bool) -> None:
    try:
        parsed = ctx.sim.alert_resource(resource)
    except odata.FilterError as exc:
        raise GraphError(400, "BadRequest", "Invalid filter clause") from exc
    if parsed is None:
        if _family(resource) is None:
            raise GraphError(
                400,
                "InvalidRequest",
                f"Resource '{resource}' is not supported for change notifications.",
            )
        return
    if not ctx.caller.roles.intersection(ALERT_ROLES):
        raise GraphError(403, "Forbidden", missing_roles_message(ALERT_ROLES, ctx.caller.roles))
    if parsed.alert_id is None and parsed.filter_expr is None:
        raise GraphError(400, "ExtensionError", TOO_WIDE)
    if include_resource_data:
        raise GraphError(
            400,
            "InvalidRequest",
            "Rich notifications (includeResourceData) are not supported for "
            f"resource '{resource}'.",
        )


def _same_resource(a: str, b: str) -> bool:
    return a.strip().lstrip("/").lower() == b.strip().lstrip("/").lower()


def _entity(
    request: Request, subscription: Subscription, *, include_client_state: bool, status: int = 200
) -> Response:
    """One subscription as Graph answers it (the clientState only on creation)."""
    payload = {
        "@odata.context": metadata_context(request, "subscriptions/$entity"),
        **subscription.to_json(include_client_state=include_client_state),
    }
    return graph_json(payload, status=status)


async def _handshake(ctx: GraphContext, url: str) -> None:
    """Graph's validation request to `url`; 400 with its error when it fails."""
    result = await ctx.sim.notifier.validate(url)
    if result.error:
        raise GraphError(400, "InvalidRequest", result.error)


def _retry_after_or_none(ctx: GraphContext) -> None:
    retry_after = ctx.sim.throttle.check(
        "subscriptions.write", ctx.tenant.tenant_id, ctx.caller.app_id
    )
    if retry_after is not None:
        raise GraphError(
            429,
            "TooManyRequests",
            "Please retry again later.",
            headers={"Retry-After": f"{retry_after:g}"},
        )


async def create(request: Request, ctx: GraphContext) -> Response:
    sim = ctx.sim
    sim.expire_subscriptions()
    body = await json_body(request)
    _retry_after_or_none(ctx)
    change_type = _change_type(_required(body, "changeType"))
    notification_url = _required(body, "notificationUrl")
    resource = _required(body, "resource")
    lifecycle_url = body.get("lifecycleNotificationUrl")
    client_state = body.get("clientState")
    include_resource_data = bool(body.get("includeResourceData") or False)
    tls = body.get("latestSupportedTlsVersion") or "v1_2"
    if tls not in TLS_VERSIONS:
        raise GraphError(
            400, "ValidationError", "Invalid property value for LatestSupportedTlsVersion"
        )
    if client_state is not None and (
        not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE
    ):
        raise GraphError(
            400,
            "InvalidRequest",
            f"clientState exceeds the maximum length of {MAX_CLIENT_STATE} characters.",
        )
    _check_url(ctx, notification_url, "NotificationUrl")
    if lifecycle_url is not None:
        if not isinstance(lifecycle_url, str):
            raise GraphError(400, "InvalidRequest", "Invalid lifecycleNotificationUrl.")
        _check_url(ctx, lifecycle_url, "LifecycleNotificationUrl")
    _check_resource(ctx, resource, include_resource_data)
    expiration = _expiration(ctx, body.get("expirationDateTime"), resource)
    _reject_duplicate(ctx, change_type, resource)
    for url in (notification_url, lifecycle_url):
        if url:
            await _handshake(ctx, url)
    _reject_duplicate(ctx, change_type, resource)
    subscription = Subscription(
        id=str(uuid.uuid4()),
        tenant_id=ctx.tenant.tenant_id,
        application_id=ctx.caller.app_id,
        creator_id=ctx.caller.object_id,
        resource=resource,
        change_type=change_type,
        notification_url=notification_url,
        lifecycle_notification_url=lifecycle_url,
        client_state=client_state,
        expiration=expiration,
        latest_supported_tls_version=tls,
        notification_url_app_id=body.get("notificationUrlAppId"),
        include_resource_data=include_resource_data,
        encryption_certificate=body.get("encryptionCertificate"),
        encryption_certificate_id=body.get("encryptionCertificateId"),
    )
    ctx.tenant.data.subscriptions[subscription.id] = subscription
    sim.counters["subscriptions.created"] += 1
    return _entity(request, subscription, include_client_state=True, status=201)


def _reject_duplicate(ctx: GraphContext, change_type: str, resource: str) -> None:
    wanted = frozenset(change_type.split(","))
    for existing in ctx.tenant.data.subscriptions.values():
        if (
            existing.application_id == ctx.caller.app_id
            and existing.change_types == wanted
            and _same_resource(existing.resource, resource)
        ):
            raise GraphError(
                409,
                "Conflict",
                f"Subscription Id {existing.id} already exists for the requested combination",
            )


def _owned(ctx: GraphContext, subscription_id: str) -> Subscription:
    ctx.sim.expire_subscriptions()
    subscription = ctx.tenant.data.subscriptions.get(subscription_id)
    if subscription is None or subscription.application_id != ctx.caller.app_id:
        raise GraphError(
            404,
            "ResourceNotFound",
            f"The object was not found. Subscription Id {subscription_id} does not exist.",
        )
    return subscription


async def list_subscriptions(request: Request, ctx: GraphContext) -> Response:
    ctx.sim.expire_subscriptions()
    items = [
        s.to_json(include_client_state=False)
        for s in ctx.tenant.data.subscriptions.values()
        if s.application_id == ctx.caller.app_id
    ]
    return graph_json(
        page(
            request,
            items,
            page_size=ctx.sim.config.subscription_page_size,
            max_top=None,
            context="subscriptions",
        )
    )


async def get_subscription(request: Request, ctx: GraphContext) -> Response:
    subscription = _owned(ctx, request.path_params["id"])
    return _entity(request, subscription, include_client_state=False)


async def update_subscription(request: Request, ctx: GraphContext) -> Response:
    subscription = _owned(ctx, request.path_params["id"])
    body = await json_body(request)
    _retry_after_or_none(ctx)
    if "expirationDateTime" in body:
        subscription.expiration = _expiration(
            ctx, body["expirationDateTime"], subscription.resource
        )
    if "notificationUrl" in body:
        url = body["notificationUrl"]
        if not isinstance(url, str):
            raise GraphError(400, "InvalidRequest", "Invalid notificationUrl.")
        _check_url(ctx, url, "NotificationUrl")
        await _handshake(ctx, url)
        subscription.notification_url = url
    ctx.sim.counters["subscriptions.renewed"] += 1
    return _entity(request, subscription, include_client_state=False)


async def delete_subscription(request: Request, ctx: GraphContext) -> Response:
    subscription = _owned(ctx, request.path_params["id"])
    _retry_after_or_none(ctx)
    del ctx.tenant.data.subscriptions[subscription.id]
    ctx.sim.counters["subscriptions.deleted"] += 1
    return Response(status_code=204)


async def reauthorize(request: Request, ctx: GraphContext) -> Response:
    _owned(ctx, request.path_params["id"])
    ctx.sim.counters["subscriptions.reauthorized"] += 1
    return Response(status_code=204)


def _ep(handler: Any) -> Any:
    return graph_endpoint(handler, roles=None, bucket=None, family="subscriptions")


routes = [
    Route("/subscriptions", _ep(create), methods=["POST"]),
    Route("/subscriptions", _ep(list_subscriptions), methods=["GET"]),
    Route("/subscriptions/{id}", _ep(get_subscription), methods=["GET"]),
    Route("/subscriptions/{id}", _ep(update_subscription), methods=["PATCH"]),
    Route("/subscriptions/{id}", _ep(delete_subscription), methods=["DELETE"]),
    Route("/subscriptions/{id}/reauthorize", _ep(reauthorize), methods=["POST"]),
]
