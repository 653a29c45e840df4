"""The web role's app: the notification endpoints (:mod:`receiver.web.ingest`) in front of a
Starlette app serving ``GET /healthz`` (alive), ``/readyz`` (Redis answers) and ``/metrics``
(Prometheus), with the lifespan that runs the registry cache's poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from receiver.config.loader import load_settings
from receiver.config.settings import Settings
from receiver.store.client import make_redis
from receiver.store.entries import FIELD as ENTRY_FIELD
from receiver.store.keys import Keys
from receiver.web.enqueue import Enqueuer
from receiver.web.ingest import IngestApp
from receiver.web.registry_cache import RegistryCache
from receiver.web.rich import KeySet
from receiver.web.state import RichConfig, WebState

__all__ = ["IngestApp", "WebState", "app_from_environment", "create_app", "web_state"]


async def _healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _readyz(request: Request) -> Response:
    state: WebState = request.app.state.web
    try:
        async with asyncio.timeout(1.0):
            await state.redis.ping()
    except (RedisError, OSError, TimeoutError):
        return PlainTextResponse("redis unavailable", 503)
    return PlainTextResponse("ready")


async def _metrics(request: Request) -> Response:
    state: WebState = request.app.state.web
    body = b"".join(generate_latest(r) for r in (state.metrics.registry, *state.extra_registries))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _load_private_keys(settings: Settings) -> dict[str, rsa.RSAPrivateKey]:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    out: dict[str, rsa.RSAPrivateKey] = {}
    for cert in settings.web.rich_notifications.certificates:
        password = cert.passphrase.get_secret_value().encode() if cert.passphrase else None
        key = load_pem_private_key(cert.private_key_file.read_bytes(), password=password)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"rich_notifications certificate {cert.id}: not an RSA key")
        out[cert.id] = key
    return out


def create_app(
    settings: Settings,
    *,
    redis: Redis | None = None,
    extra_registries: list[CollectorRegistry] | None = None,
) -> IngestApp:
    """The web app for ``settings``. Starts even when Redis is down (readyz says so)."""
    keys = Keys(settings.redis.key_prefix)
    client = redis if redis is not None else make_redis(settings.redis)
    state = WebState(
        settings=settings,
        keys=keys,
        redis=client,
        cache=RegistryCache(client, keys),
        enqueuer=Enqueuer(client, ENTRY_FIELD),
        app_id_by_tenant={t.tenant_id: t.client_id for t in settings.tenants},
        extra_registries=list(extra_registries or []),
    )
    rich_settings = settings.web.rich_notifications
    if rich_settings.enabled:
        ca = rich_settings.ca_bundle or settings.graph.ca_bundle
        state.http = httpx.AsyncClient(timeout=10, verify=str(ca) if ca else True)
        state.rich = RichConfig(
            keys=KeySet(rich_settings.keys_url, state.http),
            private_keys=_load_private_keys(settings),
            app_ids=frozenset(t.client_id for t in settings.tenants),
            require=rich_settings.require_validation_tokens,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        with contextlib.suppress(RedisError, OSError):
            await state.cache.refresh()
        # Everything allocated so far lives as long as the process: keep it out of the
        # collector's way, so the request path does not pay for full collections.
        gc.collect()
        gc.freeze()
        # The registry poller as a TaskGroup: on shutdown it is asked to stop (the event)
        # and given 5 s before it is cancelled; a cancelled shutdown cancels it, waits for
        # it and goes on cancelled (CancelledError propagates), the clean-up below still runs.
        stop = asyncio.Event()
        overdue: asyncio.TimerHandle | None = None
        try:
            async with asyncio.TaskGroup() as tasks:
                poller = tasks.create_task(state.cache.run(stop), name="registry-cache")
                try:
                    yield
                finally:
                    stop.set()
                    overdue = asyncio.get_running_loop().call_later(5, poller.cancel)
        finally:
            if overdue is not None:
                overdue.cancel()
            await state.enqueuer.aclose()
            if state.http is not None:
                await state.http.aclose()
            if redis is None:
                await client.aclose()

    routes = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.web = state
    return IngestApp(state, app)


def app_from_environment() -> IngestApp:
    """uvicorn factory for ``receiver web --workers N``: settings from RECEIVER_CONFIG."""
    path = os.environ["RECEIVER_CONFIG"]
    return create_app(load_settings(path, environ=os.environ))


def web_state(app: IngestApp) -> WebState:
    return app.state
