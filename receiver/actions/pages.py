"""The pages of the action endpoint: the confirmation, the result and every refusal
(refusals.py says which).

Autoescaped Jinja2 (alert titles come from Graph and may hold markup), and headers that keep
the page and its URL (a capability) to itself: no caching, no Referer, no framing, no scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.responses import HTMLResponse, Response

__all__ = ["page"]

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
