"""The web role: Graph's front door.

``POST {notification_path}`` and ``POST {lifecycle_path}``: the validation handshake, or a
batch of notifications validated item by item and made durable in Redis before the 202. No
Graph call and no sink call happen here, so the answer never waits on either.
``GET /healthz`` (alive), ``/readyz`` (Redis answers), ``/metrics`` (Prometheus).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from receiver.config.loader import load_settings
from receiver.config.settings import Settings
from receiver.store.client import make_redis
from receiver.store.entries import FIELD as ENTRY_FIELD
from receiver.store.keys import Keys
from receiver.web import validation as v
from receiver.web.deadlines import Deadlines
from receiver.web.enqueue import EnqueueError, Enqueuer
from receiver.web.metrics import WebMetrics
from receiver.web.registry_cache import RegistryCache
from receiver.web.rich import (
    ContentError,
    KeySet,
    RichError,
    ThrottledWarning,
    decrypt_content,
    verify_validation_token,
)

log = logging.getLogger(__name__)


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
    # Refusals of rich content are logged at most once per interval each (forged traffic).
    token_log: ThrottledWarning = field(default_factory=lambda: ThrottledWarning(log))
    content_log: ThrottledWarning = field(default_factory=lambda: ThrottledWarning(log))
    # Registries of other roles in the same process (`receiver serve`), shown on /metrics.
    extra_registries: list[CollectorRegistry] = field(default_factory=list)


async def _rich_checker(state: WebState, batch: v.Batch, items: list[v.Item]) -> v.RichCheck | None:  # noqa: C901 - 12, older than the limit
    """The per-item rich check for the authorized ``items`` (clientState and tenant already
    good: the cheap checks come first, so forged batches never cost a token verification).
    The batch's validation tokens are verified once, and only when an item needs one."""
    rich = state.rich
    has_encrypted = any(i.encrypted_content is not None for i in items)
    if rich is None:
        if not has_encrypted:
            return None

        def refuse(item: v.Item) -> tuple[str | None, str]:
            return (v.BAD_ENCRYPTED_CONTENT if item.encrypted_content is not None else None), ""

        return refuse
    if not items or not (rich.require or has_encrypted):
        return None
    vouched: set[tuple[str, str]] = set()
    for token in batch.validation_tokens[:64]:
        try:
            vouched.add(
                await verify_validation_token(
                    token, rich.keys, rich.app_ids, state.settings.allowed_tenant_ids
                )
            )
        except RichError as exc:
            # "If any tokens fail, consider the change notification suspicious and
            # investigate further." (concepts/change-notifications-with-resource-data.md)
            state.token_log.warning(
                "suspicious notification: validation token refused: %s",
                exc,
                extra={"reason": "token"},
            )

    def check(item: v.Item) -> tuple[str | None, str]:
        tenant = item.tenant_id.lower()
        needs_token = rich.require or item.encrypted_content is not None
        if needs_token and (tenant, state.app_id_by_tenant.get(tenant, "")) not in vouched:
            return v.BAD_VALIDATION_TOKEN, ""
        if item.encrypted_content is None:
            return None, ""
        try:
            return None, decrypt_content(item.encrypted_content, rich.private_keys)
        except ContentError as exc:
            reason = v.BAD_RESOURCE_DATA
            message = str(exc)
        except RichError as exc:
            reason = v.BAD_ENCRYPTED_CONTENT
            message = str(exc)
        state.content_log.warning(
            "encrypted content refused: %s",
            message,
            extra={"tenant_id": tenant, "subscription_id": item.subscription_id},
        )
        return reason, ""

    return check


# --- the notification endpoints: plain ASGI, the hot path --------------------------------

Answer = tuple[int, bytes, bytes]  # status, body, content type
_JSON_CT = b"application/json"
_TEXT_CT = b"text/plain; charset=utf-8"
_ACCEPTED: Answer = (202, b"", b"")


def _error(status: int, message: str, **extra: Any) -> Answer:
    return status, json.dumps({"error": message, **extra}).encode(), _JSON_CT


