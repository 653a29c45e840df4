"""The web role: Graph's front door.

``POST {notification_path}`` and ``POST {lifecycle_path}``: the validation handshake, or a
batch of notifications validated item by item and made durable in Redis before the 202. No
Graph call and no sink call happen here, so the answer never waits on either.
``GET /healthz`` (alive), ``/readyz`` (Redis answers), ``/metrics`` (Prometheus).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from receiver.keys import Keys
from receiver.settings import Settings, load_settings
from receiver.streams import make_redis
from receiver.web import validation as v
from receiver.web.enqueue import EnqueueError, Enqueuer
from receiver.web.metrics import WebMetrics
from receiver.web.registry_cache import RegistryCache
from receiver.web.rich import KeySet, RichError, decrypt_content, verify_validation_token

log = logging.getLogger(__name__)

_JSON_TYPES = ("application/json",)
_PLAIN = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


class BodyTooLarge(Exception):
    pass


@dataclass
class RichConfig:
    keys: KeySet
    private_keys: dict[str, rsa.RSAPrivateKey]
    app_ids: frozenset[str]
    require: bool


@dataclass
class WebState:
    settings: Settings
    keys: Keys
    redis: Redis
    cache: RegistryCache
    enqueuer: Enqueuer
    metrics: WebMetrics = field(default_factory=WebMetrics)
    rich: RichConfig | None = None
    http: httpx.AsyncClient | None = None
    app_id_by_tenant: dict[str, str] = field(default_factory=dict)


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > limit:
                raise BodyTooLarge
        except ValueError:
            raise BodyTooLarge from None
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() in _JSON_TYPES


async def _rich_checker(state: WebState, batch: v.Batch) -> v.RichCheck | None:
    """Verify the batch's validation tokens once; a per-item check for the validator."""
    rich = state.rich
    has_encrypted = any(isinstance(i, dict) and "encryptedContent" in i for i in batch.items)
    if rich is None:
        if not has_encrypted:
            return None

        def refuse(item: v.Item) -> tuple[str | None, str]:
            return (v.BAD_ENCRYPTED_CONTENT if item.encrypted_content is not None else None), ""

        return refuse
    if not batch.validation_tokens and not rich.require and not has_encrypted:
        return None
    vouched: set[tuple[str, str]] = set()
    for token in batch.validation_tokens[:64]:
        try:
            vouched.add(await verify_validation_token(
                token, rich.keys, rich.app_ids, state.settings.allowed_tenant_ids))
        except RichError as exc:
            log.warning("validation token refused: %s", exc, extra={"reason": "token"})

    def check(item: v.Item) -> tuple[str | None, str]:
        tenant = item.tenant_id.lower()
        needs_token = rich.require or item.encrypted_content is not None
        if needs_token and (tenant, state.app_id_by_tenant.get(tenant, "")) not in vouched:
            return v.BAD_VALIDATION_TOKEN, ""
        if item.encrypted_content is None:
            return None, ""
        try:
            return None, decrypt_content(item.encrypted_content, rich.private_keys).decode()
        except RichError as exc:
            log.warning("encrypted content refused: %s", exc,
                        extra={"tenant_id": tenant, "subscription_id": item.subscription_id})
            return v.BAD_ENCRYPTED_CONTENT, ""

    return check


async def _notifications(request: Request) -> Response:
    state: WebState = request.app.state.web
    path = request.url.path
    start = time.perf_counter()
    status = 500
    handshake = False
    try:
        token = request.query_params.get("validationToken")
        if token is not None:
            handshake = True
            if not v.check_validation_token(token):
                status = 400
                return PlainTextResponse("invalid validationToken", 400, headers=_PLAIN)
            status = 200
            return PlainTextResponse(token, 200, headers=_PLAIN)
        response = await _accept(state, request)
        status = response.status_code
        return response
    finally:
        state.metrics.answered(path, status, time.perf_counter() - start,
                               notification=not handshake)


def _reject(state: WebState, status: int, reason: str, kind: str = "notification") -> Response:
    state.metrics.items.labels(kind, "rejected", reason).inc()
    return JSONResponse({"error": reason}, status)


async def _accept(state: WebState, request: Request) -> Response:
    settings = state.settings
    if not _is_json(request.headers.get("content-type", "")):
        return JSONResponse({"error": "content type must be application/json"}, 415)
    try:
        body = await _read_body(request, settings.web.max_body_bytes)
    except BodyTooLarge:
        return JSONResponse({"error": "body too large"}, 413)
    except ClientDisconnect:
        return Response(status_code=400)
    try:
        batch = v.parse_body(body)
    except v.BodyError as exc:
        return _reject(state, 400, exc.reason)
    budget_s = settings.web.enqueue_budget_ms / 1000
    deadline = time.monotonic() + budget_s
    try:
        async with asyncio.timeout(budget_s):
            records = await state.cache.lookup(v.subscription_ids(batch.items))
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("registry unavailable: %s", type(exc).__name__)
        return _unavailable()
    rich = await _rich_checker(state, batch)
    received_ms = int(time.time() * 1000)
    outcome = v.validate_items(batch.items, records, settings.allowed_tenant_ids, received_ms,
                               rich)
    for reason, n in outcome.rejected.items():
        state.metrics.items.labels("notification", "rejected", reason).inc(n)
    if not outcome.entries:
        return JSONResponse({"error": "no valid item", "rejected": dict(outcome.rejected)},
                            outcome.status_if_empty())
    keys = state.keys
    to_store = [(keys.lifecycle if e.lifecycle_event else keys.notifications, e.to_fields())
                for e in outcome.entries]
    try:
        await state.enqueuer.enqueue(to_store, max(0.001, deadline - time.monotonic()))
    except EnqueueError as exc:
        log.warning("enqueue failed, answering 503: %s", exc)
        return _unavailable()
    lifecycle = sum(1 for e in outcome.entries if e.lifecycle_event)
    if lifecycle:
        state.metrics.items.labels("lifecycle", "accepted", "").inc(lifecycle)
    if len(outcome.entries) > lifecycle:
        state.metrics.items.labels("notification", "accepted", "").inc(
            len(outcome.entries) - lifecycle)
    return Response(status_code=202)


def _unavailable() -> Response:
    return JSONResponse({"error": "temporarily unavailable"}, 503, headers={"Retry-After": "1"})


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
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


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


def create_app(settings: Settings, *, redis: Redis | None = None) -> Starlette:
    """The web app for ``settings``. Starts even when Redis is down (readyz says so)."""
    keys = Keys(settings.redis.key_prefix)
    client = redis if redis is not None else make_redis(settings.redis)
    state = WebState(settings=settings, keys=keys, redis=client,
                     cache=RegistryCache(client, keys), enqueuer=Enqueuer(client),
                     app_id_by_tenant={t.tenant_id: t.client_id for t in settings.tenants})
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
        poller = asyncio.create_task(state.cache.run())
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await state.enqueuer.aclose()
            if state.http is not None:
                await state.http.aclose()
            if redis is None:
                await client.aclose()

    web = settings.web
    routes = [
        Route(web.notification_path, _notifications, methods=["POST"]),
        Route(web.lifecycle_path, _notifications, methods=["POST"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.web = state
    return app


def app_from_environment() -> Starlette:
    """uvicorn factory for ``receiver web --workers N``: settings from RECEIVER_CONFIG."""
    path = os.environ["RECEIVER_CONFIG"]
    return create_app(load_settings(path, environ=os.environ))


def web_state(app: Any) -> WebState:
    state: WebState = app.state.web
    return state
