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
_ENV = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=True, undefined=StrictUndefined, auto_reload=False)


def page(status: int, kind: str, heading: str, message: str, **extra: Any) -> Response:
    ctx = {"heading": heading, "message": message, "color": _COLORS[kind], "alert": None,
           "form": False, "detail": "", "tenant": "", **extra}
    return HTMLResponse(_ENV.get_template("page.html.j2").render(ctx), status_code=status,
                        headers=_HEADERS)


_REFUSALS = {
    "invalid": (400, "This link is not valid",
                "The link was changed, cut short, or signed with a key this receiver no "
                "longer has. Nothing was changed. Use the buttons of the latest message."),
    "expired": (410, "This link has expired",
                "Action links work for a limited time. Nothing was changed. Use the Defender "
                "portal, or the buttons of a newer message about this alert."),
    "wrong_tenant": (403, "This link is for another tenant",
                     "The link's tenant is not served here, or the alert does not belong to "
                     "it. Nothing was changed."),
    "not_found": (404, "Alert not found",
                  "The alert does not exist in the tenant this link was made for: it belongs "
                  "to another tenant, or it was deleted. Nothing was changed."),
    "forbidden_origin": (403, "Request from another site refused",
                         "The confirmation must be sent from this receiver's own page. "
                         "Nothing was changed."),
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
            detail = (f"Used {when} by {record.by or 'someone'}: "
                      f"{record.outcome.replace('_', ' ')}.")
        elif record is not None:
            detail = "It is being used right now."
    return page(409, "refused", "This link was already used",
                "Each action link works once. Nothing was changed by this request.",
                detail=detail)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
