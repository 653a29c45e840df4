"""The notification endpoints: Graph's front door, plain ASGI (the hot path).

``POST {notification_path}`` and ``POST {lifecycle_path}``: the validation handshake, or a
batch of notifications validated item by item and made durable in Redis before the 202. No
Graph call and no sink call happen here, so the answer never waits on either. Every other
path goes to the Starlette app (:mod:`receiver.web.app`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from receiver.web import validation as v
from receiver.web.bodies import BodyReads, TooLarge
from receiver.web.enqueue import EnqueueError
from receiver.web.rich import ContentError, RichError, decrypt_content, verify_validation_token
from receiver.web.state import WebState

__all__ = ["IngestApp"]

log = logging.getLogger("receiver.web.app")  # the web role's logger name, as before the split

Answer = tuple[int, bytes, bytes]  # status, body, content type
_JSON_CT = b"application/json"
_TEXT_CT = b"text/plain; charset=utf-8"
_ACCEPTED: Answer = (202, b"", b"")


def _error(status: int, message: str, **extra: Any) -> Answer:
    return status, json.dumps({"error": message, **extra}).encode(), _JSON_CT


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
        self.bodies = BodyReads(state.settings.web.body_timeout_s)

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
        except TooLarge:
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
