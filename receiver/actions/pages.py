"""The pages of the action endpoint: the confirmation, the result and every refusal.

Autoescaped Jinja2 (alert titles come from Graph and may hold markup), and headers that keep
the page and its URL (a capability) to itself: no caching, no Referer, no framing, no scripts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.responses import HTMLResponse, Response

from receiver.actions import audit

_COLORS = {"ok": "#107c10", "ask": "#0078d4", "refused": "#d13438"}
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the URL is a capability: never leak it onwards
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    auto_reload=False,
)


def page(status: int, kind: str, heading: str, message: str, **extra: Any) -> Response:
    ctx = {
        "heading": heading,
        "message": message,
        "color": _COLORS[kind],
        "alert": None,
        "form": False,
        "detail": "",
        "tenant": "",
        "signed_in": None,
        **extra,
    }
    return HTMLResponse(
        _ENV.get_template("page.html.j2").render(ctx), status_code=status, headers=_HEADERS
    )


_REFUSALS = {
    "invalid": (
        400,
        "This link is not valid",
        "The link was changed, cut short, or signed with a key this receiver no "
        "longer has. Nothing was changed. Use the buttons of the latest message.",
    ),
    "expired": (
        410,
        "This link has expired",
        "Action links work for a limited time. Nothing was changed. Use the Defender "
        "portal, or the buttons of a newer message about this alert.",
    ),
    "wrong_tenant": (
        403,
        "This link is for another tenant",
        "The link's tenant is not served here, or the alert does not belong to "
        "it. Nothing was changed.",
    ),
    "not_found": (
        404,
        "Alert not found",
        "The alert does not exist in the tenant this link was made for: it belongs "
        "to another tenant, or it was deleted. Nothing was changed.",
    ),
    "forbidden_origin": (
        403,
        "Request from another site refused",
        "The confirmation must be sent from this receiver's own page. Nothing was changed.",
    ),
    # sign-in with Entra ID (actions.sign_in)
    "signin_required": (
        401,
        "Sign-in required",
        "This receiver acts only for people signed in with Entra ID, and this "
        "request had no current sign-in (it may have expired). Open the link "
        "again to sign in. Nothing was changed; the link still works.",
    ),
    "forbidden_csrf": (
        403,
        "This form is not from your current sign-in",
        "The confirmation form belongs to another or an older sign-in. Open the "
        "link again. Nothing was changed; the link still works.",
    ),
    "signin_expired": (
        400,
        "Sign-in expired or started elsewhere",
        "The sign-in took longer than 10 minutes, was already completed, or was "
        "not started in this browser. Open the action link again. Nothing was "
        "changed.",
    ),
    "signin_failed": (
        400,
        "Sign-in failed",
        "Entra ID did not confirm who you are. Open the action link again to "
        "retry. Nothing was changed.",
    ),
    "signin_unavailable": (
        503,
        "Entra ID is unavailable",
        "Sign-in could not be completed. Nothing was changed; the link still "
        "works: try again in a minute.",
    ),
    "wrong_signin_tenant": (
        403,
        "Signed in to another tenant",
        "This receiver accepts sign-ins of its own Entra ID tenant only. Nothing was changed.",
    ),
    "not_allowed": (
        403,
        "Not allowed to triage alerts here",
        "Your account is in none of the groups allowed to act on alerts. Ask the "
        "receiver's administrator to add you to one. Nothing was changed; the link "
        "still works for someone who is.",
    ),
    "groups_overage": (
        403,
        "Group membership could not be checked",
        "Your account is in more groups than Entra ID puts in a sign-in token "
        "(200), so membership in the allowed groups cannot be read from it. The "
        "receiver's administrator can set the app registration to emit only "
        "the groups assigned to the application (Token configuration, groups "
        "claim) and assign the allowed groups to it. Nothing was changed.",
    ),
    "no_groups_claim": (
        403,
        "Group membership could not be checked",
        "The sign-in token carries no groups claim, so membership in the "
        "allowed groups cannot be checked. The receiver's administrator must "
        "add a groups claim to the app registration's tokens (Token "
        "configuration). Nothing was changed.",
    ),
}


def refusal(reason: str, detail: str = "") -> Response:
    status, heading, message = _REFUSALS[reason]
    return page(status, "refused", heading, message, detail=detail)


def used_page(state: str | None) -> Response:
    detail = ""
    if state:
        try:
            record = audit.AuditRecord.from_json(state)
        except (ValueError, TypeError):
            record = None
        if record is not None and record.at:
            when = datetime.fromtimestamp(record.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            detail = f"Used {when} by {record.by or 'someone'}: {record.outcome.replace('_', ' ')}."
        elif record is not None:
            detail = "It is being used right now."
    return page(
        409,
        "refused",
        "This link was already used",
        "Each action link works once. Nothing was changed by this request.",
        detail=detail,
    )


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