class _TooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The request body, refused as soon as it passes ``limit`` (never read to the end)."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class _BodyReads:
    """Cuts off request bodies that trickle in (slow-loris): a read past its deadline is
    cancelled by the sweep (:mod:`receiver.web.deadlines`) and ends in TimeoutError."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._deadlines = Deadlines(min(1.0, timeout_s / 2))
        self._expired: set[asyncio.Task[Any]] = set()

    async def read(self, receive: Receive, limit: int) -> bytes:
        task = asyncio.current_task()
        assert task is not None

        def expire() -> None:
            self._expired.add(task)
            task.cancel()

        self._deadlines.add(task, self.timeout_s, expire)
        try:
            return await _read_body(receive, limit)
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            self._expired.discard(task)
            task.uncancel()
            raise TimeoutError from None
        finally:
            self._deadlines.remove(task)


class IngestApp:
    """ASGI: the two notification paths here, everything else to the Starlette app.

    Plain ASGI rather than Starlette routing, middleware and Request objects: this path runs
    for every notification and must stay cheap; the rest of the app is not hot.
    """

    def __init__(self, state: WebState, fallback: Starlette) -> None:
        self.state = state
        self.fallback = fallback
        self.paths = frozenset(
            {state.settings.web.notification_path, state.settings.web.lifecycle_path}
        )
        self.bodies = _BodyReads(state.settings.web.body_timeout_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.fallback(scope, receive, send)
            return
        start = time.perf_counter()
        handshake = b"validationToken=" in scope["query_string"]
        try:
            if scope["method"] != "POST":
                answer = _error(405, "method not allowed")
            elif handshake:
                answer = self._handshake(scope)
            else:
                answer = await self._accept(scope, receive)
        except ConnectionResetError:
            answer = _error(400, "client disconnected")
        except Exception:
            log.exception("unexpected error in the notification endpoint")
            answer = _error(500, "internal error")
        status, body, content_type = answer
        headers = [(b"content-length", str(len(body)).encode())]
        if content_type:
            headers.append((b"content-type", content_type))
        if status == 200:
            headers += [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]
        elif status == 503:
            headers.append((b"retry-after", b"1"))
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            self.state.metrics.answered(
                scope["path"], status, time.perf_counter() - start, notification=not handshake
            )

    @staticmethod
    def _handshake(scope: Scope) -> Answer:
        query = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        tokens = query.get("validationToken", [])
        if len(tokens) != 1 or not v.check_validation_token(tokens[0]):
            return 400, b"invalid validationToken", _TEXT_CT
        return 200, tokens[0].encode(), _TEXT_CT

    async def _accept(self, scope: Scope, receive: Receive) -> Answer:  # noqa: C901 - 16, older than the limit
        state = self.state
        settings = state.settings
        content_type = length = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
        if content_type.split(b";", 1)[0].strip().lower() != _JSON_CT:
            return _error(415, "content type must be application/json")
        limit = settings.web.max_body_bytes
        if length and (not length.isdigit() or int(length) > limit):
            return _error(413, "body too large")
        try:
            # A body that trickles in (slow-loris) is cut off: Graph sends a whole batch at
            # once, and a waiting coroutine is all a slow client may cost us.
            body = await self.bodies.read(receive, limit)
        except _TooLarge:
            return _error(413, "body too large")
        except TimeoutError:
            state.metrics.rejected(v.BODY_TIMEOUT)
            return _error(408, "request body not received in time")
        try:
            batch = v.parse_body(body)
        except v.BodyError as exc:
            state.metrics.rejected(exc.reason)
            return _error(400, exc.reason)
        budget_s = settings.web.enqueue_budget_ms / 1000
        deadline = time.monotonic() + budget_s
        outcome = v.Outcome()
        # Shape first (GUID ids, schema, encodable text): forged ids cost no Redis read.
        items = v.screen(batch.items, outcome)
        if items:
            ids = v.subscription_ids(items)
            records = state.cache.cached(ids)
            if records is None:  # an unknown subscription: the registry may have changed
                try:
                    async with asyncio.timeout(budget_s):
                        records = await state.cache.lookup(ids)
                except (RedisError, OSError, TimeoutError) as exc:
                    log.warning("registry unavailable: %s", type(exc).__name__)
                    return _error(503, "temporarily unavailable")
            items = v.authorize_all(items, records, settings.allowed_tenant_ids, outcome)
        rich = await _rich_checker(state, batch, items)
        v.accept(items, int(time.time() * 1000), outcome, rich)
        for reason, n in outcome.rejected.items():
            state.metrics.rejected(reason, n)
        if not outcome.entries:
            if outcome.answer_accepted:
                return _ACCEPTED
            return _error(
                outcome.status_if_empty(), "no valid item", rejected=dict(outcome.rejected)
            )
        keys = state.keys
        to_store = [
            (keys.lifecycle if e.lifecycle_event else keys.notifications, e.to_json())
            for e in outcome.entries
        ]
        try:
            await state.enqueuer.enqueue(to_store, max(0.001, deadline - time.monotonic()))
        except EnqueueError as exc:
            log.warning("enqueue failed, answering 503: %s", exc)
            return _error(503, "temporarily unavailable")
        lifecycle = sum(1 for e in outcome.entries if e.lifecycle_event)
        state.metrics.accepted(len(outcome.entries) - lifecycle, lifecycle)
        return _ACCEPTED


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
