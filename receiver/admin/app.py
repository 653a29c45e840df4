"""The admin app: ``GET /status`` (server-rendered HTML), ``GET /status.json`` and ``/static``.

- Read-only: GET and HEAD only; nothing on it changes the deployment.
- With ``admin.token`` set, /status and /status.json need it: ``Authorization: Bearer
  <token>``, or as the password of HTTP Basic (any user name), so a browser can prompt for it.
  Compared in constant time. The static assets (a public library and the page's script) are
  served without it: they carry no data.
- No secret is on the page: sinks by name and type (never their URLs), subscriptions without
  their clientState.
- Strict headers: a Content-Security-Policy allowing only this server's scripts (the alert data
  sits in non-executable JSON blocks), no framing, no caching, no referrer.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from receiver import __version__
from receiver.admin import health
from receiver.admin._alerts import recent
from receiver.admin._cards import CardPreviews
from receiver.config.settings import Settings
from receiver.store.keys import Keys

__all__ = ["SECURITY_HEADERS", "create_app"]

log = logging.getLogger(__name__)

_HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_REALM = 'realm="receiver admin"'


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    days, rest = divmod(int(seconds), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m"
    return f"{sign}{minutes}m {secs:02d}s" if minutes else f"{sign}{secs}s"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters["duration"] = _duration
    return env


def _authorized(request: Request, token: bytes | None) -> bool:
    if token is None:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    given = b""
    if scheme.lower() == "bearer":
        given = value.strip().encode()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).partition(b":")[2]
        except (binascii.Error, ValueError):
            given = b""
    return hmac.compare_digest(given, token)


class _Page:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.redis.key_prefix)
        self.token = (
            settings.admin.token.get_secret_value().encode() if settings.admin.token else None
        )
        self.templates = _environment()
        self.redis: Redis | None = None
        self.cards: CardPreviews | None = None

    def _refused(self, request: Request) -> Response | None:
        if _authorized(request, self.token):
            return None
        response = Response(
            "a token is needed: Authorization: Bearer <admin.token>\n",
            status_code=401,
            media_type="text/plain",
        )
        response.headers.append("WWW-Authenticate", f"Bearer {_REALM}")
        response.headers.append("WWW-Authenticate", f'Basic {_REALM}, charset="UTF-8"')
        return response

    async def _data(self) -> tuple[health.Health, list[Any]]:
        assert self.redis is not None and self.cards is not None
        state = await health.gather(self.settings, self.redis)
        alerts = await recent(self.redis, self.keys, self.cards, self.settings.admin.recent_alerts)
        return state, alerts

    async def _answer(
        self, request: Request, render: Callable[[health.Health, list[Any]], Response]
    ) -> Response:
        """The page in one form: refused without the token, 503 without Redis."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            state, alerts = await self._data()
        except (RedisError, OSError) as exc:
            return _unavailable(exc)
        return render(state, alerts)

    async def html(self, request: Request) -> Response:
        def render(state: health.Health, alerts: list[Any]) -> Response:
            return HTMLResponse(
                self.templates.get_template("status.html").render(
                    health=state,
                    alerts=alerts,
                    version=__version__,
                    generated=datetime.fromtimestamp(state.at, UTC).isoformat(timespec="seconds"),
                )
            )

        return await self._answer(request, render)

    async def json(self, request: Request) -> Response:
        return await self._answer(
            request,
            lambda state, alerts: JSONResponse(
                {"health": state.to_dict(), "alerts": [a.to_dict() for a in alerts]}
            ),
        )


def _unavailable(exc: BaseException) -> Response:
    # The Redis URL may carry a password: name the error, not the address.
    log.warning("status page: Redis unavailable: %s", type(exc).__name__)
    return Response(
        f"Redis unavailable ({type(exc).__name__}): the status cannot be read\n",
        status_code=503,
        media_type="text/plain",
    )


def create_app(settings: Settings) -> Starlette:
    """The admin app for ``settings``; it connects to Redis in its lifespan."""
    from receiver.store.client import make_redis

    page = _Page(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        page.redis = make_redis(settings.redis)
        page.cards = CardPreviews(settings)
        try:
            yield
        finally:
            await page.cards.aclose()
            await page.redis.aclose()

    async def root(request: Request) -> Response:
        return RedirectResponse("/status", status_code=302)

    return Starlette(
        routes=[
            Route("/", root, methods=["GET", "HEAD"]),
            Route("/status", page.html, methods=["GET", "HEAD"]),
            Route("/status.json", page.json, methods=["GET", "HEAD"]),
            Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ],
        middleware=[Middleware(_SecurityHeaders)],
        lifespan=lifespan,
    )


class _SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response (static files and errors too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers.append(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
