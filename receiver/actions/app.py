"""The action endpoint: where the links in Teams cards, Slack messages and emails lead.

``GET {path}/{token}`` shows a confirmation page and changes nothing (confirmation.py);
``POST {path}/{token}``, the page's form, acts at most once per link (submission.py). Every
refusal is a page with a clear message and a 4xx (or 502/503 for Graph) status
(refusals.py). Tokens never appear in logs, audit records or metrics.

With ``actions.sign_in`` (signin.py), a GET without a session goes to Entra ID first and
comes back through ``{path}/signin/callback`` (callback.py); the page then shows who is signed
in, and a POST acts only with a current session and the session's CSRF token in the form, for
the signed-in UPN instead of a typed name.

Where it runs: the web role, because analysts' browsers reach the public port. ``web/`` may
not import the Graph client, so :class:`WithActions` (plain ASGI, one prefix check) puts this
app in front of the web app; ``receiver.cli`` composes the two.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from receiver.actions.budget import AlertCache, PageBudget
from receiver.actions.callback import Callback
from receiver.actions.confirmation import Confirmation
from receiver.actions.endpoint import Endpoint
from receiver.actions.links import ActionLinks
from receiver.actions.signin import SignIn
from receiver.actions.submission import Submission
from receiver.config.settings import Settings
from receiver.graph.client import GraphClient
from receiver.store.keys import Keys

__all__ = ["WithActions", "create_actions_app", "mount"]

log = logging.getLogger(__name__)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def create_actions_app(
    settings: Settings,
    *,
    redis: Redis,
    graph: GraphClient,
    registry: CollectorRegistry | None = None,
    links: ActionLinks | None = None,
) -> Starlette:
    """The action endpoint as a Starlette app (routes under ``settings.actions.path``)."""
    links = links or ActionLinks.from_settings(settings)
    keys = Keys(settings.redis.key_prefix)
    signin = SignIn(settings, redis, keys) if settings.actions.sign_in.enabled else None
    endpoint = Endpoint(
        settings=settings,
        keys=keys,
        redis=redis,
        graph=graph,
        links=links,
        origin=_origin(settings.actions.base_url or settings.web.public_url),
        outcomes=Counter(
            "receiver_actions",
            "Action link requests by action and outcome",
            ["action", "outcome"],
            registry=registry,
        ),
        budget=PageBudget(redis, keys),
        cache=AlertCache(),
        signin=signin,
    )
    path = settings.actions.path + "/{token}"
    routes = [
        Route(path, Confirmation(endpoint).confirm, methods=["GET"]),
        Route(path, Submission(endpoint).act, methods=["POST"]),
    ]
    if signin is not None:
        callback = Callback(endpoint, signin).callback
        routes.insert(0, Route(signin.path + "/signin/callback", callback, methods=["GET"]))
    app = Starlette(routes=routes)
    app.state.signin = signin
    return app


class WithActions:
    """ASGI: ``prefix`` to the actions app, everything else (lifespan included) to ``inner``.
    ``on_shutdown`` runs when the inner app has shut down (closes what the actions app owns)."""

    def __init__(
        self,
        inner: ASGIApp,
        actions: ASGIApp,
        prefix: str,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.inner = inner
        self.actions = actions
        self.prefix = prefix
        self._on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == self.prefix or path.startswith(self.prefix + "/"):
                await self.actions(scope, receive, send)
                return
        elif scope["type"] == "lifespan" and self._on_shutdown is not None:
            on_shutdown = self._on_shutdown

            async def send_after_cleanup(message: Message) -> None:
                if message["type"] == "lifespan.shutdown.complete":
                    try:
                        await on_shutdown()
                    except Exception:
                        log.exception("closing the action endpoint failed")
                await send(message)

            await self.inner(scope, receive, send_after_cleanup)
            return
        await self.inner(scope, receive, send)


def mount(
    inner: ASGIApp,
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    redis: Redis | None = None,
    graph: GraphClient | None = None,
) -> WithActions:
    """``inner`` (the web app) with the action endpoint in front. Without ``redis``/``graph``
    it makes its own and closes them when the web app shuts down."""
    from receiver.graph.client import client_for
    from receiver.store.client import make_redis

    own_redis = redis is None
    client = redis if redis is not None else make_redis(settings.redis)
    own_graph = graph is None
    graph_client = graph if graph is not None else client_for(settings, client)

    async def close() -> None:
        signin: SignIn | None = app.state.signin
        if signin is not None:
            signin.close()
        if own_graph:
            await graph_client.aclose()
        if own_redis:
            await client.aclose()

    app = create_actions_app(settings, redis=client, graph=graph_client, registry=registry)
    return WithActions(inner, app, settings.actions.path, close)
