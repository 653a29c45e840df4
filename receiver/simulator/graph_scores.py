"""`/security/secureScores` and `/security/secureScoreControlProfiles`, and `sendMail`."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import email.utils
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.simulator.clock import iso
from receiver.simulator.graph_http import (
    GraphContext,
    GraphError,
    Handler,
    graph_endpoint,
    graph_json,
    json_body,
    not_found,
    page,
    stored,
)
from receiver.simulator.graph_security import (
    EVENTS_READ,
    EVENTS_WRITE,
    PREFER_REPRESENTATION,
    select,
)

CONTROL_STATES = {
    "default": "Default",
    "ignored": "Ignored",
    "thirdparty": "ThirdParty",
    "reviewed": "Reviewed",
}


def _listed(
    request: Request, ctx: GraphContext, items: Sequence[dict[str, Any]], order: str, context: str
) -> Response:
    """One page of `items` after `$filter` and `$orderby` (`order` by default)."""
    chosen = select(request, items, {}, order)
    size = ctx.sim.config.alert_page_size
    return graph_json(page(request, chosen, page_size=size, max_top=None, context=context))


async def list_scores(request: Request, ctx: GraphContext) -> Response:
    scores = ctx.tenant.data.secure_scores
    return _listed(request, ctx, scores, "createdDateTime desc", "security/secureScores")


async def get_score(request: Request, ctx: GraphContext) -> Response:
    score_id = request.path_params["id"]
    for score in ctx.tenant.data.secure_scores:
        if score["id"] == score_id:
            return graph_json(score)
    raise not_found("secureScore", score_id)


async def list_profiles(request: Request, ctx: GraphContext) -> Response:
    profiles = list(ctx.tenant.data.control_profiles.values())
    return _listed(request, ctx, profiles, "rank", "security/secureScoreControlProfiles")


def _profile(ctx: GraphContext, profile_id: str) -> dict[str, Any]:
    return stored(ctx.tenant.data.control_profiles, "secureScoreControlProfile", profile_id)


async def get_profile(request: Request, ctx: GraphContext) -> Response:
    return graph_json(_profile(ctx, request.path_params["id"]))


async def update_profile(request: Request, ctx: GraphContext) -> Response:
    profile = _profile(ctx, request.path_params["id"])
    body = await json_body(request)
    updates = body.get("controlStateUpdates")
    entries = updates if isinstance(updates, list) else [body]
    app = ctx.tenant.apps.get(ctx.caller.app_id)
    for entry in entries:
        if not isinstance(entry, dict):
            raise GraphError(400, "BadRequest", "controlStateUpdates must be objects.")
        state = CONTROL_STATES.get(str(entry.get("state", "")).lower())
        if state is None:
            raise GraphError(
                400,
                "BadRequest",
                f"Invalid value '{entry.get('state')}' for "
                "property 'state'. Allowed: Default, Ignored, ThirdParty, Reviewed.",
            )
        profile["controlStateUpdates"].append(
            {
                "assignedTo": entry.get("assignedTo"),
                "comment": entry.get("comment"),
                "state": state,
                "updatedBy": app.display_name if app else ctx.caller.app_id,
                "updatedDateTime": iso(ctx.sim.clock.now()),
            }
        )
    profile["lastModifiedDateTime"] = iso(ctx.sim.clock.now())
    if PREFER_REPRESENTATION in request.headers.get("prefer", ""):
        return graph_json(profile)
    return Response(status_code=204)


def _mime_message(raw: bytes) -> tuple[dict[str, Any], str]:
    """sendMail's MIME form (Content-Type text/plain): the body is the base64 of an RFC 5322
    message. Recorded as the message Graph would store: subject, recipients,
    internetMessageId and every header (internetMessageHeaders), the HTML or text body."""
    try:
        data = base64.b64decode(b"".join(raw.split()), validate=True)
        parsed = email.message_from_bytes(data, policy=email.policy.default)
    except (binascii.Error, ValueError):
        raise GraphError(
            400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
        ) from None
    if not isinstance(parsed, EmailMessage) or not data.strip():
        raise GraphError(
            400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
        )

    def recipients(name: str) -> list[dict[str, Any]]:
        found = email.utils.getaddresses([str(v) for v in parsed.get_all(name, [])])
        return [{"emailAddress": {"address": a}} for _, a in found if a]

    part = parsed.get_body(("html", "plain"))
    content = part.get_content() if isinstance(part, EmailMessage) else ""
    kind = "HTML" if part is not None and part.get_content_subtype() == "html" else "Text"
    message = {
        "subject": str(parsed.get("Subject", "")),
        "internetMessageId": str(parsed.get("Message-ID", "")),
        "internetMessageHeaders": [{"name": k, "value": str(v)} for k, v in parsed.items()],
        "toRecipients": recipients("To"),
        "ccRecipients": recipients("Cc"),
        "body": {"contentType": kind, "content": content},
    }
    return message, data.decode("utf-8", "replace")


async def send_mail(request: Request, ctx: GraphContext) -> Response:
    record: dict[str, Any]
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == "text/plain":
        message, mime = _mime_message(await request.body())
        # The MIME form has no saveToSentItems: the message is kept in Sent Items.
        record = {"message": message, "mime": mime, "saveToSentItems": True}
    else:
        body = await json_body(request)
        sent = body.get("message")
        if not isinstance(sent, dict):
            raise GraphError(400, "ErrorInvalidRequest", "Empty Message is not allowed.")
        record = {"message": sent, "saveToSentItems": body.get("saveToSentItems", True)}
    ctx.tenant.data.mails.append(
        {
            "userId": request.path_params["id"],
            **record,
            "appId": ctx.caller.app_id,
            "time": iso(ctx.sim.clock.now()),
        }
    )
    ctx.sim.counters["mail.sent"] += 1
    return Response(status_code=202)


def _route(
    path: str,
    handler: Handler,
    roles: Sequence[str],
    bucket: str | None,
    method: str = "GET",
    family: str = "secureScores",
) -> Route:
    endpoint = graph_endpoint(handler, roles=roles, bucket=bucket, family=family)
    return Route(path, endpoint, methods=[method])


SCORES, PROFILES = "secureScores", "secureScoreControlProfiles"
routes = [
    _route(f"/security/{SCORES}", list_scores, EVENTS_READ, SCORES),
    _route(f"/security/{SCORES}/{{id}}", get_score, EVENTS_READ, SCORES),
    _route(f"/security/{PROFILES}", list_profiles, EVENTS_READ, PROFILES),
    _route(f"/security/{PROFILES}/{{id}}", get_profile, EVENTS_READ, PROFILES),
    _route(f"/security/{PROFILES}/{{id}}", update_profile, EVENTS_WRITE, PROFILES, "PATCH"),
    _route("/users/{id}/sendMail", send_mail, ("Mail.Send",), None, "POST", family="mail"),
]
